package engine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirections keeps data flowing one way, feed → engine → gateway →
// connection: the engine knows no feed, gateway or WebSocket library; feeds
// know no gateway; the wire vocabulary (protocol) is a leaf everyone may
// import; only cmd wires configuration.
func TestImportDirections(t *testing.T) {
	const mod = "github.com/marketcast/marketcast/"
	all := []string{mod + "engine", mod + "feed", mod + "configs", mod + "cmd", mod + "web", mod + "bench", mod + "clients", "github.com/lxzan/gws"}
	rules := map[string][]string{
		mod + "protocol":       all,
		mod + "engine":         {mod + "feed", mod + "engine/gateway", mod + "configs", mod + "cmd", "github.com/lxzan/gws"},
		mod + "engine/frame":   {mod + "feed", mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws"},
		mod + "engine/auth":    {mod + "feed", mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws"},
		mod + "engine/gateway": {mod + "feed", mod + "configs", mod + "cmd"},
		mod + "feed":           {mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws"},
		mod + "feed/sim":       {mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws"},
		mod + "feed/kline":     {mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws"},
	}
	for pkg, banned := range rules {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range banned {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s imports %s: data must flow feed → engine → gateway", pkg, dep)
				}
			}
		}
	}
}

package engine_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirections keeps data flowing one way, feed → engine → gateway →
// connection: the engine knows no feed, gateway or WebSocket library, and
// feeds know no gateway.
func TestImportDirections(t *testing.T) {
	const mod = "github.com/marketcast/marketcast/"
	rules := map[string][]string{
		mod + "engine":         {mod + "feed", mod + "engine/gateway", mod + "cmd", "github.com/lxzan/gws"},
		mod + "engine/frame":   {mod + "feed", mod + "engine/gateway", "github.com/lxzan/gws"},
		mod + "engine/auth":    {mod + "feed", mod + "engine/gateway", "github.com/lxzan/gws"},
		mod + "engine/gateway": {mod + "feed", mod + "cmd"},
		mod + "feed":           {mod + "engine/gateway", "github.com/lxzan/gws"},
		mod + "feed/sim":       {mod + "engine/gateway", "github.com/lxzan/gws"},
		mod + "feed/kline":     {mod + "engine/gateway", "github.com/lxzan/gws"},
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

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
	const nats = "github.com/nats-io"
	all := []string{mod + "engine", mod + "feed", mod + "configs", mod + "cmd", mod + "web", mod + "bench", mod + "clients", "github.com/lxzan/gws", nats}
	// Only the broker (engine/natsbroker), the NATS feed (feed/natsfeed),
	// recordings (feed/replay) and cmd may import NATS; feeds never import a
	// broker; a recording knows nothing of the engine.
	rules := map[string][]string{
		mod + "protocol":          all,
		mod + "engine":            {mod + "feed", mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", mod + "cmd", "github.com/lxzan/gws", nats},
		mod + "engine/frame":      {mod + "feed", mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "engine/throttle":   {mod + "engine/gateway", mod + "engine/natsbroker", mod + "feed", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "engine/auth":       {mod + "feed", mod + "engine/gateway", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "engine/brokertest": {mod + "feed", mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "engine/gateway":    {mod + "feed", mod + "engine/natsbroker", mod + "configs", mod + "cmd", nats},
		mod + "engine/natsbroker": {mod + "feed", mod + "engine/gateway", mod + "configs", mod + "cmd", "github.com/lxzan/gws"},
		mod + "feed":              {mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "feed/sim":          {mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "feed/kline":        {mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "feed/natsfeed":     {mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", "github.com/lxzan/gws"},
		mod + "feed/market":       {mod + "engine/gateway", mod + "engine/natsbroker", mod + "configs", "github.com/lxzan/gws", nats},
		mod + "feed/replay":       {mod + "engine", mod + "configs", "github.com/lxzan/gws"},
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

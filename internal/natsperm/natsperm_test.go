package natsperm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marketcast/marketcast/internal/natsperm"
)

// docBlock is the authorization block docs/CLUSTER.md shows: the three
// roles, their passwords taken from nats-server's environment.
func docBlock() string {
	return natsperm.Block("MC_PRIV",
		natsperm.User{Name: natsperm.Node, Password: "$MC_NODE_PASSWORD", Role: natsperm.Node},
		natsperm.User{Name: natsperm.Collector, Password: "$MC_COLLECTOR_PASSWORD", Role: natsperm.Collector},
		natsperm.User{Name: natsperm.Recorder, Password: "$MC_RECORDER_PASSWORD", Role: natsperm.Recorder})
}

// TestNATSPermissionsDocumented: docs/CLUSTER.md shows exactly the
// permissions marketcast grants and needs, as a block nats-server takes:
// parsed by nats-server itself, with each password from its environment,
// a collector that may publish market data and read nothing, a recorder
// that may read market data and publish nothing.
func TestNATSPermissionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CLUSTER.md")
	if err != nil {
		t.Fatal(err)
	}
	block := docBlock()
	if !strings.Contains(string(doc), block) {
		t.Fatalf("docs/CLUSTER.md does not show the permissions as marketcast has them; it should contain:\n%s", block)
	}
	t.Setenv("MC_NODE_PASSWORD", "n-secret")
	t.Setenv("MC_COLLECTOR_PASSWORD", "c-secret")
	t.Setenv("MC_RECORDER_PASSWORD", "r-secret")
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte("listen: 127.0.0.1:-1\njetstream: enabled\n"+block), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server refuses the documented block: %v", err)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	for name, pw := range map[string]string{"node": "n-secret", "collector": "c-secret", "recorder": "r-secret"} {
		if u := users[name]; u == nil || u.Password != pw {
			t.Fatalf("user %s: %+v; want the password from the environment", name, u)
		}
	}
	if c := users["collector"].Permissions; len(c.Publish.Allow) != 1 || c.Publish.Allow[0] != "md.>" || len(c.Subscribe.Deny) != 1 || c.Subscribe.Deny[0] != ">" {
		t.Fatalf("collector permissions %+v %+v", c.Publish, c.Subscribe)
	}
	if r := users["recorder"].Permissions; len(r.Publish.Deny) != 1 || r.Publish.Deny[0] != ">" || len(r.Subscribe.Allow) != 1 {
		t.Fatalf("recorder permissions %+v %+v", r.Publish, r.Subscribe)
	}
}

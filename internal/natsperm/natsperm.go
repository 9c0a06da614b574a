// Package natsperm is the one home of what each role on a cluster's NATS
// may do: a marketcast node, a market-data collector, a recorder. The
// embedded NATS server grants these lists, the chaos test runs real
// nats-server processes with them, and docs/CLUSTER.md shows them as a
// nats-server authorization block (a test keeps the doc equal to Block).
package natsperm

import (
	"fmt"
	"strings"

	"github.com/marketcast/marketcast/feed/natsfeed"
)

// Roles.
const (
	Node      = "node"      // a marketcast node (serve)
	Collector = "collector" // publishes market data: a collector, `marketcast feed`
	Recorder  = "recorder"  // reads market data: `marketcast record`
)

// Permissions is what a role may publish and subscribe to. A nil list
// means nothing at all (never "everything", which is what an empty allow
// list means to NATS).
type Permissions struct {
	Publish, Subscribe []string
}

// For is role's permissions on a cluster whose private stream is
// privStream (cluster.stream.name).
func For(role, privStream string) Permissions {
	switch role {
	case Collector:
		return Permissions{Publish: []string{"md.>"}}
	case Recorder:
		return Permissions{Subscribe: []string{"md.>"}}
	}
	pub := []string{"mc.priv.>", "mc.bars.>", "md.>", "$JS.API.INFO"}
	for _, s := range []string{privStream, natsfeed.LastStream, natsfeed.BarStream} {
		pub = append(pub, "$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s,
			"$JS.API.STREAM.MSG.GET."+s, "$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>")
	}
	// The warm-up reads the last-value stream with an ordered consumer;
	// MC_MD_LAST moved from memory to file storage, which takes a delete.
	last := natsfeed.LastStream
	pub = append(pub, "$JS.API.STREAM.DELETE."+last, "$JS.API.CONSUMER.CREATE."+last+".>", "$JS.API.CONSUMER.DELETE."+last+".>",
		"$JS.API.CONSUMER.INFO."+last+".>", "$JS.API.CONSUMER.MSG.NEXT."+last+".>")
	// Each symbol's forming bars live in a key-value bucket (a stream
	// underneath), read back with an ordered consumer at start, and key by
	// key for what that missed.
	kv := "KV_" + natsfeed.CheckpointBucket
	pub = append(pub, "$KV."+natsfeed.CheckpointBucket+".>", "$JS.API.STREAM.INFO."+kv, "$JS.API.STREAM.CREATE."+kv,
		"$JS.API.STREAM.UPDATE."+kv, "$JS.API.CONSUMER.CREATE."+kv+".>", "$JS.API.CONSUMER.DELETE."+kv+".>",
		"$JS.API.CONSUMER.INFO."+kv+".>", "$JS.API.STREAM.MSG.GET."+kv, "$JS.API.DIRECT.GET."+kv+".>")
	return Permissions{
		Publish:   pub,
		Subscribe: []string{"_INBOX.>", "mc.live.>", "md.>", "$JS.EVENT.ADVISORY.STREAM.*." + privStream},
	}
}

// User is one entry of an authorization block.
type User struct {
	Name, Password, Role string
}

// Block renders users as a nats-server authorization block, each with its
// role's permissions on a cluster whose private stream is privStream. A
// user with no role has no restriction (an operator, a test's auditor;
// never a marketcast process).
func Block(privStream string, users ...User) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users: [\n")
	for _, u := range users {
		if u.Role == "" {
			fmt.Fprintf(&b, "    {user: %q, password: %s}\n", u.Name, password(u.Password))
			continue
		}
		p := For(u.Role, privStream)
		fmt.Fprintf(&b, "    {user: %q, password: %s, permissions: {\n", u.Name, password(u.Password))
		fmt.Fprintf(&b, "      publish: %s\n", list(p.Publish))
		fmt.Fprintf(&b, "      subscribe: %s\n", list(p.Subscribe))
		b.WriteString("    }}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// password renders a password; one written $NAME stays a reference that
// nats-server resolves from its environment.
func password(p string) string {
	if strings.HasPrefix(p, "$") {
		return p
	}
	return fmt.Sprintf("%q", p)
}

// list renders allowed subjects, one a line; none is a deny of
// everything.
func list(subjects []string) string {
	if len(subjects) == 0 {
		return `{deny: [">"]}`
	}
	if len(subjects) == 1 {
		return fmt.Sprintf("{allow: [%q]}", subjects[0])
	}
	var b strings.Builder
	b.WriteString("{allow: [\n")
	for _, s := range subjects {
		fmt.Fprintf(&b, "        %q\n", s)
	}
	b.WriteString("      ]}")
	return b.String()
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/internal/testwait"
)

// TestReadmeExamplesRun runs the README's examples as a reader would paste
// them, against the real binary in its `make run` configuration: the Node
// terminal, the JavaScript client, the publish calls. Only the address
// changes (a free port instead of localhost:8000).
func TestReadmeExamplesRun(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed (make test installs it)")
	}
	root, _ := filepath.Abs("../..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	find := func(marker string) string {
		t.Helper()
		for _, b := range blocks {
			if strings.Contains(b[1], marker) {
				return b[1]
			}
		}
		t.Fatalf("README has no sh block with %q", marker)
		return ""
	}
	p := startBinary(t, freePort(t)) // the embedded config, as make run: development mode
	run := func(name, block, dir string) string {
		t.Helper()
		block = strings.ReplaceAll(block, "localhost:8000", p.addr)
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
		cmd.Dir = dir
		cmd.Env = os.Environ()
		done := make(chan struct{})
		var out []byte
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(testwait.Deadline):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s did not finish:\n%s", name, out)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return string(out)
	}
	// The Node examples write their script into the current directory and
	// import the client by its path in the repository.
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(root, "clients"), filepath.Join(dir, "clients")); err != nil {
		t.Fatal(err)
	}
	out := run("the Node terminal", find("cat > try.mjs"), dir)
	for _, want := range []string{`"type":"auth_response"`, `"status":"success"`, `"type":"market_data"`, `"symbol":"SHFE.rb2405"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("the Node terminal printed no %s:\n%s", want, out)
		}
	}
	out = run("the JavaScript client", find("cat > client.mjs"), dir)
	if !regexp.MustCompile(`(?m)^SHFE\.rb2405 \d+\.\d+ \d+$`).MatchString(out) {
		t.Fatalf("the JavaScript client printed no tick:\n%s", out)
	}
	out = run("the publish calls", find("/api/v1/publish"), root)
	if strings.Count(out, `"status":"ok"`) != 2 || strings.Contains(out, "error") {
		t.Fatalf("publish calls:\n%s", out)
	}
}

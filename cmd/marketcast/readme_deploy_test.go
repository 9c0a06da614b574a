package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testwait"
)

// readmeBlock returns the README's sh block holding marker.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(b[1], marker) {
			return b[1]
		}
	}
	t.Fatalf("README has no sh block with %q", marker)
	return ""
}

// TestReadmeDeployCommandsRun runs the README's Deploy commands verbatim
// (only ./bin/marketcast is the binary under test), in an empty directory.
func TestReadmeDeployCommandsRun(t *testing.T) {
	block := strings.ReplaceAll(readmeBlock(t, "./bin/marketcast --help"), "./bin/marketcast", binary)
	dir := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"check-config", "marketcast devel", "configuration ok: feed sim, development mode"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the Deploy commands printed no %q:\n%s", want, out)
		}
	}
	effective, _ := os.ReadFile(filepath.Join(dir, "effective.yaml"))
	mine, _ := os.ReadFile(filepath.Join(dir, "my.yaml"))
	if !strings.Contains(string(effective), "level: debug") || !strings.Contains(string(effective), `jwt_secret: "***"`) ||
		!strings.HasPrefix(string(mine), "# marketcast default configuration.") {
		t.Fatalf("effective.yaml:\n%s\nmy.yaml starts %.60q", effective, mine)
	}
}

// TestReadmeProductionCommandRuns starts the README's production command
// as written, on a free loopback port instead of every interface's 8000:
// it serves, ready, with no simulator, and stops cleanly.
func TestReadmeProductionCommandRuns(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	addr := freePort(t)
	block := readmeBlock(t, "MARKETCAST_FEED=none ./bin/marketcast")
	block = strings.ReplaceAll(strings.ReplaceAll(block, "./bin/marketcast", binary), "MARKETCAST_LISTEN=:8000", "MARKETCAST_LISTEN="+addr)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &lockedbuf.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	testwait.For(t, "the production command to be ready", func() bool {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	// The node logs what it runs before /readyz passes; a busy machine
	// may still deliver the line to us a moment later.
	testwait.For(t, "the log to say there is no built-in feed", func() bool { return strings.Contains(logs.String(), "no built-in feed") })
	if l := logs.String(); strings.Contains(l, "DEVELOPMENT MODE") || strings.Contains(l, "source=sim") {
		t.Fatalf("not production, or the simulator runs:\n%s", l)
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
}

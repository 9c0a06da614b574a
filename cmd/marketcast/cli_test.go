package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/marketcast/marketcast/configs"
)

// runBinary runs the real binary with args and extra environment, and
// returns its stdout, stderr and exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestHelpListsEveryCommand: --help, -h and help print the commands and
// exit 0; every command's -h exits 0 with its own usage.
func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, errOut, code := runBinary(t, nil, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		for _, c := range commands {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.name) + ` +\S`).MatchString(out) {
				t.Fatalf("%v does not list %s:\n%s", args, c.name, out)
			}
		}
		if !strings.Contains(out, "MARKETCAST_LOG_LEVEL") {
			t.Fatalf("%v does not state the environment rule:\n%s", args, out)
		}
	}
	for _, c := range commands {
		if c.name == "help" || c.name == "version" || c.name == "default-config" {
			continue
		}
		_, errOut, code := runBinary(t, nil, c.name, "-h")
		if code != 0 || !strings.Contains(errOut, "usage: marketcast "+c.name) || !strings.Contains(errOut, c.summary) {
			t.Fatalf("%s -h: exit %d\n%s", c.name, code, errOut)
		}
	}
	out, _, code := runBinary(t, nil, "help", "feed")
	if code != 0 || !strings.Contains(out, "-replay string") || strings.Contains(out, "-replay marketcast") {
		t.Fatalf("help feed: exit %d\n%s", code, out)
	}
	if _, errOut, code := runBinary(t, nil, "frobnicate"); code != 1 || !strings.Contains(errOut, "marketcast help lists them") {
		t.Fatalf("an unknown command: exit %d, %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	a, _, code := runBinary(t, nil, "version")
	b, _, code2 := runBinary(t, nil, "--version")
	if code != 0 || code2 != 0 || a != b || !strings.HasPrefix(a, "marketcast ") || !strings.Contains(a, "go1.") {
		t.Fatalf("version %q (exit %d), --version %q (exit %d)", a, code, b, code2)
	}
}

// TestCheckConfig: the effective configuration, environment included,
// secrets masked, unknown variables warned about; a bad configuration is
// an exit 1 naming the key.
func TestCheckConfig(t *testing.T) {
	const secret = "check-config-secret-0123456789"
	env := []string{"MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET=" + secret, "MARKETCAST_FEED=none",
		"MARKETCAST_DELIVERY_FLUSH_DELAY=5ms", "MARKETCAST_NATS_PASSWORD=nats-password-123", "MARKETCAST_LOG_LEVLE=debug"}
	out, errOut, code := runBinary(t, env, "check-config")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, secret) || strings.Contains(out, "nats-password-123") {
		t.Fatalf("a secret printed:\n%s", out)
	}
	if !strings.Contains(errOut, "MARKETCAST_LOG_LEVLE sets nothing") || !strings.Contains(errOut, "did you mean MARKETCAST_LOG_LEVEL?") ||
		!strings.Contains(errOut, "configuration ok: feed none, production mode") {
		t.Fatalf("stderr: %s", errOut)
	}
	// What it prints is the configuration in the file's own shape.
	var printed configs.Config
	if err := yaml.UnmarshalWithOptions([]byte(out), &printed, yaml.Strict()); err != nil {
		t.Fatalf("the printed configuration does not read back: %v\n%s", err, out)
	}
	if printed.Delivery.FlushDelay.Duration.String() != "5ms" || printed.DevMode || printed.Feed.Kind != "none" ||
		printed.Auth.JWTSecret != "***" || printed.Cluster.NATSPassword != "***" || printed.Ops.Token != "" {
		t.Fatalf("printed: %+v", printed)
	}

	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("limits:\n  rate_per_minute: abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runBinary(t, nil, "check-config", "-config", file)
	if code != 1 || !strings.Contains(errOut, `limits.rate_per_minute: want an integer, got "abc"`) {
		t.Fatalf("a bad file: exit %d: %s", code, errOut)
	}
	_, errOut, code = runBinary(t, []string{"MARKETCAST_TLS_CERT=/nonexistent/cert.pem", "MARKETCAST_TLS_KEY=/nonexistent/key.pem"}, "check-config")
	if code != 1 || !strings.Contains(errOut, "config: tls:") || !strings.Contains(errOut, "/nonexistent/cert.pem") {
		t.Fatalf("a missing certificate: exit %d: %s", code, errOut)
	}
	out, _, code = runBinary(t, nil, "default-config")
	if code != 0 || out != string(configs.DefaultFile) {
		t.Fatalf("default-config: exit %d, %d bytes", code, len(out))
	}
}

// TestProductionNamesItsFeed: a server out of development mode does not
// run the simulator unless told to: it refuses to start and says what to
// set. check-config says the same.
func TestProductionNamesItsFeed(t *testing.T) {
	env := []string{"MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET=feed-rule-secret-0123456789", "MARKETCAST_LISTEN=" + freePort(t)}
	for _, args := range [][]string{nil, {"check-config"}} {
		_, errOut, code := runBinary(t, env, args...)
		if code != 1 || !strings.Contains(errOut, "feed.kind: auto would run the built-in simulator") || !strings.Contains(errOut, "MARKETCAST_FEED=") {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
	}
	if _, errOut, code := runBinary(t, append(env, "MARKETCAST_FEED=sim"), "check-config"); code != 0 {
		t.Fatalf("the simulator asked for: exit %d: %s", code, errOut)
	}
}

// TestTokenRefusesWhatNoServerAccepts: outside development mode the public
// secret signs nothing, and a misspelt permission is an error.
func TestTokenRefusesWhatNoServerAccepts(t *testing.T) {
	if _, errOut, code := runBinary(t, []string{"MARKETCAST_DEV_MODE=false"}, "token", "-user", "1"); code != 1 ||
		!strings.Contains(errOut, "public development secret") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, errOut, code := runBinary(t, nil, "token", "-user", "1", "-permissions", "read:marketdata"); code != 1 ||
		!strings.Contains(errOut, `unknown permission "read:marketdata"`) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	out, errOut, code := runBinary(t, []string{"MARKETCAST_JWT_SECRET=token-cmd-secret-0123456789"}, "token", "-user", "1", "-permissions", "publish")
	if code != 0 || strings.Count(out, ".") != 2 {
		t.Fatalf("a real secret: exit %d: %s %s", code, out, errOut)
	}
}

// TestReadmeLogLinesAreReal: the log lines the README shows are the ones
// `make run` prints: same level, message and keys.
func TestReadmeLogLinesAreReal(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sample := regexp.MustCompile("(?s)```\n(level=.*?)```").FindSubmatch(readme)
	if sample == nil {
		t.Fatal("README shows no log lines")
	}
	p := startBinary(t, freePort(t))
	p.stop(t)
	logs := strings.Split(p.logs.String(), "\n")
	line := regexp.MustCompile(`^level=(\w+) msg=(?:"([^"]*)"|(\S+))(.*)$`)
	for _, want := range strings.Split(strings.TrimSpace(string(sample[1])), "\n") {
		m := line.FindStringSubmatch(want)
		if m == nil {
			t.Fatalf("README log line %q is not level=... msg=...", want)
		}
		msg := strings.TrimSuffix(strings.TrimSuffix(m[2]+m[3], "..."), "…")
		found := false
		for _, got := range logs {
			_, rest, _ := strings.Cut(got, " ") // time=...
			g := line.FindStringSubmatch(rest)
			if g == nil || g[1] != m[1] || !strings.HasPrefix(g[2]+g[3], msg) {
				continue
			}
			found = true
			for _, kv := range regexp.MustCompile(`\s(\w+)=`).FindAllStringSubmatch(m[4], -1) {
				if !strings.Contains(g[4], " "+kv[1]+"=") {
					t.Errorf("README's %q shows %s=, the real line has none: %s", msg, kv[1], got)
				}
			}
		}
		if !found {
			t.Errorf("README shows %q; the server logs no such line:\n%s", want, p.logs.String())
		}
	}
}

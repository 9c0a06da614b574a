package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

func TestDefaultLoads(t *testing.T) {
	c, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8000" || c.Auth.Timeout.Duration != 5*time.Second || c.Limits.RatePerMinute != 300 ||
		c.Keepalive.PingInterval.Duration != 25*time.Second || c.History.TTL.Duration != 5*time.Minute || !c.DevMode {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.Auth.JWTSecret != DevSecret {
		t.Fatalf("default secret %q; want DevSecret", c.Auth.JWTSecret)
	}
	if err := c.CheckServe(); err != nil {
		t.Fatalf("the embedded default must serve: %v", err)
	}
}

// TestDevModeAndSecretMustAgree: no configuration lets /dev/token sign with
// a real secret, and nothing but development mode runs with the public one.
func TestDevModeAndSecretMustAgree(t *testing.T) {
	f := func(env map[string]string, wantErr string) {
		t.Helper()
		c, err := Load("", func(k string) string { return env[k] })
		if err == nil {
			err = c.CheckServe()
		}
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Fatalf("env %v: got %v; want %q", env, err, wantErr)
		}
	}
	real := "a-real-secret-0123456789abcdef"
	f(map[string]string{"MARKETCAST_JWT_SECRET": real}, "dev_mode: development mode signs tokens")
	f(map[string]string{"MARKETCAST_DEV_MODE": "false"}, "auth.jwt_secret: the development secret is public")
	f(map[string]string{"MARKETCAST_DEV_MODE": "false", "MARKETCAST_JWT_SECRET": real, "MARKETCAST_FEED": "none"}, "")
	f(map[string]string{"MARKETCAST_DEV_MODE": "0", "MARKETCAST_JWT_SECRET": real, "MARKETCAST_FEED": "sim"}, "")
	// Production names its feed: auto would run the simulator by surprise.
	f(map[string]string{"MARKETCAST_DEV_MODE": "false", "MARKETCAST_JWT_SECRET": real}, "feed.kind: auto would run the built-in simulator")
	f(map[string]string{"MARKETCAST_DEV_MODE": "false", "MARKETCAST_JWT_SECRET": real, "MARKETCAST_NATS_URL": "nats://127.0.0.1:4222"}, "")
	f(map[string]string{"MARKETCAST_DEV_MODE": "false", "MARKETCAST_JWT_SECRET": real, "MARKETCAST_REPLAY_FILE": "day.mcr.gz"}, "")
	f(map[string]string{"MARKETCAST_DEV_MODE": "maybe"}, `MARKETCAST_DEV_MODE="maybe": want true or false`)
}

func TestEnvOverridesWin(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("listen: \"127.0.0.1:7000\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MARKETCAST_LISTEN": "127.0.0.1:9001", "MARKETCAST_JWT_SECRET": "0123456789abcdef-secret"}
	c, err := Load(file, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.Auth.JWTSecret != env["MARKETCAST_JWT_SECRET"] {
		t.Fatalf("got listen %q secret %q; want the environment's", c.Listen, c.Auth.JWTSecret)
	}
	c, err = Load(file, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7000" || c.Limits.MaxSubscriptions != 1024 {
		t.Fatalf("file value or kept default wrong: %+v", c)
	}
}

func TestErrorsNameKeyAndValue(t *testing.T) {
	f := func(yamlText, want string) {
		t.Helper()
		file := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(file, noEnv)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("config %q: got error %v; want it to contain %q", yamlText, err, want)
		}
	}
	f("limits:\n  rate_per_minute: -5\n", "limits.rate_per_minute: want > 0, got -5")
	f("feed:\n  kind: kafka\n", `feed.kind: want "auto", "sim", "nats", "replay" or "none", got "kafka"`)
	f("feed:\n  kind: replay\n", `feed.kind: needs feed.replay.file`)
	f("feed:\n  kind: nats\n", "feed.kind: needs cluster.nats_url")
	f("cluster:\n  nats_url: nats://x:4222\nfeed:\n  kind: sim\n", "run one `marketcast feed` for the cluster")
	f("cluster:\n  stream:\n    max_age: 1m\n", "cluster.stream.max_age")
	f("cluster:\n  timeout: 10ms\n", "cluster.timeout: want in [50ms, 1m]")
	f("cluster:\n  message_key: short\n", "cluster.message_key: want at least 16 characters")
	f("cluster:\n  nats_url: nats://x:4222\nauth:\n  jwt_secret: \"\"\n  jwks_url: https://idp/jwks\n", "cluster.message_key")
	f("cluster:\n  embedded:\n    listen: 0.0.0.0:4222\n", "cluster.embedded.listen")
	f("cluster:\n  embedded:\n    listen: 10.0.0.5:4222\n", "cluster.embedded.listen")
	f("auth:\n  jwt_secret: short\n", "auth.jwt_secret")
	f("keepalive:\n  ping_interval: 10ms\n", "keepalive.ping_interval: want >= 1s, got 10ms")
	f("log:\n  level: loud\n", `log.level: want debug, info, warn or error, got "loud"`)
	f("listen: nowhere\n", `listen: want host:port such as :8000, got "nowhere"`)
	f("limtis:\n  x: 1\n", "limtis") // unknown key
	f("auth:\n  timeout: soon\n", `auth.timeout: want a duration such as 5s or 250ms, got "soon"`)
	f("feed:\n  sim:\n    rate: 0\n", "feed.sim.rate") // zero rate
	// Wrong types name the key as the file spells it, never a Go field.
	f("limits:\n  rate_per_minute: abc\n", `c.yaml:2:20: limits.rate_per_minute: want an integer, got "abc"`)
	f("dev_mode: yes\n", `dev_mode: want true or false, got "yes"`)
	f("cluster:\n  stream:\n    max_bytes: 1.5\n", "cluster.stream.max_bytes: want an integer, got 1.5")
	f("feed:\n  sim:\n    rate: fast\n", `feed.sim.rate: want a number, got "fast"`)
	f("feed:\n  sim:\n    symbols: SHFE.rb2405\n", `feed.sim.symbols: want a list such as ["a", "b"], got "SHFE.rb2405"`)
	f("limits: 5\n", "limits: want a mapping of keys, got 5")
	f("http:\n  allowed_origins: [https://a.example.com, [x]]\n", "http.allowed_origins[1]: want a string, got a list")
	f("listen:\n  host: x\n", "listen: want a string, got a mapping")
	f("auth:\n  jwks_url: https://idp.example/jwks\n  require_audience: true\n  audience: mc\n", "auth.require_audience: want auth.audience and auth.issuer set")
	f("auth:\n  default_permissions: [\"read:everything\"]\n", "auth.default_permissions")
	f("limits:\n  frame_burst: 10\n", "limits.frame_burst: want >= limits.rate_burst")
	f("limits:\n  max_fragments: 0\n", "limits.max_fragments")
	f("limits:\n  fragment_timeout: 0s\n", "limits.fragment_timeout")
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: got %v; want an error naming the file", err)
	}
}

// TestIdentityProviderWarnings is finding 11: with public keys or a JWKS
// URL and no audience or issuer, a token the same provider issued for any
// other application is accepted. The start warns about each; with
// auth.require_audience it refuses (TestConfigErrors).
func TestIdentityProviderWarnings(t *testing.T) {
	c, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.SecurityWarnings(); len(w) != 0 {
		t.Fatalf("the default configuration warns: %v", w)
	}
	c.Auth.JWKSURL = "https://idp.example/jwks"
	w := strings.Join(c.SecurityWarnings(), "\n")
	if !strings.Contains(w, "auth.audience is empty") || !strings.Contains(w, "auth.issuer is empty") {
		t.Fatalf("warnings %q; want audience and issuer named", w)
	}
	c.Auth.Audience, c.Auth.Issuer = "marketcast", "https://idp.example"
	if w := c.SecurityWarnings(); len(w) != 0 {
		t.Fatalf("with both set: %v", w)
	}
	c.Auth.DefaultPermissions = []string{"read:market_data"}
	if w := strings.Join(c.SecurityWarnings(), ""); !strings.Contains(w, "default_permissions") {
		t.Fatalf("default permissions are not announced: %q", w)
	}
}

// TestClusterSecurityDefaults: the embedded NATS server may listen beyond
// loopback only with users; the message key is the configured one, or one
// derived from the JWT secret that every node shares.
func TestClusterSecurityDefaults(t *testing.T) {
	load := func(yamlText string) *Config {
		t.Helper()
		file := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(file, []byte(yamlText), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(file, noEnv)
		if err != nil {
			t.Fatalf("%q: %v", yamlText, err)
		}
		return c
	}
	load("cluster:\n  embedded:\n    listen: 127.0.0.1:4222\n")
	load("cluster:\n  embedded:\n    listen: 0.0.0.0:4222\n    collector_password: p\n")
	a := load("auth:\n  jwt_secret: one-secret-of-16-chars\n")
	b := load("auth:\n  jwt_secret: one-secret-of-16-chars\n")
	c := load("auth:\n  jwt_secret: another-secret-16-chars\n")
	d := load("cluster:\n  message_key: a-message-key-of-16\n")
	if string(a.MessageKey()) != string(b.MessageKey()) || string(a.MessageKey()) == string(c.MessageKey()) ||
		string(d.MessageKey()) != "a-message-key-of-16" || string(a.MessageKey()) == a.Auth.JWTSecret {
		t.Fatal("message keys: want one per JWT secret (never the secret itself), or the configured one")
	}
	if got := load("cluster:\n  nats_url: nats://u:p@10.0.0.1:4222,nats://10.0.0.2:4222\n").NATSServer(); got != "nats://10.0.0.1:4222,nats://10.0.0.2:4222" {
		t.Fatalf("NATS server in logs: %q; want the URLs without credentials", got)
	}
}

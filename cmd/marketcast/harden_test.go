package main

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testwait"
)

// TestSeedTokensEndToEnd is issue 20 item 5 on the real server: the seed's
// FastAPI tokens carry a numeric sub and exp, no permissions. Such a token
// authenticates as the decimal string; with auth.default_permissions it
// gets market data, without them it is FORBIDDEN, as before.
func TestSeedTokensEndToEnd(t *testing.T) {
	secret := "a-real-secret-0123456789abcdef"
	seedToken, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": 42, "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte(secret))
	for _, defaults := range [][]string{nil, {"read:market_data"}} {
		cfg := prodConfig()
		cfg.Auth.DefaultPermissions = defaults
		addr := serveConfig(t, cfg)
		c, _, err := wsclient.Dial("ws://"+addr+"/ws", wsclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The seed client's auth shape: the token at the top level.
		if err := c.Send(map[string]any{"type": "auth", "token": seedToken}); err != nil {
			t.Fatal(err)
		}
		m, err := c.WaitType(wait, "auth_response")
		if err != nil || m.DataMap()["status"] != "success" || m.DataMap()["user_id"] != "42" {
			t.Fatalf("seed token, default_permissions %v: %v %s", defaults, err, m.Raw)
		}
		if err := c.Send(map[string]any{"type": "subscribe", "id": 1, "channel": "orders", "user_id": 42}); err != nil {
			t.Fatal(err)
		}
		if m, err := c.Next(wait); err != nil || m.Type != "subscribe_response" {
			t.Fatalf("user 42's own orders by numeric user_id: %v %v", err, m)
		}
		if err := c.Send(map[string]any{"type": "subscribe", "id": 2, "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}); err != nil {
			t.Fatal(err)
		}
		m, err = c.Next(wait)
		if err != nil {
			t.Fatal(err)
		}
		forbidden := m.Type == "error" && m.DataMap()["code"] == "FORBIDDEN"
		if forbidden != (defaults == nil) {
			t.Fatalf("market data, default_permissions %v: %s", defaults, m.Raw)
		}
	}
}

// TestIdentityProviderAudienceAtStart is finding 11 on the real server:
// with a JWKS URL and no audience or issuer the start warns about both,
// and auth.require_audience refuses to start until they are set.
func TestIdentityProviderAudienceAtStart(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	enc := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "use": "sig",
		"n": enc(key.N.Bytes()), "e": enc(big.NewInt(int64(key.E)).Bytes())}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	defer idp.Close()
	cfg := prodConfig()
	cfg.Auth.JWTSecret, cfg.Auth.JWKSURL = "", idp.URL
	var log lockedbuf.Buffer
	serveConfigLog(t, cfg, &log)
	for _, want := range []string{"auth.audience is empty", "auth.issuer is empty"} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("the start did not warn %q:\n%s", want, log.String())
		}
	}
	cfg = prodConfig()
	cfg.Auth.JWTSecret, cfg.Auth.JWKSURL, cfg.Auth.RequireAudience = "", idp.URL, true
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "auth.require_audience") {
		t.Fatalf("require_audience without audience: %v", err)
	}
	file := filepath.Join(t.TempDir(), "idp.yaml")
	if err := os.WriteFile(file, []byte("dev_mode: false\nauth:\n  jwt_secret: \"\"\n  jwks_url: "+idp.URL+
		"\n  require_audience: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "-config", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "auth.require_audience") {
		t.Fatalf("the binary with require_audience and no audience: %v\n%s", err, out)
	}
}

// TestOpsListenerIsBounded is finding 8: the ops listener had no idle
// timeout and no cap, so idle keep-alives took the process to its file
// limit and /healthz and /ws on the main listener failed. It has the main
// listener's timeouts and a cap (and health reserve) of its own now.
func TestOpsListenerIsBounded(t *testing.T) {
	cfg := prodConfig()
	cfg.Ops.Listen, cfg.Ops.MaxConnections = freePort(t), 8
	cfg.HTTP.IdleTimeout.Duration = time.Second
	addr := serveConfig(t, cfg)
	ops := cfg.Ops.Listen

	// An idle keep-alive is closed after http.idle_timeout.
	idle, err := net.Dial("tcp", ops)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ops /healthz: %v %v", resp, err)
	}
	_, _ = io.ReadAll(resp.Body)
	_ = idle.SetReadDeadline(time.Now().Add(wait))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle ops keep-alive: %v; want it closed (EOF)", err)
	}

	// 8 + 64 + 100 connections that send nothing: past the cap and its
	// reserve they are closed at once, and both listeners still answer.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 8 + 64 + 100 {
		c, err := net.Dial("tcp", ops)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
	}
	var closed atomic.Int64
	for _, c := range flood {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(testwait.Deadline))
			if _, err := c.Read(make([]byte, 1)); err == io.EOF {
				closed.Add(1)
			}
		}()
	}
	testwait.For(t, "the ops connections past its cap and reserve closed", func() bool { return closed.Load() >= 100 })
	for _, url := range []string{"http://" + addr + "/healthz", "http://" + ops + "/healthz"} {
		resp, err := (&http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}).Get(url)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s under an ops flood: %v %v", url, resp, err)
		}
		resp.Body.Close()
	}
	c, _, err := wsclient.Dial("ws://"+addr+"/ws", wsclient.Options{})
	if err != nil {
		t.Fatalf("/ws under an ops flood: %v", err)
	}
	c.Close()
}

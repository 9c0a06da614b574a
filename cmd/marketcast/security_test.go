package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/testwait"
)

// serveConfig runs Serve with cfg on a free loopback port and returns its
// address; it stops at cleanup.
func serveConfig(t *testing.T, cfg *configs.Config) string {
	t.Helper()
	return serveConfigLog(t, cfg, io.Discard)
}

// serveConfigLog is serveConfig writing the server's log to w.
func serveConfigLog(t *testing.T, cfg *configs.Config, w io.Writer) string {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, slog.New(slog.NewTextHandler(w, nil)), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return addr
}

// prodConfig is a production-shaped configuration: a real secret, no
// development mode, no simulator.
func prodConfig() *configs.Config {
	cfg := configs.Default()
	cfg.DevMode, cfg.Auth.JWTSecret, cfg.Feed.Kind = false, "a-real-secret-0123456789abcdef", "none"
	return cfg
}

// writeCert writes a self-signed certificate for 127.0.0.1 named cn and
// returns its pool.
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.CertPool {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	// Write beside, then rename: a reader never sees half a file.
	for file, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		if err := os.WriteFile(file+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestTLSEndToEndAndReload serves wss:// from the binary's own TLS, then
// replaces the certificate files: new connections get the new certificate
// without a restart.
func TestTLSEndToEndAndReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool1 := writeCert(t, certFile, keyFile, "first")
	cfg := prodConfig()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	addr := serveConfig(t, cfg)
	login := func(pool *x509.CertPool) (*wsclient.Client, error) {
		tok := issue(t, cfg.Auth.JWTSecret, "1")
		c, _, err := wsclient.Dial("wss://"+addr+"/ws?token="+tok, wsclient.Options{TLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			return nil, err
		}
		t.Cleanup(c.Close)
		m, err := c.Next(wait)
		if err != nil || m.DataMap()["status"] != "success" {
			t.Fatalf("auth over wss: %v %v", err, m)
		}
		return c, nil
	}
	if _, err := login(pool1); err != nil {
		t.Fatalf("wss with the first certificate: %v", err)
	}
	if _, _, err := wsclient.Dial("ws://"+addr+"/ws", wsclient.Options{}); err == nil {
		t.Fatal("plain ws:// accepted on a TLS listener")
	}
	pool2 := writeCert(t, certFile, keyFile, "second")
	// The reloader looks at most once a second, on a handshake: poll.
	testwait.Check(t, func() error {
		_, err := login(pool2)
		return err
	})
	if _, err := login(pool1); err == nil {
		t.Fatal("the replaced certificate is still served")
	}
}

// TestIdentityProviderTokens: a server configured with an identity
// provider's JWKS accepts its RS256 tokens over the WebSocket, checks iss and
// aud, and still refuses HS256 tokens when its secret is empty.
func TestIdentityProviderTokens(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	enc := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "use": "sig",
		"n": enc(key.N.Bytes()), "e": enc(big.NewInt(int64(key.E)).Bytes())}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	defer idp.Close()
	cfg := prodConfig()
	cfg.Auth.JWTSecret, cfg.Auth.JWKSURL, cfg.Auth.Issuer, cfg.Auth.Audience = "", idp.URL, "https://idp.example", "marketcast"
	addr := serveConfig(t, cfg)
	try := func(method jwt.SigningMethod, k any, iss string) string {
		t.Helper()
		tok := jwt.NewWithClaims(method, jwt.MapClaims{"sub": "trader@desk", "iss": iss, "aud": "marketcast",
			"exp": time.Now().Add(time.Hour).Unix(), "permissions": []string{"read:market_data"}})
		tok.Header["kid"] = "k1"
		s, _ := tok.SignedString(k)
		c, _, err := wsclient.Dial("ws://"+addr+"/ws?token="+s, wsclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m, err := c.Next(wait)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := m.DataMap()["status"].(string)
		return st
	}
	if st := try(jwt.SigningMethodRS256, key, "https://idp.example"); st != "success" {
		t.Fatalf("the provider's RS256 token: %s", st)
	}
	if st := try(jwt.SigningMethodRS256, key, "https://evil.example"); st != "error" {
		t.Fatalf("a token from another issuer: %s", st)
	}
	if st := try(jwt.SigningMethodHS256, []byte("any-secret-at-all-0123456789"), "https://idp.example"); st != "error" {
		t.Fatalf("HS256 with no secret configured: %s", st)
	}
}

// TestOpsEndpointsAndOrigins: with an ops token, /metrics and /ws/stats
// need it; with an ops listener they move there; a browser Origin outside
// the allow-list cannot open /ws.
func TestOpsEndpointsAndOrigins(t *testing.T) {
	cfg := prodConfig()
	cfg.Ops.Token = "ops-token-0123456789abcdef"
	cfg.HTTP.AllowedOrigins = []string{"https://terminal.example.com", "https://*.desk.example"}
	addr := serveConfig(t, cfg)
	get := func(url, token string) int {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/metrics", "/ws/stats"} {
		if code := get("http://"+addr+path, ""); code != 401 {
			t.Fatalf("%s without the ops token: %d", path, code)
		}
		if code := get("http://"+addr+path, cfg.Ops.Token); code != 200 {
			t.Fatalf("%s with the ops token: %d", path, code)
		}
	}
	if code := get("http://"+addr+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz needs no token: %d", code)
	}
	if code := get("http://"+addr+"/api/v1/publish", ""); code != 405 {
		t.Fatalf("GET /api/v1/publish: %d; want 405", code)
	}
	tok := issue(t, cfg.Auth.JWTSecret, "1")
	for origin, ok := range map[string]bool{"https://terminal.example.com": true, "https://a.desk.example": true,
		"https://evil.example": false, "https://desk.example.evil.com": false, "": true} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := wsclient.Dial("ws://"+addr+"/ws?token="+tok, wsclient.Options{Header: h})
		if (err == nil) != ok {
			t.Fatalf("origin %q: err %v; want allowed=%v", origin, err, ok)
		}
		if err == nil {
			c.Close()
		} else if resp != nil && resp.StatusCode != 403 {
			t.Fatalf("origin %q refused with %d; want 403", origin, resp.StatusCode)
		}
	}

	sep := prodConfig()
	sep.Ops.Listen = "127.0.0.1:0"
	main := serveConfig(t, sep)
	if code := get("http://"+main+"/metrics", ""); code == 200 {
		t.Fatal("/metrics still served on the main listener with ops.listen set")
	}
}

func issue(t *testing.T, secret, user string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix(),
		"permissions": []string{"read:market_data"}}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTLSReloadByContent is finding 13: a renewal copied with cp -p (or
// rsync -t, tar x) keeps a modification time older than the loaded files',
// and the old certificate was served until restart. The reloader compares
// content. The clock is the test's; nothing waits for file times.
func TestTLSReloadByContent(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, "one")
	r, err := newCertReloader(certFile, keyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	served := func() string {
		t.Helper()
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	if cn := served(); cn != "one" {
		t.Fatalf("serving %q; want one", cn)
	}
	// The renewal, with the times cp -p keeps: two hours older.
	writeCert(t, certFile, keyFile, "two")
	old := now.Add(-2 * time.Hour)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Second)
	if cn := served(); cn != "two" {
		t.Fatalf("after an older-dated renewal: serving %q; want two", cn)
	}
	// A half-written renewal keeps the pair in use.
	if err := os.WriteFile(keyFile, []byte("-----BEGIN EC PRIVATE KEY-----\ntrunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if cn := served(); cn != "two" {
		t.Fatalf("after a broken key file: serving %q; want two still", cn)
	}
}

package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func std(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "permissions": []string{"read:market_data"}}
}

type keypair struct {
	method jwt.SigningMethod
	priv   crypto.Signer
	pub    crypto.PublicKey
}

func keypairs(t *testing.T) []keypair {
	t.Helper()
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	epub, epriv, _ := ed25519.GenerateKey(rand.Reader)
	return []keypair{
		{jwt.SigningMethodRS256, r, &r.PublicKey},
		{jwt.SigningMethodES256, e, &e.PublicKey},
		{jwt.SigningMethodEdDSA, epriv, epub},
	}
}

func pemOf(t *testing.T, pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestPublicKeyAlgorithms(t *testing.T) {
	for _, kp := range keypairs(t) {
		t.Run(kp.method.Alg(), func(t *testing.T) {
			key, err := ParsePublicKeyPEM(pemOf(t, kp.pub))
			if err != nil {
				t.Fatal(err)
			}
			v, err := New(Config{Secret: []byte("hs-secret-0123456789abcdef"), PublicKeys: []crypto.PublicKey{key}})
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(sign(t, kp.method, kp.priv, "", std("alice@example.com")))
			if err != nil || id.UserID != "alice@example.com" || !id.Has("read:market_data") {
				t.Fatalf("%+v %v", id, err)
			}
			// A key of another pair does not verify it.
			other := keypairs(t)
			for _, o := range other {
				if o.method == kp.method {
					if _, err := v.Verify(sign(t, o.method, o.priv, "", std("x"))); !errors.Is(err, ErrInvalid) {
						t.Fatalf("a token signed by another %s key: %v", o.method.Alg(), err)
					}
				}
			}
		})
	}
}

// TestKeyConfusion: a token whose header says HS256 but is MACed with the
// public key's bytes, and one that says RS256 with only a secret set, are
// both refused.
func TestKeyConfusion(t *testing.T) {
	kp := keypairs(t)[0]
	pemBytes := pemOf(t, kp.pub)
	v, err := New(Config{PublicKeys: []crypto.PublicKey{kp.pub}})
	if err != nil {
		t.Fatal(err)
	}
	forged := sign(t, jwt.SigningMethodHS256, pemBytes, "", std("mallory"))
	if _, err := v.Verify(forged); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HS256 token MACed with the public key: %v; want refused", err)
	}
	hsOnly := NewVerifier([]byte("hs-secret-0123456789abcdef"))
	if _, err := hsOnly.Verify(sign(t, kp.method, kp.priv, "", std("x"))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("RS256 token with only a secret configured: %v; want refused", err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("a verifier with nothing to verify with was built")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := New(Config{PublicKeys: []crypto.PublicKey{&small.PublicKey}}); err == nil {
		t.Fatal("a 1024-bit RSA key was accepted")
	}
}

func jwk(kid string, pub crypto.PublicKey) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := k.Bytes()
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": enc(b[1:33]), "y": enc(b[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": enc(k)}
	}
	return nil
}

// TestJWKSRotation: keys come from the provider's JWKS by kid; after the
// provider rotates, a token with the new kid is accepted at once (an
// unknown kid fetches the set again) and the retired key no longer works.
func TestJWKSRotation(t *testing.T) {
	old, next := keypairs(t), keypairs(t)
	var set atomic.Value
	publish := func(kps []keypair, prefix string) {
		var keys []map[string]string
		for i, kp := range kps {
			keys = append(keys, jwk(prefix+string(rune('a'+i)), kp.pub))
		}
		b, _ := json.Marshal(map[string]any{"keys": keys})
		set.Store(b)
	}
	publish(old, "old-")
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(set.Load().([]byte))
	}))
	defer idp.Close()
	v, err := New(Config{JWKSURL: idp.URL, Issuer: "https://idp.example", Audience: "marketcast"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	claims := func() jwt.MapClaims {
		c := std("u1")
		c["iss"], c["aud"] = "https://idp.example", []string{"marketcast", "other"}
		return c
	}
	for i, kp := range old {
		kid := "old-" + string(rune('a'+i))
		if _, err := v.Verify(sign(t, kp.method, kp.priv, kid, claims())); err != nil {
			t.Fatalf("%s (%s): %v", kid, kp.method.Alg(), err)
		}
	}
	c := claims()
	c["iss"] = "https://evil.example"
	if _, err := v.Verify(sign(t, old[0].method, old[0].priv, "old-a", c)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong issuer: %v", err)
	}
	c = claims()
	c["aud"] = "someone-else"
	if _, err := v.Verify(sign(t, old[0].method, old[0].priv, "old-a", c)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong audience: %v", err)
	}
	publish(next, "new-")
	v.jwks.mu.Lock()
	v.jwks.attempt = time.Time{} // as if the last fetch were old enough
	v.jwks.mu.Unlock()
	if _, err := v.Verify(sign(t, next[1].method, next[1].priv, "new-b", claims())); err != nil {
		t.Fatalf("a rotated-in key: %v", err)
	}
	if _, err := v.Verify(sign(t, old[0].method, old[0].priv, "old-a", claims())); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a retired key still verifies: %v", err)
	}
	// Made-up kids do not make us hammer the provider.
	n := fetches.Load()
	for range 20 {
		_, _ = v.Verify(sign(t, next[0].method, next[0].priv, "made-up", claims()))
	}
	if fetches.Load() > n+1 {
		t.Fatalf("%d fetches for 20 unknown kids", fetches.Load()-n)
	}
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if _, err := New(Config{JWKSURL: dead.URL}); err == nil || !strings.Contains(err.Error(), "jwks") {
		t.Fatalf("an unreachable JWKS: %v; want an error at start", err)
	}
}

// TestStrictTimeClaims: exp as a numeric string (RFC 7519 wants a number)
// and an iat far in the future are refused.
func TestStrictTimeClaims(t *testing.T) {
	secret := []byte("hs-secret-0123456789abcdef")
	v := NewVerifier(secret)
	exp := time.Now().Add(time.Hour).Unix()
	f := func(c jwt.MapClaims, ok bool) {
		t.Helper()
		_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, "", c))
		if (err == nil) != ok {
			t.Fatalf("claims %v: %v; want ok=%v", c, err, ok)
		}
	}
	f(jwt.MapClaims{"sub": "1", "exp": exp}, true)
	f(jwt.MapClaims{"sub": "1", "exp": "9999999999"}, false)
	f(jwt.MapClaims{"sub": "1", "exp": exp, "iat": time.Now().Add(time.Hour).Unix()}, false)
	f(jwt.MapClaims{"sub": "1", "exp": exp, "iat": time.Now().Add(10 * time.Second).Unix()}, true) // clock skew
	f(jwt.MapClaims{"sub": "1", "exp": exp, "nbf": "0"}, false)
}

package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwks keeps an identity provider's signing keys by kid, refreshed in the
// background and on demand when a token names a kid it does not know (the
// provider rotated its keys).
type jwks struct {
	url     string
	client  *http.Client
	refresh time.Duration

	mu      sync.RWMutex
	byKID   map[string]crypto.PublicKey
	fetched time.Time

	fetchMu sync.Mutex // one fetch at a time
	done    chan struct{}
	once    sync.Once
}

// minRefetch bounds fetches caused by unknown kids: a stranger's token with
// a made-up kid must not make us hammer the provider.
const minRefetch = 30 * time.Second

// maxJWKSBytes bounds a key set document.
const maxJWKSBytes = 1 << 20

func newJWKS(url string, client *http.Client, refresh time.Duration) *jwks {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if refresh <= 0 {
		refresh = 5 * time.Minute
	}
	j := &jwks{url: url, client: client, refresh: refresh, byKID: map[string]crypto.PublicKey{}, done: make(chan struct{})}
	go j.loop()
	return j
}

func (j *jwks) loop() {
	t := time.NewTicker(j.refresh)
	defer t.Stop()
	for {
		select {
		case <-j.done:
			return
		case <-t.C:
			_ = j.fetch() // on failure the keys we have stay in use
		}
	}
}

func (j *jwks) stop() { j.once.Do(func() { close(j.done) }) }

// keys returns the keys for kid (every key when the token names none) that
// verify alg. An unknown kid fetches the set again, at most every minRefetch.
func (j *jwks) keys(kid, alg string) []jwt.VerificationKey {
	pick := func() []jwt.VerificationKey {
		j.mu.RLock()
		defer j.mu.RUnlock()
		var out []jwt.VerificationKey
		for id, k := range j.byKID {
			if kid != "" && id != kid {
				continue
			}
			if a, err := keyAlg(k); err == nil && a == alg {
				out = append(out, k)
			}
		}
		return out
	}
	if out := pick(); len(out) > 0 || kid == "" {
		return out
	}
	j.mu.RLock()
	recent := time.Since(j.fetched) < minRefetch
	j.mu.RUnlock()
	if recent || j.fetch() != nil {
		return nil
	}
	return pick()
}

// fetch replaces the key set with the provider's current one.
func (j *jwks) fetch() error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	resp, err := j.client.Get(j.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return err
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.byKID, j.fetched = keys, time.Now()
	j.mu.Unlock()
	return nil
}

// parseJWKS reads the signing keys of a JSON Web Key Set (RFC 7517):
// RSA, EC P-256 and OKP Ed25519 keys; others (encryption keys, unknown
// types) are skipped.
func parseJWKS(b []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, Use, Alg, Crv string
			N, E, X, Y              string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("not a key set: %w", err)
	}
	out := make(map[string]crypto.PublicKey)
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key crypto.PublicKey
		var err error
		switch k.Kty {
		case "RSA":
			key, err = rsaKey(k.N, k.E)
		case "EC":
			key, err = ecKey(k.Crv, k.X, k.Y)
		case "OKP":
			key, err = okpKey(k.Crv, k.X)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Kid, err)
		}
		if alg, err := keyAlg(key); err != nil || (k.Alg != "" && k.Alg != alg) {
			continue // too weak, or meant for another algorithm
		}
		out[k.Kid] = key
	}
	if len(out) == 0 {
		return nil, errors.New("no usable signing key (RS256, ES256 or EdDSA)")
	}
	return out, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func rsaKey(n, e string) (crypto.PublicKey, error) {
	nb, err := b64(n)
	if err != nil {
		return nil, err
	}
	eb, err := b64(e)
	if err != nil || len(eb) > 4 {
		return nil, errors.New("bad exponent")
	}
	exp := 0
	for _, c := range eb {
		exp = exp<<8 | int(c)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: exp}, nil
}

func ecKey(crv, x, y string) (crypto.PublicKey, error) {
	if crv != "P-256" {
		return nil, fmt.Errorf("curve %s; ES256 wants P-256", crv)
	}
	xb, err := b64(x)
	if err != nil {
		return nil, err
	}
	yb, err := b64(y)
	if err != nil {
		return nil, err
	}
	if len(xb) > 32 || len(yb) > 32 {
		return nil, errors.New("coordinates too long for P-256")
	}
	point := make([]byte, 65) // uncompressed: 04 || X || Y, each left-padded
	point[0] = 4
	copy(point[33-len(xb):33], xb)
	copy(point[65-len(yb):], yb)
	return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point) // checks the point is on the curve
}

func okpKey(crv, x string) (crypto.PublicKey, error) {
	if crv != "Ed25519" {
		return nil, fmt.Errorf("curve %s; EdDSA wants Ed25519", crv)
	}
	xb, err := b64(x)
	if err != nil || len(xb) != ed25519.PublicKeySize {
		return nil, errors.New("bad Ed25519 key")
	}
	return ed25519.PublicKey(xb), nil
}

// ParsePublicKeyPEM reads an RSA, ECDSA P-256 or Ed25519 public key from a
// PEM "PUBLIC KEY" block (PKIX) or an RSA "RSA PUBLIC KEY" block (PKCS #1).
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key crypto.PublicKey
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q; want PUBLIC KEY", block.Type)
	}
	if err != nil {
		return nil, err
	}
	if _, err := keyAlg(key); err != nil {
		return nil, err
	}
	return key, nil
}

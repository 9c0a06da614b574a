package auth

import (
	"context"
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
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwks keeps an identity provider's signing keys by kid, refreshed in the
// background and when a token names a kid it does not know (the provider
// rotated its keys). Strangers choose kids at will, so an unknown kid must
// cost the provider almost nothing: one fetch runs at a time (single
// flight), attempts are at least minRefetch apart whether they succeed or
// fail, each is bounded by fetchTimeout, and a kid the last fetch did not
// know is remembered (a bounded negative cache) and answered at once.
// While the provider fails the keys already known keep working, and a
// caller waits at most kidWait for a fetch, never behind another.
type jwks struct {
	url     string
	client  *http.Client
	refresh time.Duration
	now     func() time.Time

	mu       sync.Mutex
	byKID    map[string]crypto.PublicKey
	attempt  time.Time            // when the last fetch started, success or not
	inflight chan struct{}        // closed when the running fetch ends; nil: none runs
	unknown  map[string]time.Time // kid → until when it is known not to exist
	order    []string             // unknown's kids, oldest first

	fetches *atomic.Int64 // fetches started, for tests and metrics
	done    chan struct{}
	once    sync.Once
}

const (
	// minRefetch is the least time between two fetches caused by unknown
	// kids, and how long an unknown kid is remembered.
	minRefetch = 30 * time.Second
	// fetchTimeout bounds one fetch of the key set.
	fetchTimeout = 5 * time.Second
	// kidWait bounds how long a token with an unknown kid waits for a
	// fetch in flight before it is refused.
	kidWait = 2 * time.Second
	// maxUnknownKIDs bounds the negative cache.
	maxUnknownKIDs = 4096
	// maxJWKSBytes bounds a key set document.
	maxJWKSBytes = 1 << 20
)

func newJWKS(url string, client *http.Client, refresh time.Duration, now func() time.Time) *jwks {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	if refresh <= 0 {
		refresh = 5 * time.Minute
	}
	j := &jwks{url: url, client: client, refresh: refresh, now: now, byKID: map[string]crypto.PublicKey{},
		unknown: map[string]time.Time{}, fetches: new(atomic.Int64), done: make(chan struct{})}
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
			if wait := j.start(true); wait != nil {
				<-wait // on failure the keys we have stay in use
			}
		}
	}
}

func (j *jwks) stop() { j.once.Do(func() { close(j.done) }) }

// keys returns the keys for kid (every key when the token names none) that
// verify alg. An unknown kid may start a fetch (see jwks).
func (j *jwks) keys(kid, alg string) []jwt.VerificationKey {
	if out, known := j.pick(kid, alg); known || kid == "" {
		return out
	}
	j.mu.Lock()
	if until, ok := j.unknown[kid]; ok && j.now().Before(until) {
		j.mu.Unlock()
		return nil
	}
	j.mu.Unlock()
	wait := j.start(false)
	if wait == nil {
		j.remember(kid)
		return nil
	}
	t := time.NewTimer(kidWait)
	defer t.Stop()
	select {
	case <-wait:
	case <-t.C:
		return nil
	}
	out, known := j.pick(kid, alg)
	if !known {
		j.remember(kid)
	}
	return out
}

// pick returns kid's keys for alg; known says whether kid is in the set.
func (j *jwks) pick(kid, alg string) (out []jwt.VerificationKey, known bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, k := range j.byKID {
		if kid != "" && id != kid {
			continue
		}
		known = true
		if a, err := keyAlg(k); err == nil && a == alg {
			out = append(out, k)
		}
	}
	return out, known
}

// remember puts kid in the negative cache, dropping the oldest entry when
// it is full.
func (j *jwks) remember(kid string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.unknown[kid]; !ok {
		if len(j.order) >= maxUnknownKIDs {
			delete(j.unknown, j.order[0])
			j.order = j.order[1:]
		}
		j.order = append(j.order, kid)
	}
	j.unknown[kid] = j.now().Add(minRefetch)
}

// start starts a fetch unless one runs (then it returns that one's
// channel) or the last began less than minRefetch ago (then nil; periodic
// refreshes are exempt from the interval). The channel closes when the
// fetch ends.
func (j *jwks) start(periodic bool) <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.inflight != nil {
		return j.inflight
	}
	now := j.now()
	if !periodic && !j.attempt.IsZero() && now.Sub(j.attempt) < minRefetch {
		return nil
	}
	j.attempt = now
	ch := make(chan struct{})
	j.inflight = ch
	go func() {
		_ = j.fetchNow() // on failure the keys we have stay in use
		j.mu.Lock()
		j.inflight = nil
		j.mu.Unlock()
		close(ch)
	}()
	return ch
}

// fetch fetches the set now and waits for it (at start).
func (j *jwks) fetch() error {
	j.mu.Lock()
	j.attempt = j.now()
	j.mu.Unlock()
	return j.fetchNow()
}

// fetchNow replaces the key set with the provider's current one. A set
// that cannot be read keeps the keys we have.
func (j *jwks) fetchNow() error {
	j.fetches.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	resp, err := j.client.Do(req)
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
	j.byKID = keys
	clear(j.unknown) // a new set may hold any of them
	j.order = j.order[:0]
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

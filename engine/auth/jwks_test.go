package auth

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/internal/testwait"
)

// idp is a real HTTP identity provider whose JWKS endpoint counts its
// fetches and can be switched to fail (500), answer garbage, or hang.
type idp struct {
	*httptest.Server
	fetches atomic.Int64
	mode    atomic.Value // "ok", "500", "garbage", "hang"
	set     []byte
	hung    chan struct{} // closed to release hanging requests
	hanging atomic.Int64  // requests hanging now
}

func newIDP(t *testing.T, set []byte) *idp {
	p := &idp{set: set, hung: make(chan struct{})}
	p.mode.Store("ok")
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		switch p.mode.Load() {
		case "500":
			http.Error(w, "identity provider down", http.StatusInternalServerError)
		case "garbage":
			_, _ = w.Write([]byte("<html>maintenance</html>"))
		case "hang":
			p.hanging.Add(1)
			defer p.hanging.Add(-1)
			select {
			case <-p.hung:
			case <-r.Context().Done():
			}
		default:
			_, _ = w.Write(p.set)
		}
	}))
	t.Cleanup(func() {
		close(p.hung)
		p.Close()
	})
	return p
}

// TestJWKSUnknownKidsCannotHammerTheProvider is finding 6 of the second
// security test: while the provider failed, every stranger's token with a
// made-up kid was one fetch (200 tokens, 200 fetches), and while it hung
// the fetches queued one behind another. Now one fetch runs at a time,
// attempts are minRefetch apart whatever their outcome, and the known key
// keeps working throughout. The clock is the test's.
func TestJWKSUnknownKidsCannotHammerTheProvider(t *testing.T) {
	kp := keypairs(t)[0]
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{jwk("k1", kp.pub)}})
	p := newIDP(t, set)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	v, err := New(Config{JWKSURL: p.URL, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "u1", "exp": clock().Add(time.Hour).Unix(), "permissions": []string{"read:market_data"}}
	}
	known := func() {
		t.Helper()
		if _, err := v.Verify(sign(t, kp.method, kp.priv, "k1", claims())); err != nil {
			t.Fatalf("the known key, provider %v: %v", p.mode.Load(), err)
		}
	}
	strangers := func(n int) {
		t.Helper()
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := v.Verify(sign(t, kp.method, kp.priv, fmt.Sprintf("made-up-%d", i), claims()))
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("made-up kid: %v; want refused", err)
				}
			}()
		}
		wg.Wait()
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start; want 1", n)
	}
	for _, mode := range []string{"ok", "500", "garbage"} {
		p.mode.Store(mode)
		before := p.fetches.Load()
		strangers(200) // within minRefetch of the last attempt: no fetch
		if n := p.fetches.Load() - before; n != 0 {
			t.Fatalf("provider %s: %d fetches for 200 unknown kids within the interval; want 0", mode, n)
		}
		advance(minRefetch)
		strangers(200) // the interval passed: exactly one fetch, shared
		if n := p.fetches.Load() - before; n != 1 {
			t.Fatalf("provider %s: %d fetches for 200 unknown kids; want 1", mode, n)
		}
		known()
	}

	// A hanging provider: one fetch, bounded by its timeout; strangers wait
	// at most kidWait for it, none queues behind another, and the known key
	// answers at once.
	p.mode.Store("hang")
	advance(minRefetch)
	before := p.fetches.Load()
	done := make(chan struct{})
	go func() {
		strangers(20)
		close(done)
	}()
	testwait.For(t, "the fetch to hang", func() bool { return p.hanging.Load() == 1 })
	known()
	testwait.For(t, "every stranger refused", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if n := p.fetches.Load() - before; n != 1 {
		t.Fatalf("%d fetches while the provider hangs; want 1", n)
	}
	// The fetch gives up at its timeout; the provider recovers; after the
	// interval a rotated-in key is fetched once and accepted.
	testwait.For(t, "the hanging fetch to time out", func() bool { return p.hanging.Load() == 0 })
	next := keypairs(t)[1]
	p.set, _ = json.Marshal(map[string]any{"keys": []map[string]string{jwk("k1", kp.pub), jwk("k2", next.pub)}})
	p.mode.Store("ok")
	testwait.For(t, "the hung fetch to end", func() bool {
		v.jwks.mu.Lock()
		defer v.jwks.mu.Unlock()
		return v.jwks.inflight == nil
	})
	advance(minRefetch)
	if _, err := v.Verify(sign(t, next.method, next.priv, "k2", claims())); err != nil {
		t.Fatalf("a rotated-in key after the provider recovered: %v", err)
	}
	known()
}

// TestJWKSNegativeCacheIsBounded: a flood of distinct unknown kids leaves
// at most maxUnknownKIDs remembered.
func TestJWKSNegativeCacheIsBounded(t *testing.T) {
	kp := keypairs(t)[0]
	set, _ := json.Marshal(map[string]any{"keys": []map[string]string{jwk("k1", kp.pub)}})
	p := newIDP(t, set)
	v, err := New(Config{JWKSURL: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for i := range maxUnknownKIDs + 500 {
		v.jwks.remember(fmt.Sprint("kid-", i))
	}
	if n := len(v.jwks.unknown); n != maxUnknownKIDs || len(v.jwks.order) != maxUnknownKIDs {
		t.Fatalf("negative cache holds %d (%d ordered); want %d", n, len(v.jwks.order), maxUnknownKIDs)
	}
}

// TestClientValuesInErrorsAreClipped is finding 9: a token's kid was
// quoted whole in the error that is logged (a 700 KB kid, 14 MB of log a
// minute). Values a client chooses are cut to a fixed length.
func TestClientValuesInErrorsAreClipped(t *testing.T) {
	kp := keypairs(t)[0]
	v, err := New(Config{PublicKeys: []crypto.PublicKey{kp.pub}})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("k", 700<<10)
	es := keypairs(t)[1] // no ES256 key is configured: "no ES256 key (kid …)"
	_, err = v.Verify(sign(t, es.method, es.priv, huge, std("u")))
	if err == nil || len(err.Error()) > 512 || !strings.Contains(err.Error(), "no ES256 key") {
		t.Fatalf("error %.200v for a 700 KB kid; want at most 512 bytes naming the missing key", err)
	}
	_, err = NewVerifier([]byte("hs-secret-0123456789abcdef")).Verify(sign(t, jwt.SigningMethodHS256,
		[]byte("hs-secret-0123456789abcdef"), "", jwt.MapClaims{"sub": strings.Repeat("*", 100000), "exp": time.Now().Add(time.Hour).Unix()}))
	if err == nil || len(err.Error()) > 512 || !strings.Contains(err.Error(), "not a valid user id") {
		t.Fatalf("error %.200v for a 100 KB sub; want at most 512 bytes", err)
	}
}

// TestSeedTokens is issue 20 item 5: the seed's FastAPI tokens carry sub
// and exp and no permissions, and some back ends write sub as a number.
// A numeric sub names the user its decimal string names; other types are
// refused with a clear error; default permissions, when configured, are
// granted to tokens that carry none, and never added to tokens that carry
// some.
func TestSeedTokens(t *testing.T) {
	secret := []byte("hs-secret-0123456789abcdef")
	exp := time.Now().Add(time.Hour).Unix()
	tok := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, "", c) }
	plain := NewVerifier(secret)
	id, err := plain.Verify(tok(jwt.MapClaims{"sub": 42, "exp": exp}))
	if err != nil || id.UserID != "42" || len(id.Permissions) != 0 {
		t.Fatalf("numeric sub: %+v, %v; want user 42 without permissions", id, err)
	}
	for _, sub := range []any{1.5, true, []any{"1"}, map[string]any{"id": 1}, 1e300} {
		if _, err := plain.Verify(tok(jwt.MapClaims{"sub": sub, "exp": exp})); !errors.Is(err, ErrInvalid) ||
			!strings.Contains(err.Error(), "sub must be a string or an integer") {
			t.Fatalf("sub %v: %v; want the clear error", sub, err)
		}
	}
	seeded, err := New(Config{Secret: secret, DefaultPermissions: []string{"read:market_data"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err = seeded.Verify(tok(jwt.MapClaims{"sub": 7, "exp": exp}))
	if err != nil || id.UserID != "7" || !id.Has("read:market_data") || len(id.Permissions) != 1 {
		t.Fatalf("a seed token with default permissions: %+v, %v", id, err)
	}
	id, err = seeded.Verify(tok(jwt.MapClaims{"sub": "8", "exp": exp, "permissions": []string{"read:signals"}}))
	if err != nil || id.Has("read:market_data") || !id.Has("read:signals") {
		t.Fatalf("a token with its own permissions got the defaults too: %+v, %v", id, err)
	}
}

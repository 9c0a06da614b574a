package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/protocol"
)

func TestVerify(t *testing.T) {
	secret := []byte("unit-test-secret-0123456789")
	v := NewVerifier(secret)
	tok, _ := Issue(secret, "42", []string{protocol.PermPublish}, time.Hour)
	for _, form := range []string{tok, "Bearer " + tok, "bearer  " + tok + " "} {
		id, err := v.Verify(form)
		if err != nil || id.UserID != "42" || !id.Has(protocol.PermPublish) || id.Has(protocol.PermReadSignals) {
			t.Fatalf("%q: %+v %v", form, id, err)
		}
	}
	f := func(token string, want error) {
		t.Helper()
		if _, err := v.Verify(token); !errors.Is(err, want) {
			t.Fatalf("got %v; want %v", err, want)
		}
	}
	expired, _ := Issue(secret, "1", nil, -time.Second)
	f(expired, ErrExpired)
	f("", ErrMissing)
	f("Bearer ", ErrMissing)
	other, _ := Issue([]byte("a-different-secret-987654321"), "1", nil, time.Hour)
	f(other, ErrInvalid)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "1", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	f(hs512, ErrInvalid) // only HS256 is accepted
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "1"}).SignedString(secret)
	f(noExp, ErrInvalid)
}

// TestSubjectFollowsTheIDRule: a token's sub must be a user id the publish
// API also accepts, so no one can log in and never receive private data.
func TestSubjectFollowsTheIDRule(t *testing.T) {
	secret := []byte("unit-test-secret-0123456789")
	v := NewVerifier(secret)
	for sub, ok := range map[string]bool{"alice@example.com": true, "用户1": true, "a b": true, "42": true,
		" 2": false, "2 ": false, "a*b": false, "a>b": false, "a\x00b": false} {
		tok, _ := Issue(secret, sub, nil, time.Hour)
		_, err := v.Verify(tok)
		if (err == nil) != ok {
			t.Errorf("sub %q: err %v; want ok=%v", sub, err, ok)
		}
	}
}

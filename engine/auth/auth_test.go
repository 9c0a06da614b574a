package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	secret := []byte("unit-test-secret-0123456789")
	v := NewVerifier(secret)
	tok, _ := Issue(secret, "42", []string{PermPublish}, time.Hour)
	for _, form := range []string{tok, "Bearer " + tok, "bearer  " + tok + " "} {
		id, err := v.Verify(form)
		if err != nil || id.UserID != "42" || !id.Has(PermPublish) || id.Has(PermReadSignals) {
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

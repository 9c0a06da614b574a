// Package auth verifies the JWTs that clients and back ends present and
// turns them into a user id and a permission set.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/protocol"
)

// Identity is what a verified token says about its bearer.
type Identity struct {
	UserID      string
	Permissions []string
	ExpiresAt   time.Time
}

// Has reports whether the identity carries permission p.
func (id *Identity) Has(p string) bool { return slices.Contains(id.Permissions, p) }

// Verifier checks HS256 tokens signed with one secret.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time
}

// Errors a token can fail with; the gateway turns them into codes.
var (
	ErrMissing = errors.New("auth: token missing")
	ErrExpired = errors.New("auth: token expired")
	ErrInvalid = errors.New("auth: token invalid")
)

// NewVerifier returns a verifier for HS256 tokens signed with secret.
func NewVerifier(secret []byte) *Verifier {
	v := &Verifier{secret: secret, now: time.Now}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v
}

type claims struct {
	jwt.RegisteredClaims
	Permissions []string `json:"permissions,omitempty"`
	Scope       string   `json:"scope,omitempty"`
}

// Verify checks a token (a leading "Bearer " is accepted) and returns who it
// names. The error wraps ErrMissing, ErrExpired or ErrInvalid.
func (v *Verifier) Verify(token string) (*Identity, error) {
	token = strings.TrimSpace(token)
	if len(token) >= 6 && strings.EqualFold(token[:6], "bearer") && (len(token) == 6 || token[6] == ' ') {
		token = strings.TrimSpace(token[6:])
	}
	if token == "" {
		return nil, ErrMissing
	}
	var c claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
		}
		return v.secret, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalid)
	}
	if !protocol.ValidID(c.Subject) {
		// One id rule for logins and the publish API, so every user who can
		// log in can also be sent private data.
		return nil, fmt.Errorf("%w: sub %q is not a valid user id (1-%d bytes of printable UTF-8, no * or >, no leading or trailing space)",
			ErrInvalid, c.Subject, protocol.MaxIDBytes)
	}
	perms := c.Permissions
	if len(perms) == 0 && c.Scope != "" {
		perms = strings.Fields(c.Scope)
	}
	return &Identity{UserID: c.Subject, Permissions: perms, ExpiresAt: c.ExpiresAt.Time}, nil
}

// Issue signs a token for user with permissions, valid for ttl. It backs the
// `marketcast token` command and the tests.
func Issue(secret []byte, user string, permissions []string, ttl time.Duration) (string, error) {
	now := time.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Permissions: permissions,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

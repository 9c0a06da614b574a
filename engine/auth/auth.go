// Package auth verifies the JWTs that clients and back ends present and
// turns them into a user id and a permission set. Tokens may be HS256
// (a shared secret: development, and back ends that mint their own), or
// RS256, ES256 and EdDSA signed by an identity provider whose public keys
// are configured as PEM files or fetched from its JWKS URL.
package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/protocol"
)

// Identity is what a verified token says about its bearer.
type Identity struct {
	UserID      string
	Permissions []string // shared with other identities: read-only
	ExpiresAt   time.Time
}

// Has reports whether the identity carries permission p.
func (id *Identity) Has(p string) bool { return slices.Contains(id.Permissions, p) }

// Errors a token can fail with; the gateway turns them into codes.
var (
	ErrMissing = errors.New("auth: token missing")
	ErrExpired = errors.New("auth: token expired")
	ErrInvalid = errors.New("auth: token invalid")
)

// Config says which tokens a Verifier accepts.
type Config struct {
	// Secret verifies HS256 tokens; empty turns HS256 off.
	Secret []byte
	// PublicKeys verify RS256 (*rsa.PublicKey), ES256 (*ecdsa.PublicKey on
	// P-256) and EdDSA (ed25519.PublicKey) tokens.
	PublicKeys []crypto.PublicKey
	// JWKSURL is an identity provider's JSON Web Key Set, fetched at start
	// and every JWKSRefresh; a token's kid picks its key, and an unknown kid
	// makes the set be fetched again (at most every 30 s).
	JWKSURL     string
	JWKSRefresh time.Duration
	HTTPClient  *http.Client
	// Issuer, when set, must equal a token's iss; Audience, when set, must
	// be among its aud.
	Issuer, Audience string
	// DefaultPermissions are granted to a token that carries none (no
	// permissions claim, no scope): the seed's tokens carry only sub and
	// exp. Empty: such a token has no permissions.
	DefaultPermissions []string
	// Now is the clock of token times and key set refreshes (nil:
	// time.Now); tests inject one.
	Now func() time.Time
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	defaults []string
	secret   []byte
	static   []crypto.PublicKey
	jwks     *jwks
	parser   *jwt.Parser
	now      func() time.Time
	perms    permSets
}

// permSets shares permission lists among the identities that carry the
// same one (most users of a deployment carry one of a few), so that an
// identity, which lives as long as its connection, keeps neither a list of
// its own nor the decoded token its strings would otherwise point into.
// Bounded: past maxPermSets distinct lists, a list is copied, not shared.
type permSets struct {
	mu   sync.Mutex
	sets map[string][]string
}

const maxPermSets = 1024

// share returns a list equal to perms, read-only, that holds no memory of
// perms'.
func (p *permSets) share(perms []string) []string {
	if len(perms) == 0 {
		return nil
	}
	key := strings.Join(perms, "\x00")
	p.mu.Lock()
	defer p.mu.Unlock()
	if set, ok := p.sets[key]; ok {
		return set
	}
	set := make([]string, len(perms))
	for i, s := range perms {
		set[i] = strings.Clone(s)
	}
	if p.sets == nil {
		p.sets = make(map[string][]string)
	}
	if len(p.sets) < maxPermSets {
		p.sets[key] = set
	}
	return set
}

// NewVerifier returns a verifier for HS256 tokens signed with secret.
func NewVerifier(secret []byte) *Verifier {
	v, _ := New(Config{Secret: secret}) // no keys to fetch: cannot fail
	return v
}

// maxIssuedAhead is how far in the future a token's iat may lie (clock
// skew between its issuer and us); beyond, the token is refused.
const maxIssuedAhead = time.Minute

// New returns a verifier for cfg. With a JWKS URL it fetches the key set
// first and fails if it cannot: a server that can verify no token should
// say so at start.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{secret: cfg.Secret, static: cfg.PublicKeys, now: time.Now, defaults: slices.Clone(cfg.DefaultPermissions)}
	if cfg.Now != nil {
		v.now = cfg.Now
	}
	var methods []string
	if len(cfg.Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.PublicKeys) > 0 || cfg.JWKSURL != "" {
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg())
	}
	if len(methods) == 0 {
		return nil, errors.New("auth: no way to verify tokens: set a secret, public keys or a JWKS URL")
	}
	for _, k := range cfg.PublicKeys {
		if _, err := keyAlg(k); err != nil {
			return nil, err
		}
	}
	if cfg.JWKSURL != "" {
		v.jwks = newJWKS(cfg.JWKSURL, cfg.HTTPClient, cfg.JWKSRefresh, func() time.Time { return v.now() })
		if err := v.jwks.fetch(); err != nil {
			v.jwks.stop()
			return nil, fmt.Errorf("auth: jwks %s: %w", cfg.JWKSURL, err)
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Close stops the key set's refresh.
func (v *Verifier) Close() {
	if v.jwks != nil {
		v.jwks.stop()
	}
}

// keyAlg is the algorithm a public key verifies.
func keyAlg(k crypto.PublicKey) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("auth: RSA key of %d bits; want at least 2048", k.N.BitLen())
		}
		return jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name != "P-256" {
			return "", fmt.Errorf("auth: ECDSA key on %s; ES256 wants P-256", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256.Alg(), nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), nil
	}
	return "", fmt.Errorf("auth: unsupported public key type %T", k)
}

// key finds the keys that may have signed t: only keys of the kind its
// algorithm needs, so a token can never have an HMAC checked with a public
// key or the reverse.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
		if len(v.secret) == 0 {
			return nil, errors.New("HS256 tokens are not accepted here")
		}
		return v.secret, nil
	}
	kid, _ := t.Header["kid"].(string)
	var keys []jwt.VerificationKey
	for _, k := range v.static {
		if a, _ := keyAlg(k); a == alg {
			keys = append(keys, k)
		}
	}
	if v.jwks != nil {
		keys = append(keys, v.jwks.keys(kid, alg)...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no %s key (kid %q)", alg, clip(kid))
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// maxQuoted bounds a client-chosen value (a kid, a sub) quoted in an
// error: errors are logged and returned to strangers, and a token may be
// hundreds of kilobytes.
const maxQuoted = 64

// clip cuts s to maxQuoted bytes (on a rune boundary), marking the cut.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:n], len(s))
}

type claims struct {
	jwt.RegisteredClaims
	Permissions []string `json:"permissions,omitempty"`
	Scope       string   `json:"scope,omitempty"`
}

// UnmarshalJSON refuses time claims that are not JSON numbers (RFC 7519
// says NumericDate; the library also took "123" as a string). One decode:
// every connection's token passes here, a reconnect storm's ten thousand
// at once.
func (c *claims) UnmarshalJSON(b []byte) error {
	type plain claims // without this method
	var w struct {
		plain
		// Shallower than RegisteredClaims' fields of the same names, so
		// these take the times as they are written.
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
		Sub json.RawMessage `json:"sub"`
	}
	if err := sonic.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = claims(w.plain)
	if sub := bytes.TrimSpace(w.Sub); len(sub) > 0 {
		// The seed's back end issues numeric user ids ("sub": 42); a number
		// names the user its decimal string names, as user_id does.
		id, ok := protocol.ParseUserID(sub)
		if !ok {
			return errors.New("claim sub must be a string or an integer")
		}
		c.Subject = id
	}
	for _, t := range []struct {
		name string
		raw  json.RawMessage
		dst  **jwt.NumericDate
	}{{"exp", w.Exp, &c.ExpiresAt}, {"nbf", w.Nbf, &c.NotBefore}, {"iat", w.Iat, &c.IssuedAt}} {
		if t.raw == nil {
			continue
		}
		if v := bytes.TrimSpace(t.raw); len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
			return fmt.Errorf("claim %s must be a number", t.name)
		}
		d := new(jwt.NumericDate)
		if err := d.UnmarshalJSON(t.raw); err != nil {
			return fmt.Errorf("claim %s: %w", t.name, err)
		}
		*t.dst = d
	}
	return nil
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
	_, err := v.parser.ParseWithClaims(token, &c, v.key)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.IssuedAt != nil && c.IssuedAt.After(v.now().Add(maxIssuedAhead)) {
		return nil, fmt.Errorf("%w: issued in the future (iat %v)", ErrInvalid, c.IssuedAt.Time)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalid)
	}
	if !protocol.ValidID(c.Subject) {
		// One id rule for logins and the publish API, so every user who can
		// log in can also be sent private data.
		return nil, fmt.Errorf("%w: sub %q is not a valid user id (1-%d bytes of printable UTF-8, no * or >, no leading or trailing space)",
			ErrInvalid, clip(c.Subject), protocol.MaxIDBytes)
	}
	perms := c.Permissions
	if len(perms) == 0 && c.Scope != "" {
		perms = strings.Fields(c.Scope)
	}
	if len(perms) == 0 {
		perms = v.defaults
	}
	// Copies: the claims' strings may point into the decoded token.
	return &Identity{UserID: strings.Clone(c.Subject), Permissions: v.perms.share(perms), ExpiresAt: c.ExpiresAt.Time}, nil
}

// Issue signs an HS256 token for user with permissions, valid for ttl. It
// backs the `marketcast token` command, development tokens and the tests.
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

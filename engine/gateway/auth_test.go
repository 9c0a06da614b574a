package gateway_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/protocol"
)

func expectAuthSuccess(t *testing.T, c *wsclient.Client, user string) *wsclient.Message {
	t.Helper()
	m := mustNext(t, c)
	d := m.DataMap()
	if m.Type != "auth_response" || d["status"] != "success" || d["user_id"] != user ||
		!wireTime.MatchString(d["expires_at"].(string)) || len(d["permissions"].([]any)) == 0 {
		t.Fatalf("got %s; want auth success for %s", m.Raw, user)
	}
	return m
}

func TestAuthShapes(t *testing.T) {
	ts := newTestServer(t, nil)
	tok := ts.token("42", allPerms...)

	t.Run("data.token", func(t *testing.T) {
		c := ts.dial(wsclient.Options{})
		mustSend(t, c, map[string]any{"type": "auth", "id": 1, "data": map[string]any{"token": tok}})
		if m := expectAuthSuccess(t, c, "42"); string(m.ID) != "1" {
			t.Fatalf("id not echoed: %s", m.Raw)
		}
	})
	t.Run("seed token key with Bearer prefix", func(t *testing.T) {
		c := ts.dial(wsclient.Options{})
		mustSend(t, c, map[string]any{"type": "auth", "token": "Bearer " + tok})
		expectAuthSuccess(t, c, "42")
	})
	t.Run("query", func(t *testing.T) {
		c := dialURL(t, ts.ws+"?token="+tok, wsclient.Options{})
		expectAuthSuccess(t, c, "42")
	})
	t.Run("header", func(t *testing.T) {
		c := dialURL(t, ts.ws, wsclient.Options{Header: http.Header{"Authorization": {"Bearer " + tok}}})
		expectAuthSuccess(t, c, "42")
	})
	t.Run("scope claim", func(t *testing.T) {
		claims := jwt.MapClaims{"sub": "7", "exp": time.Now().Add(time.Hour).Unix(), "scope": "read:market_data publish"}
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
		c := dialURL(t, ts.ws+"?token="+s, wsclient.Options{})
		m := expectAuthSuccess(t, c, "7")
		if perms := m.DataMap()["permissions"].([]any); len(perms) != 2 || perms[1] != "publish" {
			t.Fatalf("permissions %v; want the scope's two", perms)
		}
	})
}

func TestAuthFailuresClose4001(t *testing.T) {
	ts := newTestServer(t, nil)
	hs := func(claims jwt.MapClaims, key string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	none := func() string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"1","exp":9999999999}`)) + "."
	}
	cases := map[string]struct{ token, code string }{
		"expired":     {mustToken(t, "1", allPerms, -time.Minute), "TOKEN_EXPIRED"},
		"wrong key":   {hs(jwt.MapClaims{"sub": "1", "exp": exp}, "another-secret-0123456789"), "AUTH_FAILED"},
		"alg none":    {none(), "AUTH_FAILED"},
		"no exp":      {hs(jwt.MapClaims{"sub": "1"}, testSecret), "AUTH_FAILED"},
		"no sub":      {hs(jwt.MapClaims{"exp": exp}, testSecret), "AUTH_FAILED"},
		"garbage":     {"not-a-jwt", "AUTH_FAILED"},
		"empty token": {"", "NOT_AUTHENTICATED"},
	}
	for name, tc := range cases {
		t.Run("message/"+name, func(t *testing.T) {
			c := ts.dial(wsclient.Options{})
			mustSend(t, c, map[string]any{"type": "auth", "data": map[string]any{"token": tc.token}})
			m := mustNext(t, c)
			if d := m.DataMap(); m.Type != "auth_response" || d["status"] != "error" || d["code"] != tc.code || d["message"] == "" {
				t.Fatalf("got %s; want auth_response error %s", m.Raw, tc.code)
			}
			expectClose(t, c, protocol.CloseAuthFailed)
		})
		if tc.token == "" {
			continue
		}
		t.Run("query/"+name, func(t *testing.T) {
			c := dialURL(t, ts.ws+"?token="+tc.token, wsclient.Options{})
			if m := mustNext(t, c); m.DataMap()["status"] != "error" {
				t.Fatalf("got %s", m.Raw)
			}
			expectClose(t, c, protocol.CloseAuthFailed)
		})
	}
}

func TestAuthTimeout(t *testing.T) {
	ts := newTestServer(t, func(c *configs.Config) { c.Auth.Timeout.Duration = 200 * time.Millisecond })
	c := ts.dial(wsclient.Options{})
	m := mustNext(t, c)
	if m.Type != "auth_response" || m.DataMap()["code"] != "NOT_AUTHENTICATED" {
		t.Fatalf("got %s", m.Raw)
	}
	expectClose(t, c, protocol.CloseAuthFailed)
}

func TestRequestsBeforeAuth(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.dial(wsclient.Options{})
	expectError(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}, "NOT_AUTHENTICATED")
	mustSend(t, c, map[string]any{"type": "auth", "token": ts.token("1", allPerms...)})
	expectAuthSuccess(t, c, "1")
}

func TestPermissions(t *testing.T) {
	ts := newTestServer(t, nil)
	c := ts.login("1", "read:signals")
	m := expectError(t, c, map[string]any{"type": "subscribe", "channel": "market_data", "symbols": []string{"SHFE.rb2405"}}, "FORBIDDEN")
	if !strings.Contains(string(m.Raw), "read:market_data") {
		t.Fatalf("message should name the missing permission: %s", m.Raw)
	}
}

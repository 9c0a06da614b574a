package gateway

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/protocol"
)

// serveDevToken signs a token for whoever asks. It exists only when the
// configuration enables development tokens.
func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request) {
	if !loopbackPeer(r.RemoteAddr) {
		// Development mode listening beyond loopback (a container's :8000)
		// must not hand tokens to whoever reaches it by IP: only a client on
		// this machine gets one (elsewhere: marketcast token).
		s.apiFail(w, http.StatusForbidden, protocol.CodeForbidden, "development tokens are served to clients on this machine (loopback) only")
		return
	}
	if !localHost(r.Host) {
		// A page on another site could make a browser ask a local server
		// for tokens through a DNS name that resolves here (DNS rebinding);
		// localhost and IP literals cannot be rebound.
		s.apiFail(w, http.StatusForbidden, protocol.CodeForbidden, "development tokens are served to localhost or an IP address only")
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" {
		user = "demo"
	}
	if !protocol.ValidID(user) {
		s.apiFail(w, http.StatusBadRequest, protocol.CodeInvalidMessage, "invalid user")
		return
	}
	perms := []string{protocol.PermReadMarketData, protocol.PermReadSignals}
	if p := r.URL.Query().Get("permissions"); p != "" {
		perms = strings.Split(p, ",")
	}
	tok, err := auth.Issue(s.cfg.DevSecret, user, perms, s.cfg.DevTokenTTL)
	if err != nil {
		s.apiFail(w, http.StatusInternalServerError, protocol.CodeInternal, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, devToken{Token: tok, UserID: user, Permissions: perms,
		ExpiresAt: wireTime(time.Now().Add(s.cfg.DevTokenTTL))})
}

// localHost reports whether a request's Host names this machine in a way
// DNS cannot redirect: localhost or an IP address.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return host == "localhost" || net.ParseIP(host) != nil
}

// loopbackPeer reports whether a request's peer address is a loopback one.
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type devToken struct {
	Token       string   `json:"token"`
	UserID      string   `json:"user_id"`
	Permissions []string `json:"permissions"`
	ExpiresAt   string   `json:"expires_at"`
}

package gateway

import (
	"net/http"
	"strings"
	"time"

	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/protocol"
)

// serveDevToken signs a token for whoever asks. It exists only when the
// configuration enables development tokens.
func (s *Server) serveDevToken(w http.ResponseWriter, r *http.Request) {
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

type devToken struct {
	Token       string   `json:"token"`
	UserID      string   `json:"user_id"`
	Permissions []string `json:"permissions"`
	ExpiresAt   string   `json:"expires_at"`
}

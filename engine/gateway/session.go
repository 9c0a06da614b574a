package gateway

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lxzan/gws"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/auth"
	"github.com/marketcast/marketcast/engine/frame"
	"github.com/marketcast/marketcast/protocol"
)

// session is one WebSocket connection. Requests are handled one at a time on
// the connection's read loop; mu guards what timers touch too.
type session struct {
	srv    *Server
	conn   *gws.Conn
	out    *engine.Outbox
	slot   net.Conn // the accepted connection as the limiter counts it: closed last
	remote string
	token  string // offered in the handshake, verified in OnOpen

	// Owned by the read loop.
	subs    map[string]*engine.Subscription // topic key → subscription
	bucket  bucket
	strikes int
	closing bool // closed for rate limiting: ignore what still arrives

	mu          sync.Mutex
	ident       *auth.Identity
	authTimer   *time.Timer
	expiryTimer *time.Timer
	gone        bool
}

func (ss *session) identity() *auth.Identity {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.ident
}

// send queues a direct answer.
func (ss *session) send(b []byte) {
	ss.srv.answers.Inc()
	ss.out.Send(b)
}

func (ss *session) sendError(id []byte, code, message string) {
	ss.srv.countError(code)
	ss.send(errorFrame(id, code, message))
}

// close queues a close frame after what is queued; the flusher closes the
// socket once it is written, which ends the read loop.
func (ss *session) close(code uint16, reason string) {
	ss.srv.countClose(code)
	ss.srv.log.Debug("closing connection", "remote", ss.remote, "code", code, "reason", reason)
	ss.out.Close(code, reason)
}

// wsHandler adapts gws callbacks to sessions.
type wsHandler struct{ srv *Server }

func sessionOf(c *gws.Conn) *session {
	v, _ := c.Session().Load("")
	return v.(*session)
}

func (e *wsHandler) OnOpen(c *gws.Conn) {
	ss := sessionOf(c)
	s := e.srv
	s.sessions.Store(ss, struct{}{})
	s.connsTotal.Inc()
	s.connsOpen.Inc()
	_ = c.SetReadDeadline(time.Now().Add(2 * s.cfg.PingInterval))
	if ss.token != "" {
		tok := ss.token
		ss.token = "" // it pins the request line for the connection's life otherwise
		ss.authenticate(nil, tok)
		return
	}
	ss.mu.Lock()
	ss.authTimer = time.AfterFunc(s.cfg.AuthTimeout, func() {
		if ss.identity() == nil {
			ss.send(encodeAnswer(&answer{Type: protocol.AnswerAuth, Data: authData{
				Status: "error", Code: protocol.CodeNotAuthenticated, Message: "no auth message within " + s.cfg.AuthTimeout.String()}}))
			ss.close(protocol.CloseAuthFailed, "authentication timeout")
		}
	})
	ss.mu.Unlock()
}

func (e *wsHandler) OnClose(c *gws.Conn, err error) { sessionOf(c).finish(err) }

// finish releases everything the connection holds. It runs once, from gws's
// OnClose or from readLoop after a panic, whichever comes first.
func (ss *session) finish(err error) {
	s := ss.srv
	ss.mu.Lock()
	if ss.gone {
		ss.mu.Unlock()
		return
	}
	ss.gone = true
	if ss.authTimer != nil {
		ss.authTimer.Stop()
	}
	if ss.expiryTimer != nil {
		ss.expiryTimer.Stop()
	}
	ss.mu.Unlock()
	ss.out.Detach()
	for k, sub := range ss.subs {
		s.hub.Unsubscribe(sub)
		delete(ss.subs, k)
	}
	_ = ss.conn.NetConn().Close()
	_ = ss.slot.Close() // frees the connection limiter's slot
	s.sessions.Delete(ss)
	s.connsOpen.Dec()
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		s.log.Debug("connection closed by client", "remote", ss.remote, "code", ce.Code)
	} else {
		s.log.Debug("connection closed", "remote", ss.remote, "err", err, "code", ss.out.CloseCode())
	}
}

func (e *wsHandler) OnPing(c *gws.Conn, payload []byte) {
	ss := sessionOf(c)
	if !ss.admit(nil) {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * e.srv.cfg.PingInterval))
	// The pong goes through the session's queue, never around it, so it can
	// neither block the read loop nor interleave with a half-written batch;
	// a newer pong replaces one still waiting.
	ss.out.Pong(frame.Pong(payload))
}

func (e *wsHandler) OnPong(c *gws.Conn, _ []byte) {
	ss := sessionOf(c)
	if !ss.admit(nil) {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * e.srv.cfg.PingInterval))
}

// testHookOnMessage, when set by a test, runs on every client message
// inside the read loop (tests use it to prove a panic there is contained).
var testHookOnMessage func(b []byte)

func (e *wsHandler) OnMessage(c *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	if testHookOnMessage != nil {
		testHookOnMessage(msg.Bytes())
	}
	ss := sessionOf(c)
	_ = c.SetReadDeadline(time.Now().Add(2 * e.srv.cfg.PingInterval))
	if msg.Opcode == gws.OpcodeBinary {
		if ss.admit(nil) {
			ss.sendError(nil, protocol.CodeInvalidMessage, "binary frames are not accepted: send JSON as text frames")
		}
		return
	}
	ss.handle(msg.Bytes())
}

// admit charges one client frame (a message, a ping or a pong: control
// frames count too) to the connection's rate budget. Past the budget a
// message is answered RATE_LIMITED (b is its bytes; nil for control
// frames); after RateStrikes refusals in a row the connection is closed
// with 4029 and read for at most one more second.
func (ss *session) admit(b []byte) bool {
	s := ss.srv
	if ss.closing {
		return false
	}
	s.received.Inc()
	if ss.bucket.allow(time.Now()) {
		ss.strikes = 0
		return true
	}
	ss.strikes++
	if ss.strikes >= s.cfg.RateStrikes {
		ss.closing = true
		ss.sendError(nil, protocol.CodeRateLimited, "rate limit exceeded persistently; closing")
		ss.close(protocol.CloseRateLimited, "rate limit exceeded")
		// A peer that floods and reads nothing must not keep this read loop
		// busy until the write timeout: stop reading soon.
		_ = ss.conn.SetReadDeadline(time.Now().Add(time.Second))
		return false
	}
	if b != nil {
		ss.sendError(peekID(b), protocol.CodeRateLimited,
			fmt.Sprintf("more than %d messages per minute; slow down", s.cfg.RatePerMinute))
	}
	return false
}

// handle answers one client frame.
func (ss *session) handle(b []byte) {
	if !ss.admit(b) {
		return
	}

	req, err := DecodeRequest(b)
	if err != nil {
		var rerr *requestError
		if errors.As(err, &rerr) {
			ss.sendError(rerr.id, rerr.code, rerr.message)
		}
		return
	}
	switch req.Type {
	case protocol.RequestAuth:
		ss.authenticate(req.ID, req.authToken())
	case protocol.RequestPing:
		ss.send(encodeAnswer(&answer{Type: protocol.AnswerPong, ID: req.ID, Data: pongData{ClientTimestamp: req.Timestamp}}))
	case protocol.RequestSubscribe, protocol.RequestUnsubscribe:
		if ss.identity() == nil {
			ss.sendError(req.ID, protocol.CodeNotAuthenticated, "authenticate first: send {\"type\":\"auth\",\"data\":{\"token\":\"...\"}}")
			return
		}
		if req.Type == protocol.RequestSubscribe {
			ss.subscribe(req)
		} else {
			ss.unsubscribe(req)
		}
	default:
		ss.sendError(req.ID, protocol.CodeUnknownType, fmt.Sprintf("unknown type %q", req.Type))
	}
}

// authenticate verifies a token from the handshake or an auth message. A
// connection may re-authenticate with a fresh token for the same user
// before its token expires; it keeps its subscriptions.
func (ss *session) authenticate(id []byte, token string) {
	s := ss.srv
	ident, err := s.verifier.Verify(token)
	if err != nil {
		code, msg := protocol.CodeAuthFailed, "invalid token"
		switch {
		case errors.Is(err, auth.ErrMissing):
			code, msg = protocol.CodeNotAuthenticated, "token missing"
		case errors.Is(err, auth.ErrExpired):
			code, msg = protocol.CodeTokenExpired, "token expired"
		}
		s.countError(code)
		s.authLog.Info("authentication failed", "remote", ss.remote, "err", err)
		ss.send(encodeAnswer(&answer{Type: protocol.AnswerAuth, ID: id, Data: authData{Status: "error", Code: code, Message: msg}}))
		ss.close(protocol.CloseAuthFailed, "authentication failed")
		return
	}
	ss.mu.Lock()
	if ss.gone {
		ss.mu.Unlock()
		return
	}
	if ss.ident != nil && ss.ident.UserID != ident.UserID {
		ss.mu.Unlock()
		s.countError(protocol.CodeForbidden)
		ss.send(encodeAnswer(&answer{Type: protocol.AnswerAuth, ID: id, Data: authData{Status: "error", Code: protocol.CodeForbidden,
			Message: "a connection cannot change user; open a new connection"}}))
		return
	}
	ss.ident = ident
	if ss.authTimer != nil {
		ss.authTimer.Stop()
	}
	if ss.expiryTimer != nil {
		ss.expiryTimer.Stop()
	}
	ss.expiryTimer = time.AfterFunc(time.Until(ident.ExpiresAt), func() {
		ss.mu.Lock()
		expired := ss.ident == ident // not replaced by a re-auth meanwhile
		ss.mu.Unlock()
		if expired {
			ss.close(protocol.CloseTokenExpired, "token expired")
		}
	})
	// Queue the answer before releasing mu so a concurrent expiry cannot
	// close the connection between the check and the answer.
	ss.send(encodeAnswer(&answer{Type: protocol.AnswerAuth, ID: id, Data: authData{
		Status: "success", UserID: ident.UserID, Permissions: ident.Permissions,
		ExpiresAt: wireTime(ident.ExpiresAt),
	}}))
	ss.mu.Unlock()
	ss.recheck(ident)
}

// recheck ends every subscription the identity no longer permits: a re-auth
// with fewer permissions takes effect on what the connection already holds,
// not only on new subscribes. The client is told which topics ended.
func (ss *session) recheck(ident *auth.Identity) {
	var ended []string
	for key := range ss.subs {
		push, _, _ := strings.Cut(key, ":")
		ch, ok := protocol.Lookup(push)
		if ok && ch.Permission != "" && !ident.Has(ch.Permission) {
			ss.drop(key)
			ended = append(ended, key)
		}
	}
	if len(ended) > 0 {
		slices.Sort(ended)
		ss.sendError(nil, protocol.CodeForbidden, "the new token lacks a permission these subscriptions need; unsubscribed: "+
			strings.Join(ended, ", "))
	}
}

// bucket is a token bucket: rate per minute sustained, burst at once. It is
// used by the read loop alone, so it needs no lock.
type bucket struct {
	tokens, burst, perSec float64
	last                  time.Time
}

func newBucket(perMinute, burst int) bucket {
	return bucket{tokens: float64(burst), burst: float64(burst), perSec: float64(perMinute) / 60}
}

func (b *bucket) allow(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

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
	subs    subSet
	bucket  bucket // request work (rate_per_minute, rate_burst)
	strikes int
	closing bool // closed for rate limiting: ignore what still arrives
	// frames is the frame budget: every frame the peer sends, data,
	// continuation and control alike, whole messages or not.
	frames    bucket
	fullFrame bool      // frames holds the authenticated budget
	fragments int       // frames of the fragmented message being read; 0: none
	fragStart time.Time // when its first frame arrived (Config.Now)
	fragEnd   time.Time // the wall-clock read deadline it must end by

	mu          sync.Mutex
	ident       *auth.Identity
	authTimer   *time.Timer
	expiryTimer *time.Timer
	gone        bool
	// closeSent is closed once the outbox has written the close frame;
	// made only for a read loop that waits for it (stopReading), as few do.
	closeSent chan struct{}
	closeDone bool // the close frame is written
}

// closeWritten notes that the outbox wrote the close frame.
func (ss *session) closeWritten() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.closeDone {
		ss.closeDone = true
		if ss.closeSent != nil {
			close(ss.closeSent)
		}
	}
}

// closeFrameSent returns a channel closed once the close frame is written.
func (ss *session) closeFrameSent() <-chan struct{} {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closeSent == nil {
		ss.closeSent = make(chan struct{})
		if ss.closeDone {
			close(ss.closeSent)
		}
	}
	return ss.closeSent
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
	ss.touch()
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
	for _, sub := range ss.subs.subs {
		s.hub.Unsubscribe(sub)
	}
	ss.subs = subSet{}
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
	if ss.closing {
		return
	}
	ss.touch()
	// The pong goes through the session's queue, never around it, so it can
	// neither block the read loop nor interleave with a half-written batch;
	// a newer pong replaces one still waiting.
	ss.out.Pong(frame.Pong(payload))
}

func (e *wsHandler) OnPong(c *gws.Conn, _ []byte) {
	ss := sessionOf(c)
	if !ss.closing {
		ss.touch()
	}
}

// OnFrame charges every frame to the connection's frame budget and bounds
// fragmented messages. Control frames and continuation frames cost what a
// whole message costs: the peer chooses how to cut its bytes into frames,
// and each frame costs a read and a parse. A peer over the budget is
// closed, not slowed: see refuse.
func (e *wsHandler) OnFrame(c *gws.Conn, op gws.Opcode, fin bool, _ int) error {
	return sessionOf(c).frame(op, fin)
}

// preAuthFrames is the frame budget of a connection that has not
// authenticated: enough for an auth message and a few pings or early
// requests. The full budget comes with a valid token, so an anonymous
// flooder is closed after a handful of frames.
const preAuthFrames = 16

func (ss *session) frame(op gws.Opcode, fin bool) error {
	s := ss.srv
	s.framesReceived.Inc()
	if ss.closing {
		// Closed already (4029 for requests past the budget): read nothing
		// more.
		return ss.stopReading()
	}
	now := s.now()
	if !ss.frames.allow(now, 1) {
		s.framesRefused.Inc()
		return ss.refuse(protocol.CloseRateLimited, "frame budget exceeded")
	}
	switch {
	case op == gws.OpcodeContinuation && ss.fragments > 0:
		ss.fragments++
		switch {
		case ss.fragments > s.cfg.MaxFragments:
			return ss.refuse(protocol.ClosePolicy, fmt.Sprintf("a message in more than %d fragments", s.cfg.MaxFragments))
		case now.Sub(ss.fragStart) > s.cfg.FragmentTimeout:
			return ss.refuse(protocol.ClosePolicy, "a fragmented message took longer than "+s.cfg.FragmentTimeout.String())
		}
		if fin {
			ss.fragments = 0
		}
	case (op == gws.OpcodeText || op == gws.OpcodeBinary) && !fin:
		ss.fragments, ss.fragStart = 1, now
		ss.fragEnd = time.Now().Add(s.cfg.FragmentTimeout)
	}
	return nil
}

// errRefused ends the read loop of a connection refused by refuse.
var errRefused = errors.New("gateway: connection refused for abuse")

// refuse closes the connection with code and stops reading it at once. A
// flooder's frames are then no longer read (reading and discarding them
// is the cost the flood is after): the read loop waits, costing nothing,
// until the close frame is written and the peer had closeGrace to read it,
// then ends the connection.
func (ss *session) refuse(code uint16, reason string) error {
	ss.closing = true
	ss.close(code, reason)
	return ss.stopReading()
}

// stopReading holds the read loop of a closing connection, costing
// nothing, until its close frame is written and the peer had closeGrace to
// read it; the error it returns then ends the connection.
func (ss *session) stopReading() error {
	s := ss.srv
	t := time.NewTimer(refuseWait)
	defer t.Stop()
	select {
	case <-ss.closeFrameSent():
		t.Reset(closeGrace)
		select {
		case <-t.C:
		case <-s.stop:
		}
	case <-t.C: // the peer accepts nothing: the outbox's write timeout ends it
	case <-s.stop:
	}
	return errRefused
}

const (
	// refuseWait bounds how long a refused connection's read loop waits for
	// its close frame to be written.
	refuseWait = 5 * time.Second
	// closeGrace is how long the peer has to read the close frame of a
	// refused connection before the socket is closed under it (the
	// outbox gives the same grace to any close).
	closeGrace = time.Second
)

// touch moves the read deadline: a connection silent for two ping
// intervals is dead. Any frame moves it, except that a fragmented message
// must end within the fragment timeout whatever else arrives.
func (ss *session) touch() {
	deadline := time.Now().Add(2 * ss.srv.cfg.PingInterval)
	if ss.fragments > 0 && ss.fragEnd.Before(deadline) {
		deadline = ss.fragEnd
	}
	_ = ss.conn.SetReadDeadline(deadline)
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
	ss.srv.received.Inc()
	ss.touch()
	if msg.Opcode == gws.OpcodeBinary {
		if ss.admit(nil, 1) {
			ss.sendError(nil, protocol.CodeInvalidMessage, "binary frames are not accepted: send JSON as text frames")
		}
		return
	}
	ss.handle(msg.Bytes())
}

// admit charges cost units of request work to the connection's request
// budget (rate_per_minute sustained, rate_burst at once). Past the budget
// the request is answered RATE_LIMITED (id is its id); after RateStrikes
// refusals in a row the connection is closed with 4029.
func (ss *session) admit(id []byte, cost int) bool {
	s := ss.srv
	if ss.closing {
		return false
	}
	if ss.bucket.allow(s.now(), min(cost, s.cfg.RateBurst)) {
		ss.strikes = 0
		return true
	}
	ss.strikes++
	if ss.strikes >= s.cfg.RateStrikes {
		ss.closing = true
		ss.sendError(nil, protocol.CodeRateLimited, "rate limit exceeded persistently; closing")
		ss.close(protocol.CloseRateLimited, "rate limit exceeded")
		return false
	}
	msg := fmt.Sprintf("more than %d requests per minute; slow down", s.cfg.RatePerMinute)
	if cost > 1 {
		msg = fmt.Sprintf("this request adds %d topics, which costs %d of the %d request units a minute; retry later", cost+1, cost+1, s.cfg.RatePerMinute)
	}
	ss.sendError(id, protocol.CodeRateLimited, msg)
	return false
}

// chargeWork charges the work of a request beyond its first unit (the
// topics a subscribe adds beyond one).
func (ss *session) chargeWork(id []byte, extra int) bool {
	if extra <= 0 {
		return true
	}
	return ss.admit(id, extra)
}

// handle answers one client frame.
func (ss *session) handle(b []byte) {
	if ss.closing {
		return
	}
	req, err := DecodeRequest(b)
	if err == nil && req.Type == protocol.RequestCredit && ss.credit(req) {
		return
	}
	if err != nil {
		var rerr *requestError
		if errors.As(err, &rerr) && ss.admit(rerr.id, 1) {
			ss.sendError(rerr.id, rerr.code, rerr.message)
		}
		return
	}
	// Every request costs one unit of the request budget as it arrives (a
	// subscribe more: see roomFor). A valid flow-control credit is exempt
	// (above): it must not be refused for the requests around it, and the
	// frame budget (frame) already bounds it.
	if !ss.admit(req.ID, 1) {
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
	case protocol.RequestCredit: // not a valid one: see credit
		ss.sendError(req.ID, protocol.CodeInvalidMessage,
			fmt.Sprintf("credit needs n, an integer from 1 to %d", protocol.FlowMaxCredit))
	default:
		ss.sendError(req.ID, protocol.CodeUnknownType, fmt.Sprintf("unknown type %q", req.Type))
	}
}

// credit takes a valid flow-control grant: the outbox may push n more
// messages; the first grant turns flow control on. It is answered with
// nothing and does not count against the request rate limit (a client
// grants as fast as its application handles messages, and must not be
// refused for it); the frame it came in counts like any other. An invalid
// one reports false and is answered, and counted, as a bad request. It
// works before authentication too: it grants nothing but pushed messages.
func (ss *session) credit(req *Request) bool {
	if req.N == nil || *req.N < 1 || *req.N > protocol.FlowMaxCredit {
		return false
	}
	ss.out.Credit(*req.N)
	return true
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
	if !ss.fullFrame {
		// The frame budget of a known user replaces the anonymous one.
		ss.frames, ss.fullFrame = newBucket(float64(s.cfg.FramesPerSecond), s.cfg.FrameBurst), true
	}
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
	for _, key := range ss.subs.keys() {
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

// bucket is a token bucket: perSec sustained, burst at once. It is used by
// the read loop alone, so it needs no lock.
type bucket struct {
	tokens, burst, perSec float64
	last                  time.Time
}

func newBucket(perSec float64, burst int) bucket {
	return bucket{tokens: float64(burst), burst: float64(burst), perSec: perSec}
}

// allow takes cost tokens if the bucket holds them.
func (b *bucket) allow(now time.Time, cost int) bool {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens < float64(cost) {
		return false
	}
	b.tokens -= float64(cost)
	return true
}

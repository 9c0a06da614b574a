// Package wsclient is a small synchronous WebSocket client over gws for
// tests: dial, send JSON, and read decoded messages from a channel with
// timeouts. (The load generator uses bench/load's leaner raw client.)
package wsclient

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// Message is one received server message, decoded.
type Message struct {
	Type       string          `json:"type"`
	ID         json.RawMessage `json:"id,omitempty"`
	Channel    string          `json:"channel,omitempty"`
	Symbol     string          `json:"symbol,omitempty"`
	StrategyID string          `json:"strategy_id,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	Timestamp  string          `json:"timestamp,omitempty"`
	Sequence   uint64          `json:"sequence,omitempty"`
	Snapshot   bool            `json:"snapshot,omitempty"`
	Raw        []byte          `json:"-"`
	Received   time.Time       `json:"-"`
}

// DataMap decodes Data into a map.
func (m *Message) DataMap() map[string]any {
	var v map[string]any
	_ = json.Unmarshal(m.Data, &v)
	return v
}

// Options configure a dial.
type Options struct {
	Header  http.Header
	Deflate bool
	// Buffer is the message channel capacity. Zero means 4096. When it is
	// full the read loop blocks, which stalls the connection like a slow
	// reader would.
	Buffer int
	// TLS configures a wss:// connection.
	TLS *tls.Config
}

// Client is a connected WebSocket client.
type Client struct {
	Conn     *gws.Conn
	Messages chan *Message

	closed    chan struct{}
	closeOnce sync.Once
	done      chan struct{} // closed by Close
	doneOnce  sync.Once
	closeErr  atomic.Value // error

	gateMu sync.Mutex
	gate   chan struct{} // non-nil while stalled

	pings atomic.Int64 // server pings answered
}

// ErrTimeout is returned when nothing arrives in time.
var ErrTimeout = errors.New("wsclient: timeout")

// Dial connects to url (ws://host/ws?...).
func Dial(url string, o Options) (*Client, *http.Response, error) {
	if o.Buffer == 0 {
		o.Buffer = 4096
	}
	c := &Client{Messages: make(chan *Message, o.Buffer), closed: make(chan struct{}), done: make(chan struct{})}
	conn, resp, err := gws.NewClient(handler{c}, &gws.ClientOption{
		Addr:               url,
		RequestHeader:      o.Header,
		TlsConfig:          o.TLS,
		ReadMaxPayloadSize: 64 << 20,
		HandshakeTimeout:   5 * time.Second,
		PermessageDeflate: gws.PermessageDeflate{
			Enabled:               o.Deflate,
			ServerContextTakeover: true,
			ClientContextTakeover: true,
		},
	})
	if err != nil {
		return nil, resp, err
	}
	c.Conn = conn
	go conn.ReadLoop()
	return c, resp, nil
}

// Send writes v as a JSON text message.
func (c *Client) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Conn.WriteMessage(gws.OpcodeText, b)
}

// SendRaw writes b as a text message as it is.
func (c *Client) SendRaw(b []byte) error { return c.Conn.WriteMessage(gws.OpcodeText, b) }

// Next returns the next message or ErrTimeout, or the close error once the
// connection is closed and drained.
func (c *Client) Next(timeout time.Duration) (*Message, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-c.Messages:
		return m, nil
	case <-t.C:
		return nil, ErrTimeout
	case <-c.closed:
		select {
		case m := <-c.Messages:
			return m, nil
		default:
			return nil, c.CloseErr()
		}
	}
}

// WaitFor returns the first message for which match is true, skipping
// others, within timeout.
func (c *Client) WaitFor(timeout time.Duration, match func(*Message) bool) (*Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ErrTimeout
		}
		m, err := c.Next(left)
		if err != nil {
			return nil, err
		}
		if match(m) {
			return m, nil
		}
	}
}

// WaitType waits for a message of type typ.
func (c *Client) WaitType(timeout time.Duration, typ string) (*Message, error) {
	return c.WaitFor(timeout, func(m *Message) bool { return m.Type == typ })
}

// Closed is closed when the connection ends.
func (c *Client) Closed() <-chan struct{} { return c.closed }

// CloseErr is why the connection ended (a *gws.CloseError carries the code).
func (c *Client) CloseErr() error {
	if v := c.closeErr.Load(); v != nil {
		return v.(error)
	}
	return nil
}

// CloseCode is the close code the server sent, or 0.
func (c *Client) CloseCode() uint16 {
	var ce *gws.CloseError
	if errors.As(c.CloseErr(), &ce) {
		return ce.Code
	}
	return 0
}

// WaitClose waits for the connection to end and returns the close code.
func (c *Client) WaitClose(timeout time.Duration) (uint16, error) {
	select {
	case <-c.closed:
		return c.CloseCode(), nil
	case <-time.After(timeout):
		return 0, ErrTimeout
	}
}

// Stall makes the read loop stop reading at the next message, as a frozen
// client would, until Unstall or Close.
func (c *Client) Stall() {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	if c.gate == nil {
		c.gate = make(chan struct{})
	}
}

// Unstall lets a stalled read loop go on.
func (c *Client) Unstall() {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

// Pings is how many WebSocket pings from the server the client answered.
func (c *Client) Pings() int64 { return c.pings.Load() }

// Close closes the connection with 1000. A read loop stalled or blocked
// on a full Messages buffer is released, so it ends with the connection.
func (c *Client) Close() {
	c.doneOnce.Do(func() { close(c.done) })
	_ = c.Conn.WriteClose(1000, nil)
	_ = c.Conn.NetConn().Close()
}

type handler struct{ c *Client }

func (h handler) OnOpen(*gws.Conn) {}

func (h handler) OnClose(_ *gws.Conn, err error) {
	if err == nil {
		err = errors.New("closed")
	}
	h.c.closeErr.Store(fmtErr{err})
	h.c.closeOnce.Do(func() { close(h.c.closed) })
}

func (h handler) OnPing(conn *gws.Conn, payload []byte) {
	h.c.pings.Add(1)
	_ = conn.WritePong(payload)
}
func (h handler) OnPong(*gws.Conn, []byte) {}

func (h handler) OnMessage(conn *gws.Conn, msg *gws.Message) {
	defer msg.Close()
	h.c.gateMu.Lock()
	gate := h.c.gate
	h.c.gateMu.Unlock()
	if gate != nil {
		select { // frozen until Unstall or the end of the connection
		case <-gate:
		case <-h.c.closed:
		case <-h.c.done:
		}
	}
	raw := append([]byte(nil), msg.Bytes()...)
	m := &Message{Raw: raw, Received: time.Now()}
	if err := json.Unmarshal(raw, m); err != nil {
		m.Type = "!invalid-json"
	}
	select {
	case h.c.Messages <- m:
	case <-h.c.done:
	}
}

// fmtErr keeps atomic.Value's concrete type constant.
type fmtErr struct{ error }

func (e fmtErr) Unwrap() error  { return e.error }
func (e fmtErr) String() string { return fmt.Sprint(e.error) }

package load

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
)

// RawConn is a lean WebSocket client for load generation: one goroutine
// per connection reading into a small buffer and parsing frames in place,
// so the load generator spends its CPU on measuring, not on a framework.
// It answers pings, inflates permessage-deflate frames and hands every data
// frame to OnData (the bytes are valid only during the call).
type RawConn struct {
	seen    int // compressed frames read
	conn    net.Conn
	br      *bufio.Reader
	deflate bool
	onData  func(*RawConn, []byte)
	wmu     sync.Mutex
	stalled atomic.Bool
	closed  chan struct{}
	err     error
}

// InflateEvery, when > 1, makes connections inflate only one compressed
// frame in so many and report the others to their callback as nil: a single
// load-generator core cannot inflate a server's whole compressed output, and
// latency needs only a sample. Answers are never compressed, so all of them
// are read. Set it before dialing.
var InflateEvery = 1

// DialRaw opens a WebSocket to rawURL (ws:// or wss://host/path?query) from source IP
// src.
func DialRaw(rawURL, src string, deflate bool, onData func(*RawConn, []byte)) (*RawConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "wss" {
		// The load generator measures the server, not its certificate.
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname()}) //nolint:gosec
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n"
	if deflate {
		req += "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"
	}
	req += "\r\n"
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 8<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &RawConn{conn: conn, br: br, onData: onData, closed: make(chan struct{}),
		deflate: deflate && strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")}
	go c.readLoop()
	return c, nil
}

// Send writes a masked text frame.
func (c *RawConn) Send(p []byte) error { return c.write(0x1, p) }

func (c *RawConn) write(op byte, p []byte) error {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	hdr := make([]byte, 0, 14+len(p))
	hdr = append(hdr, 0x80|op)
	switch n := len(p); {
	case n <= 125:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	hdr = append(hdr, mask[:]...)
	start := len(hdr)
	hdr = append(hdr, p...)
	for i := range hdr[start:] {
		hdr[start+i] ^= mask[i%4]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(hdr)
	return err
}

// Stall stops reading: the socket's buffers fill and the server sees a
// consumer that takes nothing.
func (c *RawConn) Stall() { c.stalled.Store(true) }

// Close closes the connection.
func (c *RawConn) Close() { _ = c.conn.Close() }

// Done is closed when the read loop ends; Err says why.
func (c *RawConn) Done() <-chan struct{} { return c.closed }
func (c *RawConn) Err() error            { return c.err }

func (c *RawConn) readLoop() {
	defer close(c.closed)
	var hdr [8]byte
	buf := make([]byte, 0, 4096)
	for {
		for c.stalled.Load() {
			time.Sleep(100 * time.Millisecond)
		}
		b0, err := c.br.ReadByte()
		if err != nil {
			c.err = err
			return
		}
		b1, err := c.br.ReadByte()
		if err != nil {
			c.err = err
			return
		}
		n := int(b1 & 0x7f)
		switch n {
		case 126:
			if _, err = io.ReadFull(c.br, hdr[:2]); err == nil {
				n = int(binary.BigEndian.Uint16(hdr[:2]))
			}
		case 127:
			if _, err = io.ReadFull(c.br, hdr[:8]); err == nil {
				n = int(binary.BigEndian.Uint64(hdr[:8]))
			}
		}
		if err != nil {
			c.err = err
			return
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		p := buf[:n]
		if _, err := io.ReadFull(c.br, p); err != nil {
			c.err = err
			return
		}
		switch op := b0 & 0x0f; op {
		case 0x1, 0x2:
			if b0&0x40 != 0 && c.deflate {
				if c.seen++; InflateEvery > 1 && c.seen%InflateEvery != 0 {
					c.onData(c, nil)
					continue
				}
				if p, err = frame.Inflate(p); err != nil {
					c.err = err
					return
				}
			}
			c.onData(c, p)
		case 0x9:
			_ = c.write(0xA, p)
		case 0x8:
			code := 0
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			c.err = fmt.Errorf("closed by server: %d %s", code, p[min(2, len(p)):])
			c.Close()
			return
		case 0xA:
		default:
			c.err = errors.New("unexpected opcode")
			return
		}
	}
}

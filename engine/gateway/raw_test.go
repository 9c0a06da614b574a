package gateway_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rawConn is a WebSocket client that writes whatever bytes a test gives it,
// so frame-level attacks reach the server exactly as an attacker sends them.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// dialRaw upgrades a TCP connection to url. extra lines are added to the
// request headers ("Name: value").
func dialRaw(t testing.TB, rawURL string, extra ...string) *rawConn {
	t.Helper()
	r, resp, err := tryDialRaw(rawURL, extra...)
	if err != nil {
		t.Fatalf("raw dial %s: %v", rawURL, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("raw dial %s: status %d", rawURL, resp.StatusCode)
	}
	r.t = t
	t.Cleanup(func() { r.c.Close() })
	return r
}

func tryDialRaw(rawURL string, extra ...string) (*rawConn, *http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13" +
		"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return &rawConn{c: c, br: br}, resp, nil
}

const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover"

// clientFrame builds a masked client frame. first is the first header byte
// (FIN, RSV bits and opcode).
func clientFrame(first byte, payload []byte) []byte {
	b := []byte{first}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{1, 2, 3, 4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

func textFrame(s string) []byte { return clientFrame(0x81, []byte(s)) }

func (r *rawConn) write(b []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(b)
	return err
}

func (r *rawConn) mustWrite(b []byte) {
	r.t.Helper()
	if err := r.write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// readFrame reads one server frame (server frames are never masked).
func (r *rawConn) readFrame(timeout time.Duration) (first byte, payload []byte, err error) {
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err = io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(r.br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(r.br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r.br, payload)
	return h[0], payload, err
}

// errNoCloseFrame means the server ended the connection without a close frame.
var errNoCloseFrame = errors.New("connection ended without a close frame")

// closeCode reads frames until a close frame and returns its code.
func (r *rawConn) closeCode(timeout time.Duration) (uint16, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		first, p, err := r.readFrame(time.Until(deadline))
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset") {
				return 0, errNoCloseFrame
			}
			return 0, err
		}
		if first&0x0f == 0x8 {
			if len(p) < 2 {
				return 1005, nil
			}
			return binary.BigEndian.Uint16(p), nil
		}
	}
	return 0, errors.New("no close frame in time")
}

// text reads frames until a text frame and returns its payload.
func (r *rawConn) text(timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	for {
		first, p, err := r.readFrame(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		switch first & 0x0f {
		case 0x1:
			return p, nil
		case 0x8:
			return nil, fmt.Errorf("closed: % x", p)
		}
	}
}

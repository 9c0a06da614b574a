//go:build linux

package engine_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/internal/testwait"
	"github.com/marketcast/marketcast/protocol"
)

// tcpPair returns the two ends of a loopback TCP connection: the server's,
// on which the outbox writes, and the client's.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { s.Close(); c.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// unsent is what the kernel holds unsent on c (SIOCOUTQNSD).
func unsent(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := raw.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQNSD) }); err != nil || ierr != nil {
		t.Fatalf("SIOCOUTQNSD: %v %v", err, ierr)
	}
	return n
}

func bigOrder(i, size int) engine.Message {
	return engine.Message{Topic: "orders:1", Mode: engine.Reliable, Type: "order_update", Channel: "orders",
		Data: fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, strings.Repeat("x", size))}
}

// TestUnsentBytesStayUnderTheLimit: to a reader that reads nothing, the
// kernel never holds more than the unsent limit (plus one frame) unsent,
// however much is queued: the rest waits in the outbox. One writev of the
// whole batch put ~55 KB there on loopback, against a 4 KB limit.
func TestUnsentBytesStayUnderTheLimit(t *testing.T) {
	const limit = 4096
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) {
		c.FlushDelay, c.MaxUnsentBytes, c.MaxPendingBytes, c.WriteTimeout = 0, limit, 64<<20, time.Hour
	})
	server, _ := tcpPair(t)
	o := h.NewOutbox(server, false)
	subscribe(t, h, o, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	const frameSize = 1000
	for i := range 4000 { // 4 MB: more than any kernel buffer takes
		publish(t, h, bigOrder(i, frameSize))
	}
	// The reader's receive buffer fills, then the server's unsent bytes
	// reach the limit and the flusher waits with the rest queued.
	var last int
	testwait.Check(t, func() error {
		frames, _ := o.Pending()
		n := unsent(t, server)
		if n < limit/2 || frames == 0 || n != last {
			last = n
			return fmt.Errorf("%d bytes unsent, %d frames queued: not settled", n, frames)
		}
		return nil
	})
	if n := unsent(t, server); n > limit+frameSize+200 {
		t.Fatalf("the kernel holds %d bytes unsent; want at most the limit %d and one frame", n, limit)
	}
}

// reader reads WebSocket frames from c.
type reader struct {
	t  *testing.T
	br *bufio.Reader
}

// next returns the next frame's first byte and payload; io.EOF at the end.
func (r *reader) next() (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r.br, p)
	return hdr[0], p, err
}

// TestStoppedReaderIsCutWith4008: a reader that stops reading is given up
// on after the write timeout without progress, and the stream it finds
// when it reads again ends with a 4008 close frame, not a bare cut.
func TestStoppedReaderIsCutWith4008(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) {
		c.FlushDelay, c.MaxUnsentBytes, c.MaxPendingBytes, c.WriteTimeout = 0, 4096, 64<<20, 300*time.Millisecond
	})
	server, client := tcpPair(t)
	o := h.NewOutbox(server, false)
	subscribe(t, h, o, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	for i := range 4000 {
		publish(t, h, bigOrder(i, 1000))
	}
	testwait.For(t, "the stopped reader to be given up on", func() bool { return o.CloseCode() == protocol.CloseSlowConsumer })
	if got := metric(h, "marketcast_write_timeouts_total"); got != 1 {
		t.Fatalf("marketcast_write_timeouts_total %v; want 1", got)
	}
	_ = client.SetReadDeadline(time.Now().Add(testwait.Deadline))
	r := &reader{t: t, br: bufio.NewReaderSize(client, 64<<10)}
	var (
		frames int
		last   []byte
		op     byte
	)
	for {
		b0, p, err := r.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", frames, err)
		}
		if op == 0x88 {
			t.Fatalf("a frame after the close frame: %#x", b0)
		}
		frames++
		op, last = b0&0x0f|0x80, p
		if b0 == 0x81 {
			var m struct{ Sequence uint64 }
			if json.Unmarshal(p, &m) != nil || m.Sequence != uint64(frames) {
				t.Fatalf("frame %d: %q: want sequence %d, whole and in order", frames, p, frames)
			}
		}
	}
	if op != 0x88 || len(last) < 2 || binary.BigEndian.Uint16(last) != protocol.CloseSlowConsumer {
		t.Fatalf("the stream ended after %d frames with %#x %q; want a 4008 close frame", frames, op, last)
	}
	t.Logf("read %d frames, then close 4008 %q", frames-1, last[2:])
}

// TestSlowReaderIsNeverCut: the write timeout measures lack of progress, not
// one long write. A reader draining ~150 KB/s takes seconds for a batch of
// almost a megabyte but keeps reading, so it is never cut, and gets every
// message in order; one write deadline per batch cut it after the timeout.
func TestSlowReaderIsNeverCut(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) {
		c.FlushDelay, c.MaxUnsentBytes, c.MaxPendingBytes, c.WriteTimeout = 0, 4096, 64<<20, 5*time.Second
	})
	server, client := tcpPair(t)
	o := h.NewOutbox(server, false)
	subscribe(t, h, o, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	const n = 900
	b := h.NewBatch() // one batch: the flusher takes it in one go
	for i := range n {
		if _, err := b.Publish(t.Context(), bigOrder(i, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	b.End()
	r := &reader{t: t, br: bufio.NewReaderSize(&paced{c: client, rate: 150 << 10}, 1024)}
	_ = client.SetReadDeadline(time.Now().Add(testwait.Deadline))
	for i := 1; i <= n; i++ {
		b0, p, err := r.next()
		if err != nil || b0 != 0x81 {
			t.Fatalf("message %d: %#x %q %v (close code %d)", i, b0, p, err, o.CloseCode())
		}
		var m struct{ Sequence uint64 }
		if json.Unmarshal(p, &m) != nil || m.Sequence != uint64(i) {
			t.Fatalf("got %q; want sequence %d", p, i)
		}
	}
	if code := o.CloseCode(); code != 0 {
		t.Fatalf("closed with %d", code)
	}
}

// paced reads at most rate bytes a second, as a reader on a slow link.
type paced struct {
	c     net.Conn
	rate  int
	start time.Time
	read  int
}

func (r *paced) Read(p []byte) (int, error) {
	if r.start.IsZero() {
		r.start = time.Now()
	}
	due := r.start.Add(time.Duration(float64(r.read) / float64(r.rate) * float64(time.Second)))
	time.Sleep(time.Until(due)) // the link's pace, not synchronization
	n, err := r.c.Read(p[:min(len(p), 1024)])
	r.read += n
	return n, err
}

// TestIdleOutboxLetsItsBuffersGo: an outbox that wrote a burst keeps its
// buffers while it may write again soon, lets them go once idle, and writes
// as before afterwards (19,000 idle terminals kept 300-odd bytes each).
func TestIdleOutboxLetsItsBuffersGo(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) { c.FlushDelay = 0 })
	server, client := tcpPair(t)
	o := h.NewOutbox(server, false)
	r := &reader{t: t, br: bufio.NewReader(client)}
	subscribe(t, h, o, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	readOrder := func(want int) {
		t.Helper()
		_ = client.SetReadDeadline(time.Now().Add(testwait.Deadline))
		_, p, err := r.next()
		if err != nil || !strings.Contains(string(p), fmt.Sprintf(`"n":%d`, want)) {
			t.Fatalf("frame %q, %v; want order %d", p, err, want)
		}
	}
	for i := range 8 {
		publish(t, h, order("1", i))
	}
	for i := range 8 {
		readOrder(i)
	}
	testwait.For(t, "the writer to release the outbox", func() bool {
		flushing, _ := o.FlusherState()
		return !flushing
	})
	if o.Buffers() == 0 {
		t.Fatal("no buffers kept after a burst: the test shows nothing")
	}
	o.TrimIdle(time.Time{}) // written since: not idle
	if o.Buffers() == 0 {
		t.Fatal("buffers let go by an outbox that wrote since the time given")
	}
	o.TrimIdle(time.Now().Add(time.Hour))
	if n := o.Buffers(); n != 0 {
		t.Fatalf("an idle outbox keeps room for %d entries and iovecs; want none", n)
	}
	publish(t, h, order("1", 8))
	readOrder(8)
}

// TestLagCountsWhatAStalledPeerIsOwed: a peer that reads nothing is owed
// the frame its socket blocked in — taken from the queue, its write waiting
// for the peer — and Lag says so, at least as old as the frame; once the
// peer has read it, it is owed nothing.
func TestLagCountsWhatAStalledPeerIsOwed(t *testing.T) {
	h, _ := newHub(t, func(c *engine.Config, _ *engine.HistoryLimits) {
		c.FlushDelay, c.MaxUnsentBytes, c.MaxPendingBytes, c.WriteTimeout = 0, 4096, 64<<20, time.Hour
	})
	server, client := tcpPair(t)
	o := h.NewOutbox(server, false)
	subscribe(t, h, o, "orders:1", engine.Reliable, engine.SubscribeOptions{})
	// 4 MB: more than an unread loopback connection takes, so its write
	// waits, and nothing is left in the queue.
	publish(t, h, bigOrder(1, 4<<20))
	published := time.Now()
	testwait.For(t, "the frame to be taken from the queue", func() bool {
		frames, _ := o.Pending()
		return frames == 0
	})
	now := time.Now()
	if lag := o.Lag(now); lag < now.Sub(published) {
		t.Fatalf("Lag %v while the peer reads nothing; want at least %v (the frame being written)", lag, now.Sub(published))
	}
	r := &reader{t: t, br: bufio.NewReader(client)}
	_ = client.SetReadDeadline(time.Now().Add(testwait.Deadline))
	if _, _, err := r.next(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "Lag to fall to 0 once the frame is read", func() bool { return o.Lag(time.Now()) == 0 })
}

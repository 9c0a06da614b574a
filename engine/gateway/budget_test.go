package gateway_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/engine/gateway"
	"github.com/marketcast/marketcast/internal/testwait"
)

// fakeClock is a clock a test moves by hand: the rate and frame budgets
// read it, so a test observes time without waiting for it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// withClock injects clock into the gateway's budgets.
func withClock(clock *fakeClock) func(*gateway.Config) {
	return func(g *gateway.Config) { g.Now = clock.Now }
}

// authedRaw opens a raw WebSocket authenticated as user by ?token= and
// reads the auth answer.
func (ts *testServer) authedRaw(user string) *rawConn {
	ts.t.Helper()
	r := dialRaw(ts.t, ts.ws+"?token="+ts.token(user, allPerms...))
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"success"`) {
		ts.t.Fatalf("auth: %v %s", err, b)
	}
	return r
}

// floodUntilClosed writes batch over and over from a goroutine until the
// connection stops taking bytes, and meanwhile reads until the server's
// close frame: the flood of an attacker who also reads what it is sent.
func floodUntilClosed(t testing.TB, r *rawConn, batch []byte) (uint16, error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_ = r.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := r.c.Write(batch); err != nil {
				return
			}
		}
	}()
	code, err := r.closeCode(wait)
	_ = r.c.Close()
	<-done
	return code, err
}

// TestEmptyContinuationFloodIsClosed is finding 5 of the second security
// test: a fragmented message started and never finished, fed empty
// continuation frames forever with a ping now and then to keep the read
// deadline moving. It kept 0.8 core busy for 120 s and was never closed;
// a message may now have max_fragments frames.
func TestEmptyContinuationFloodIsClosed(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.authedRaw("frag")
	r.mustWrite(clientFrame(0x01, []byte(`{"ty`))) // text, not final
	empty := clientFrame(0x00, nil)                // continuation, not final, no payload
	batch := []byte(strings.Repeat(string(empty), 1000) + string(clientFrame(0x89, nil)))
	code, err := floodUntilClosed(t, r, batch)
	if err != nil || code != 1008 {
		t.Fatalf("close %d, %v; want 1008 (too many fragments)", code, err)
	}
	// The read loop stopped at the limit: nowhere near the 1,000 frames of
	// even the first batch were read.
	if n := ts.metric("marketcast_frames_received_total"); n < 65 || n > 200 {
		t.Fatalf("the server read %v frames; want the 65 the limit allows and little more", n)
	}
}

// TestFragmentedMessageHasATimeLimit: a fragmented message that never ends,
// fed one continuation frame now and then (within the fragment limit and
// the frame budget), is closed once it is older than fragment_timeout. The
// clock is the test's.
func TestFragmentedMessageHasATimeLimit(t *testing.T) {
	clock := newFakeClock()
	ts := newTestServerWith(t, func(c *configs.Config) {
		c.Limits.FragmentTimeout.Duration = 10 * time.Second
	}, withClock(clock))
	r := ts.authedRaw("slowfrag")
	r.mustWrite(clientFrame(0x01, []byte(`{"type":`)))
	r.mustWrite(clientFrame(0x00, []byte(`"pi`)))
	r.mustWrite(clientFrame(0x89, nil)) // a ping between fragments is legal
	if first, _, err := r.readFrame(wait); err != nil || first&0x0f != 0xA {
		t.Fatalf("ping between fragments: frame %x, %v; want a pong", first, err)
	}
	clock.Add(10*time.Second + time.Millisecond)
	r.mustWrite(clientFrame(0x00, []byte(`ng"`)))
	code, err := r.closeCode(wait)
	if err != nil || code != 1008 {
		t.Fatalf("close %d, %v; want 1008 (fragmented message took too long)", code, err)
	}

	// Within the limit the same message completes and is answered.
	r = ts.authedRaw("fastfrag")
	r.mustWrite(clientFrame(0x01, []byte(`{"type":`)))
	clock.Add(9 * time.Second)
	r.mustWrite(clientFrame(0x80, []byte(`"ping","id":"whole"}`)))
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"whole"`) {
		t.Fatalf("fragmented ping within the limit: %s, %v", b, err)
	}
}

// TestFrameBudgetIsExact: with the clock stopped the budget never refills,
// so a connection gets exactly frame_burst frames, control frames
// included, and the next one closes it with 4029.
func TestFrameBudgetIsExact(t *testing.T) {
	clock := newFakeClock()
	ts := newTestServerWith(t, func(c *configs.Config) {
		c.Limits.FrameBurst = 40
		c.Limits.FramesPerSecond = 10
		c.Limits.RateBurst = 30
	}, withClock(clock))
	r := ts.authedRaw("budget")
	ping := clientFrame(0x89, nil)
	for range 39 {
		r.mustWrite(ping)
	}
	r.mustWrite(textFrame(`{"type":"ping","id":"fortieth"}`)) // frame 40: still in the budget
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"fortieth"`) {
		t.Fatalf("the 40th frame: %s, %v; want its pong", b, err)
	}
	r.mustWrite(ping) // frame 41
	code, err := r.closeCode(wait)
	if err != nil || code != 4029 {
		t.Fatalf("close %d, %v; want 4029 after the budget", code, err)
	}
	if n := ts.metric("marketcast_frame_budget_closes_total"); n != 1 {
		t.Fatalf("frame budget closes %v; want 1", n)
	}

	// The budget refills with time: frames_per_second after a second.
	r = ts.authedRaw("refill")
	for range 39 {
		r.mustWrite(ping)
	}
	r.mustWrite(textFrame(`{"type":"ping","id":"spent"}`)) // the answer says all 40 were read
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"spent"`) {
		t.Fatalf("spending the budget: %s, %v", b, err)
	}
	clock.Add(time.Second)
	for range ts.cfg.Limits.FramesPerSecond - 1 {
		r.mustWrite(ping)
	}
	r.mustWrite(textFrame(`{"type":"ping","id":"refilled"}`))
	if b, err := r.text(wait); err != nil || !strings.Contains(string(b), `"refilled"`) {
		t.Fatalf("after a second's refill: %s, %v; want the pong", b, err)
	}
}

// TestReconnectingPingFloodersAreClosed is finding 12: six clients send
// WebSocket pings as fast as they can and reconnect whenever closed (they
// took 0.7 core; the server read each for a second after closing it).
// Every connection is closed with 4029, and the server stops reading it at
// its budget: the frames it reads are bounded by the budget per
// connection, whatever the flooders send. (The CPU this costs is measured
// in docs/SECURITY.md; timings never decide a test.)
func TestReconnectingPingFloodersAreClosed(t *testing.T) {
	ts := newTestServer(t, nil)
	const flooders, rounds = 6, 4
	ping := clientFrame(0x89, []byte("0123456789abcdef"))
	batch := []byte(strings.Repeat(string(ping), 2000))
	tok := ts.token("flooder", allPerms...)
	var closed4029 atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, flooders*rounds)
	for f := range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				url := ts.ws
				if f%2 == 0 {
					url += "?token=" + tok // half of them authenticated
				}
				r, _, err := tryDialRaw(url)
				if err != nil {
					errs <- err
					return
				}
				code, err := floodUntilClosed(t, r, batch)
				if err != nil || code != 4029 {
					errs <- fmt.Errorf("flooder %d: close %d, %v; want 4029", f, code, err)
					return
				}
				closed4029.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	testwait.For(t, "every flooder's connection gone", func() bool { return ts.srv.ActiveConnections() == 0 })
	conns := float64(flooders * rounds)
	if n := ts.metric("marketcast_frame_budget_closes_total"); n != conns {
		t.Fatalf("frame budget closes %v; want %v", n, conns)
	}
	// Authenticated connections get frame_burst frames, anonymous ones 16;
	// one more each is the frame that found the budget empty, and a few
	// for the budget's refill while a flood runs.
	limit := conns/2*float64(ts.cfg.Limits.FrameBurst+1) + conns/2*17 + conns*float64(ts.cfg.Limits.FramesPerSecond)
	if n := ts.metric("marketcast_frames_received_total"); n > limit {
		t.Fatalf("the server read %v frames from %v flooding connections; want at most %v", n, conns, limit)
	}
	t.Logf("%d connections closed with 4029; %v frames read", closed4029.Load(), ts.metric("marketcast_frames_received_total"))
}

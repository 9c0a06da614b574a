package natstest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a NATS server that a test can freeze:
// while frozen it forwards nothing in either direction and holds what it
// read, as a server stopped by SIGSTOP, a stop-the-world pause or a peer
// gone without a reset looks to its clients; thawed, it delivers what it
// held, in order. Delay makes it forward late instead (a lagging link).
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	delay  time.Duration
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's NATS URL.
func (p *Proxy) URL() string { return "nats://" + p.Addr() }

// Freeze stops forwarding.
func (p *Proxy) Freeze() { p.set(true, p.getDelay()) }

// Thaw forwards again, what was held first.
func (p *Proxy) Thaw() { p.set(false, p.getDelay()) }

// Delay makes every chunk wait d before it is forwarded (0: at once).
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	frozen := p.frozen
	p.mu.Unlock()
	p.set(frozen, d)
}

func (p *Proxy) getDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

func (p *Proxy) set(frozen bool, delay time.Duration) {
	p.mu.Lock()
	p.frozen, p.delay = frozen, delay
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Cut closes every connection through the proxy (new ones are accepted).
func (p *Proxy) Cut() {
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.frozen = false
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies from src to dst, honouring freezes and delays. A chunk read
// while frozen waits for the thaw.
func (p *Proxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	defer func() { _ = dst.Close(); _ = src.Close() }()
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 1024)
	done := make(chan struct{})
	p.wg.Add(1)
	go func() { // reader: never blocked by a freeze, so the peer can keep writing
		defer p.wg.Done()
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case ch <- chunk{buf[:n], time.Now()}:
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer close(done)
	for c := range ch {
		p.mu.Lock()
		for p.frozen && !p.closed {
			p.cond.Wait()
		}
		delay, closed := p.delay, p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		if wait := time.Until(c.at.Add(delay)); wait > 0 {
			time.Sleep(wait) // the fault itself: a link that delivers late
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

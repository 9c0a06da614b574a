package gateway

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// limitUnsent caps the bytes the kernel may hold unsent on a connection's
// socket (TCP_NOTSENT_LOWAT): past it a write waits, so frames wait in the
// outbox instead, where a newer tick replaces an older one. Without it a
// reader slower than its feed gets the kernel's send buffer (autotuned to
// megabytes) full of stale ticks, conflation never applies, and its pongs
// queue behind them. 0 leaves the kernel's default. Best effort: a socket
// that is not TCP keeps its behaviour.
func limitUnsent(c net.Conn, bytes int) {
	if bytes <= 0 {
		return
	}
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if l, ok := c.(*limitedConn); ok {
		c = l.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, bytes)
	})
}

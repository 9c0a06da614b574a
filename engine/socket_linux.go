//go:build linux

package engine

import (
	"math"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socket writes batches straight to a TCP connection's descriptor, without
// blocking: the flusher itself decides when to wait, so it can keep what the
// kernel holds unsent under the limit, and time a wait from the last byte
// the kernel accepted (see write.go).
type socket struct {
	conn   net.Conn // for the write deadline
	raw    syscall.RawConn
	limit  int          // the unsent limit; 0: the kernel's default (none)
	iovecs []unix.Iovec // owned by the flusher
}

// iovMax is how many buffers one writev takes (IOV_MAX).
const iovMax = 1024

// newSocket returns the socket of c when c is a TCP connection, capping
// what its kernel may hold unsent at limit bytes (TCP_NOTSENT_LOWAT): past
// it the kernel reports the socket not writable, so the backlog of a reader
// slower than its feed waits in the outbox, where a newer tick replaces an
// older one. For a connection wrapping TCP (TLS) it caps the TCP connection
// beneath and returns nil: the outbox then writes through c.
func newSocket(c net.Conn, limit int) *socket {
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		for inner := c; ; {
			u, ok := inner.(interface{ NetConn() net.Conn })
			if !ok {
				break
			}
			inner = u.NetConn()
			if t, ok := inner.(*net.TCPConn); ok && limit > 0 {
				if raw, err := t.SyscallConn(); err == nil {
					_ = setUnsentLimit(raw, limit)
				}
				break
			}
		}
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	s := &socket{conn: c, raw: raw, limit: limit}
	if limit > 0 && setUnsentLimit(raw, limit) != nil {
		s.limit = 0 // the kernel cannot keep the bound: write without it
	}
	return s
}

func setUnsentLimit(raw syscall.RawConn, limit int) error {
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, limit)
	}); err != nil {
		return err
	}
	return serr
}

// write writes iov without ever putting more than the limit into the
// kernel at once, and without letting what it holds unsent pass the limit
// by more than one frame. It waits (in the runtime's poller) only when the
// kernel holds the limit or its buffer is full; the write deadline is set
// then, to the write timeout from the last byte the kernel accepted, and
// cleared before returning, so a reader that keeps up costs no timer.
func (s *socket) write(o *Outbox, iov net.Buffers) (net.Buffers, bool, error) {
	var (
		partial    bool
		progressed = true // the clock starts when the flusher first has to wait
		werr       error
	)
	wait := func() bool {
		if progressed {
			_ = s.conn.SetWriteDeadline(time.Now().Add(o.hub.cfg.WriteTimeout))
			o.deadline = true
			progressed = false
		}
		return false // the poller calls back once the socket is writable, or the deadline passes
	}
	err := s.raw.Write(func(fd uintptr) bool {
		for len(iov) > 0 {
			room := math.MaxInt
			if s.limit > 0 {
				if o.room <= 0 {
					notsent, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQNSD)
					if err != nil {
						werr = err
						return true
					}
					if o.room = s.limit - notsent; o.room <= 0 {
						if !writable(fd) {
							return wait()
						}
						// Writable although the limit is held: the kernel
						// does not keep the bound; do not spin on it.
						o.room = s.limit
					}
				}
				room = o.room
			}
			n := s.fill(iov, room)
			written, errno := writev(fd, s.iovecs[:n])
			clear(s.iovecs[:n])
			switch errno {
			case 0:
				if written == 0 {
					return wait()
				}
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return wait()
			default:
				werr = errno
				return true
			}
			iov, partial = advance(iov, written, partial)
			o.room -= written
			progressed = true
		}
		return true
	})
	if o.deadline {
		_ = s.conn.SetWriteDeadline(time.Time{})
		o.deadline = false
	}
	if err == nil {
		err = werr
	}
	if err != nil {
		return iov, partial, err
	}
	return nil, false, nil
}

// fill loads s.iovecs with the next chunk of iov: whole frames of at most
// room bytes together, at least one; of a frame larger than the limit, at
// most room bytes. It returns how many iovecs it filled.
func (s *socket) fill(iov net.Buffers, room int) int {
	size := 0
	s.iovecs = s.iovecs[:0]
	for _, b := range iov {
		if len(s.iovecs) == iovMax {
			break
		}
		if size+len(b) > room {
			if size == 0 {
				if s.limit > 0 && len(b) > s.limit {
					b = b[:room]
				}
				s.iovecs = appendIovec(s.iovecs, b)
			}
			break
		}
		s.iovecs = appendIovec(s.iovecs, b)
		size += len(b)
	}
	return len(s.iovecs)
}

func appendIovec(iovecs []unix.Iovec, b []byte) []unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(b)}
	v.SetLen(len(b))
	return append(iovecs, v)
}

// writeLast writes last (the rest of a cut frame and a close frame) after
// a write timeout, at once or not at all: the unsent limit is lifted for
// it, since a close frame is worth more than the bound, and nothing waits.
// It returns how many bytes the kernel took.
func (s *socket) writeLast(last net.Buffers) int {
	written := 0
	_ = s.raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, math.MaxInt32)
		s.iovecs = s.iovecs[:0]
		for _, b := range last {
			s.iovecs = appendIovec(s.iovecs, b)
		}
		if n, errno := writev(fd, s.iovecs); errno == 0 {
			written = n
		}
		clear(s.iovecs)
	})
	return written
}

// writable reports whether the kernel would take more now. Asking also
// tells the kernel to wake the poller when it would (it sets SOCK_NOSPACE
// otherwise), which is what the flusher then waits for.
func writable(fd uintptr) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if err == unix.EINTR {
			continue
		}
		// An error on the socket counts as writable: the write reports it.
		return err != nil || (n > 0 && fds[0].Revents&(unix.POLLOUT|unix.POLLERR|unix.POLLHUP) != 0)
	}
}

func writev(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 0 {
		return 0, 0
	}
	r, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(r), errno
}

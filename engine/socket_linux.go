//go:build linux

package engine

import (
	"math"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socket writes batches straight to a TCP connection's descriptor, without
// blocking: the flusher itself decides when to wait, so it can keep what the
// kernel holds unsent under the limit, and time a wait from the last byte
// the kernel accepted (see write.go).
//
// It fills two cache lines exactly (see tcpOutbox): a write reads all of it.
type socket struct {
	raw   syscall.RawConn
	limit int // the unsent limit; 0: the kernel's default (none)

	// The write in progress, owned by the flusher: step reads and updates
	// these, so that the callback handed to the runtime is bound once
	// (stepFn) and a write allocates nothing.
	o          *Outbox
	iov        net.Buffers
	left       int // bytes of iov
	partial    bool
	progressed bool
	nowait     bool // a writer's attempt: report blocked rather than wait
	blocked    bool
	werr       error
	stepFn     func(fd uintptr) bool
	// What the flusher may write without asking the kernel again (see
	// measure): sendable bytes go out at once, room bytes may wait unsent.
	sendable, room int
	sys            *sockScratch // held during a write only
	_              [8]byte      // to 128 bytes: the outbox after it starts on a line
}

// sockScratch is what a write's system calls read and write. A socket
// holds one only while it writes: one per connection was 300-odd bytes
// each of 19,000 idle connections kept (TCP_INFO alone is 232), where the
// writers need a few.
type sockScratch struct {
	info    unix.TCPInfo
	infoLen uint32
	pollfd  unix.PollFd
	noWait  unix.Timespec
	iovecs  []unix.Iovec
}

var sockScratches = sync.Pool{New: func() any { return new(sockScratch) }}

// scratch takes a scratch for one write; release gives it back.
func (s *socket) scratch() { s.sys = sockScratches.Get().(*sockScratch) }

func (s *socket) release() {
	s.sys.iovecs = s.sys.iovecs[:0] // cleared after each writev: no frame stays reachable from the pool
	sockScratches.Put(s.sys)
	s.sys = nil
}

// maxWrite bounds a write into a wide-open window: larger segments make a
// receiver that later slows down open its window in larger steps.
const maxWrite = 64 << 10

// iovMax is how many buffers one writev takes (IOV_MAX).
const iovMax = 1024

// open makes s the socket of c, capping what its kernel may hold unsent at
// limit bytes (TCP_NOTSENT_LOWAT): past it the kernel reports the socket
// not writable, so the backlog of a reader slower than its feed waits in
// the outbox, where a newer tick replaces an older one. It reports false
// when c has no descriptor to write to (the outbox then writes through c).
func (s *socket) open(c *net.TCPConn, limit int) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	*s = socket{raw: raw, limit: limit}
	s.stepFn = s.step
	if limit > 0 && setUnsentLimit(raw, limit) != nil {
		s.limit = 0 // the kernel cannot keep the bound: write without it
	}
	return true
}

// capUnsent caps what the kernel may hold unsent for a connection wrapping
// TCP (TLS): on the TCP connection beneath, as open does.
func capUnsent(c net.Conn, limit int) {
	if limit <= 0 {
		return
	}
	for inner := c; ; {
		u, ok := inner.(interface{ NetConn() net.Conn })
		if !ok {
			return
		}
		inner = u.NetConn()
		if t, ok := inner.(*net.TCPConn); ok {
			if raw, err := t.SyscallConn(); err == nil {
				_ = setUnsentLimit(raw, limit)
			}
			return
		}
	}
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

// write writes iov (whose first buffer is the rest of a frame begun
// earlier when partial is set) without letting what the kernel holds unsent pass the
// limit by more than one frame, in chunks of whole frames: of at most the
// limit, or up to maxWrite into a window wide open for them (see measure).
// It waits (in the runtime's poller) only when the kernel holds the limit
// or its buffer is full; the write deadline is set then, to the write
// timeout from the last byte the kernel accepted, and cleared before
// returning, so a reader that keeps up costs no timer.
//
// With nowait (a writer's attempt, see writers) it never waits: it writes
// what the socket takes now and reports blocked with the rest.
func (s *socket) write(o *Outbox, iov net.Buffers, partial, nowait bool) (net.Buffers, bool, bool, error) {
	s.scratch()
	defer s.release()
	// The clock starts when the flusher first has to wait.
	s.o, s.iov, s.partial, s.progressed, s.werr = o, iov, partial, true, nil
	s.nowait, s.blocked = nowait, false
	s.left = 0
	for _, b := range iov {
		s.left += len(b)
	}
	err := s.raw.Write(s.stepFn)
	if o.deadline {
		_ = o.conn.SetWriteDeadline(time.Time{})
		o.deadline = false
	}
	if err == nil {
		err = s.werr
	}
	iov, partial, blocked := s.iov, s.partial, s.blocked
	s.o, s.iov, s.werr = nil, nil, nil
	if err != nil || blocked {
		return iov, partial, blocked, err
	}
	return nil, false, false, nil
}

// step writes what it may of s.iov; it reports false when the flusher must
// wait for the socket (the runtime's poller calls it again once the socket
// is writable, or fails the write at the deadline).
func (s *socket) step(fd uintptr) bool {
	measured := false
	for len(s.iov) > 0 {
		max, window := math.MaxInt, true
		if s.limit > 0 {
			open := 4 * min(s.left, maxWrite) // a window this wide takes the next write at once, with room to spare
			if s.sendable < open && !measured {
				// Not known to go out at once: ask the kernel (once a
				// call).
				if s.werr = s.measure(fd); s.werr != nil {
					return true
				}
				measured = true
			}
			switch {
			case s.sendable >= open:
				// The peer's window is wide open (a reader that keeps
				// up): one write per batch, up to maxWrite.
				max = maxWrite
			case s.nowait && s.room < s.left:
				// A writer's attempt on a socket that cannot take the whole
				// batch: its flusher writes it once the socket drains,
				// in larger writes than a piece now and the rest later.
				return s.block()
			case s.room > 0:
				max, window = min(s.room, s.limit), false
			default:
				if s.werr = s.measure(fd); s.werr != nil {
					return true
				}
				if s.sendable <= 0 && s.room <= 0 {
					if !s.writable(fd) {
						return s.block()
					}
					// Writable although the limit is held: the kernel does
					// not keep the bound; do not spin on it.
					s.room = s.limit
				}
				continue
			}
		}
		n := s.fill(s.iov, max)
		written, errno := writev(fd, s.sys.iovecs[:n])
		clear(s.sys.iovecs[:n])
		switch errno {
		case 0:
			if written == 0 {
				return s.block()
			}
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return s.block()
		default:
			s.werr = errno
			return true
		}
		s.iov, s.partial = advance(s.iov, written, s.partial)
		s.left -= written
		s.progressed = true
		if s.limit == 0 {
			continue
		}
		if window {
			if s.sendable -= written; s.sendable < 0 { // one frame past the window: it waits
				s.room += s.sendable
				s.sendable = 0
			}
		} else {
			s.room -= written
		}
	}
	return true
}

// measure reads the socket's state (TCP_INFO): room is the limit less
// what the kernel holds unsent, and, when it holds nothing unsent, sendable
// is what the peer's receive window and the congestion window let it send
// at once. Both stay valid as the flusher uses them up: the kernel only
// sends, and a window never moves back. A write goes beyond the limit only
// into a window four times its size (up to maxWrite): a segment larger
// than what is left of the window waits whole (on loopback, where a segment
// can be 64 KiB), and a receiver opens its window in steps of the segments
// it sees, so the segments a reader that slows down gets stay small. One
// getsockopt serves many writes to a reader that keeps up, which gets one
// writev per batch as before; a stalled reader gets the limit.
func (s *socket) measure(fd uintptr) error {
	x := s.sys
	x.infoLen = uint32(unsafe.Sizeof(x.info))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&x.info)), uintptr(unsafe.Pointer(&x.infoLen)), 0); errno != 0 {
		return errno
	}
	i := &x.info
	s.room, s.sendable = s.limit-int(i.Notsent_bytes), 0
	if i.Notsent_bytes == 0 && uintptr(x.infoLen) >= unsafe.Offsetof(i.Snd_wnd)+unsafe.Sizeof(i.Snd_wnd) {
		mss, inflight := int(i.Snd_mss), int(i.Unacked)
		s.sendable = max(0, min(int(i.Snd_wnd)-inflight*mss, (int(i.Snd_cwnd)-inflight)*mss))
	}
	return nil
}

// block reports that the socket takes nothing more now: the write waits
// for it (wait), or with nowait ends, reporting blocked.
func (s *socket) block() bool {
	if s.nowait {
		s.blocked = true
		return true
	}
	return s.wait()
}

// wait sets the write deadline, the write timeout from now, when bytes were
// accepted since it was last set (or never): the timeout measures the time
// without progress.
func (s *socket) wait() bool {
	if s.progressed {
		_ = s.o.conn.SetWriteDeadline(time.Now().Add(s.o.hub.cfg.WriteTimeout))
		s.o.deadline = true
		s.progressed = false
	}
	return false
}

// fill loads s.iovecs with the next chunk of iov: whole frames of at most
// room bytes together, at least one; of a frame larger than the limit, at
// most room bytes. It returns how many iovecs it filled.
func (s *socket) fill(iov net.Buffers, room int) int {
	x := s.sys
	size := 0
	x.iovecs = x.iovecs[:0]
	for _, b := range iov {
		if len(x.iovecs) == iovMax {
			break
		}
		if size+len(b) > room {
			if size == 0 {
				if s.limit > 0 && len(b) > s.limit {
					b = b[:room]
				}
				x.iovecs = appendIovec(x.iovecs, b)
			}
			break
		}
		x.iovecs = appendIovec(x.iovecs, b)
		size += len(b)
	}
	return len(x.iovecs)
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
	s.scratch()
	defer s.release()
	_ = s.raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, math.MaxInt32)
		x := s.sys
		for _, b := range last {
			x.iovecs = appendIovec(x.iovecs, b)
		}
		if n, errno := writev(fd, x.iovecs); errno == 0 {
			written = n
		}
		clear(x.iovecs)
	})
	return written
}

// writable reports whether the kernel would take more now. Asking also
// tells the kernel to wake the poller when it would (it sets SOCK_NOSPACE
// otherwise), which is what the flusher then waits for.
func (s *socket) writable(fd uintptr) bool {
	x := s.sys
	x.pollfd = unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&x.pollfd)), 1,
			uintptr(unsafe.Pointer(&x.noWait)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		// An error on the socket counts as writable: the write reports it.
		return errno != 0 || (n > 0 && x.pollfd.Revents&(unix.POLLOUT|unix.POLLERR|unix.POLLHUP) != 0)
	}
}

func writev(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	if len(iov) == 0 {
		return 0, 0
	}
	r, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(r), errno
}

package engine

import (
	"net"
	"time"
)

// Writing a batch. Two rules hold for every connection:
//
//   - What the kernel holds unsent never passes the unsent limit
//     (Config.MaxUnsentBytes) by more than one frame, and no write puts more
//     than the limit into it unless the peer's receive window is wide open.
//     On a TCP socket (socket) the flusher writes chunks of whole frames and
//     reads the kernel's state (TCP_INFO) before writing past what it knows
//     fits: the kernel itself checks TCP_NOTSENT_LOWAT only when it starts a
//     new segment, and a loopback segment can be 64 KiB, so one large write
//     left ~55 KB unsent against a 4 KB limit. A slow reader's backlog stays
//     in the outbox, where it conflates, not in the kernel, where it cannot.
//     A reader that keeps up gets one writev per batch, as before.
//     Elsewhere (TLS, pipes) no write puts more than the limit into the
//     connection at once.
//   - The write timeout measures lack of progress: a peer is given up on
//     when the kernel has accepted none of the bytes the flusher has to
//     write for Config.WriteTimeout, however long the batch; a slow reader
//     that keeps reading is never cut.

// defaultChunk is the chunk size without an unsent limit.
const defaultChunk = 256 << 10

// write writes iov to the connection: the rest of a batch, whose first
// buffer is the remainder of a frame begun earlier when partial is set.
// With nowait (a writer's attempt; only on a socket) it writes what the
// socket takes now and reports blocked with the rest rather than wait. It
// returns what is left unwritten when it fails or blocks: rest, with
// partial as for its argument.
func (o *Outbox) write(iov net.Buffers, partial, nowait bool) (rest net.Buffers, restPartial, blocked bool, err error) {
	if o.sock != nil {
		return o.sock.write(o, iov, partial, nowait)
	}
	rest, restPartial, err = o.writeConn(iov, partial)
	return rest, restPartial, false, err
}

// writeConn writes iov through net.Conn (TLS, pipes, non-Linux systems):
// chunk by chunk, each with the write timeout from its start, so a peer
// that takes every chunk in time is never cut.
func (o *Outbox) writeConn(iov net.Buffers, partial bool) (net.Buffers, bool, error) {
	limit := o.hub.cfg.MaxUnsentBytes
	if limit <= 0 {
		limit = defaultChunk
	}
	for len(iov) > 0 {
		chunk := o.chunkOf(iov, limit)
		_ = o.conn.SetWriteDeadline(time.Now().Add(o.hub.cfg.WriteTimeout))
		n, err := chunk.WriteTo(o.conn)
		clear(o.chunk[:cap(o.chunk)])
		iov, partial = advance(iov, int(n), partial)
		if err != nil {
			return iov, partial, err
		}
	}
	return nil, false, nil
}

// chunkOf returns the first chunk of iov to write: whole frames of at most
// max bytes together, at least one, and of a frame larger than max its
// first max bytes. It reuses o.chunk.
func (o *Outbox) chunkOf(iov net.Buffers, max int) net.Buffers {
	chunk := o.chunk[:0]
	size := 0
	for _, b := range iov {
		if size+len(b) > max {
			if size == 0 {
				chunk = append(chunk, b[:max])
			}
			break
		}
		chunk = append(chunk, b)
		size += len(b)
	}
	o.chunk = chunk[:0]
	return chunk
}

// advance drops the first n written bytes of iov. partial says whether
// iov's first buffer is the remainder of a frame begun earlier; the result
// says the same of what is returned.
func advance(iov net.Buffers, n int, partial bool) (net.Buffers, bool) {
	for n > 0 && len(iov) > 0 {
		if n < len(iov[0]) {
			iov[0] = iov[0][n:]
			return iov, true
		}
		n -= len(iov[0])
		iov = iov[1:]
		partial = false
	}
	return iov, partial
}

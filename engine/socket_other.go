//go:build !linux

package engine

import "net"

// socket is Linux's bounded writer (socket_linux.go); elsewhere the outbox
// writes through net.Conn in chunks (writeConn).
type socket struct{}

func (*socket) open(*net.TCPConn, int) bool { return false }

func capUnsent(net.Conn, int) {}

func (*socket) write(*Outbox, net.Buffers, bool, bool) (net.Buffers, bool, bool, error) {
	panic("engine: no socket writer on this system")
}

func (*socket) writeLast(net.Buffers) int { return 0 }

package bench

import (
	"net"
	"sync/atomic"
	"time"
)

// Sink keeps benchmark results alive so the compiler cannot drop the work.
var Sink atomic.Int64

// discardConn is a net.Conn that accepts every write at once. The hub
// benchmarks write to it to measure the engine up to the bytes a socket
// would take, without the kernel's share.
type discardConn struct{ bytes atomic.Int64 }

func (c *discardConn) Write(p []byte) (int, error) {
	c.bytes.Add(int64(len(p)))
	return len(p), nil
}

func (c *discardConn) Read([]byte) (int, error)         { select {} }
func (c *discardConn) Close() error                     { return nil }
func (c *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *discardConn) SetDeadline(time.Time) error      { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }

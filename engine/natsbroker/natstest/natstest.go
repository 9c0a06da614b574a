// Package natstest runs a real NATS server with JetStream inside a test
// process (the nats-server module, not a mock), on a loopback port, with
// its store in a directory the test chooses, so a test can restart it with
// the same store or a fresh one.
package natstest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marketcast/marketcast/internal/freeport"
)

// Server is an embedded NATS server.
type Server struct {
	t    testing.TB
	port int
	dir  string
	tune func(*server.Options)
	ns   *server.Server
}

// Start runs a server storing JetStream data in dir (t.TempDir() when "").
func Start(t testing.TB, dir string) *Server {
	t.Helper()
	return StartTuned(t, dir, nil)
}

// StartTuned is Start with server options changed by tune (a larger
// max_payload, say), on every start.
func StartTuned(t testing.TB, dir string, tune func(*server.Options)) *Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s := &Server{t: t, port: freePort(t), dir: dir, tune: tune}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// New is a server on a free port that has not started yet: Start starts
// it (a node that comes up before its NATS).
func New(t testing.TB, dir string) *Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s := &Server{t: t, port: freePort(t), dir: dir}
	t.Cleanup(s.Stop)
	return s
}

// Start starts a server made by New.
func (s *Server) Start() {
	s.t.Helper()
	s.start()
}

// Addr is the server's client address (host:port).
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// freePort is a port the server can listen on now and again after a
// restart (see internal/freeport).
func freePort(t testing.TB) int {
	addr, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return n
}

func (s *Server) start() {
	s.t.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.dir,
		NoLog: true, NoSigs: true,
	}
	if s.tune != nil {
		s.tune(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.t.Fatal("nats server not ready")
	}
	s.ns = ns
}

// URL is the server's client URL.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// Stop shuts the server down (again is harmless).
func (s *Server) Stop() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
	}
}

// Restart stops the server and starts it again on the same port, with the
// same store, or a fresh empty one when wipe is set (a lost store).
func (s *Server) Restart(wipe bool) {
	s.t.Helper()
	s.Stop()
	if wipe {
		s.dir = s.t.TempDir()
	}
	s.start()
}

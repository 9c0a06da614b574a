package gateway

// SetTestHookOnMessage installs f to run on every client message inside the
// read loop, and returns a function that removes it.
func SetTestHookOnMessage(f func(b []byte)) (restore func()) {
	testHookOnMessage = f
	return func() { testHookOnMessage = nil }
}

// TCPConnections is the main listener's connection count.
func (s *Server) TCPConnections() int { return int(s.tcpOpen.Get()) }

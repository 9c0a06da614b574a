// Package freeport picks loopback TCP ports for servers that tests and the
// load generator start as separate processes.
//
// The usual trick (listen on port 0, note the port, close) hands out a port
// from the kernel's ephemeral range, the range outgoing connections take
// their local ports from. Between the close and the child's own listen, a
// connection made by anything else on the machine (another test package
// running in parallel, a load generator) may take that port as its local
// port, and the child fails to bind. Ports here come from below the
// ephemeral range, which the kernel never assigns to outgoing connections,
// chosen at random and checked free.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// low and high bound the ports handed out: below Linux's default ephemeral
// range (32768-60999), above the well-known and commonly registered ones.
const low, high = 20000, 32767

// Get returns a loopback address (127.0.0.1:port) whose port was free a
// moment ago and is not one the kernel gives outgoing connections.
func Get() (string, error) {
	hi := min(high, ephemeralStart()-1)
	for range 200 {
		port := low + rand.IntN(hi-low+1)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		ln.Close()
		return addr, nil
	}
	return "", fmt.Errorf("freeport: no free port in %d-%d", low, hi)
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= low+100 {
		return 32768
	}
	return n
}

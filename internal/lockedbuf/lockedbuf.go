// Package lockedbuf is a bytes.Buffer safe for one writer and concurrent
// readers: what tests give a child process or a logger as its output while
// they read it.
package lockedbuf

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it; its zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// WriteString writes s.
func (l *Buffer) WriteString(s string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.WriteString(s)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

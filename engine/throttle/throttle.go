// Package throttle logs what a stranger can trigger at will (a failed
// login, a panic, a broken feed message) without letting that stranger
// fill the disk.
package throttle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log writes at most burst lines per interval and counts the rest; the
// first line of the next interval says how many were suppressed.
type Log struct {
	log      *slog.Logger
	interval time.Duration
	burst    int
	now      func() time.Time

	mu         sync.Mutex
	start      time.Time
	written    int
	suppressed int
}

// New returns a Log writing to log at most burst lines per interval.
func New(log *slog.Logger, interval time.Duration, burst int) *Log {
	return &Log{log: log, interval: interval, burst: burst, now: time.Now}
}

// SetClock makes the log read the time from now instead of the wall clock,
// so a test can hold time still and count lines exactly. Set it before use.
func (t *Log) SetClock(now func() time.Time) { t.now = now }

func (t *Log) allow(now time.Time) (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.start) >= t.interval {
		t.start, t.written = now, 0
		suppressed, t.suppressed = t.suppressed, 0
	}
	if t.written >= t.burst {
		t.suppressed++
		return false, 0
	}
	t.written++
	return true, suppressed
}

func (t *Log) write(level slog.Level, msg string, args ...any) {
	ok, suppressed := t.allow(t.now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	t.log.Log(context.Background(), level, msg, args...)
}

func (t *Log) Error(msg string, args ...any) { t.write(slog.LevelError, msg, args...) }
func (t *Log) Warn(msg string, args ...any)  { t.write(slog.LevelWarn, msg, args...) }
func (t *Log) Info(msg string, args ...any)  { t.write(slog.LevelInfo, msg, args...) }

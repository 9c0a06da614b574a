// Package throttle logs what a stranger can trigger at will (a failed
// login, a panic, a broken feed message) without letting that stranger
// fill the disk.
package throttle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"
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

// MaxValueBytes bounds each value a throttled line carries: what these
// lines log (a token's error, a symbol, a user agent) is chosen by whoever
// caused them, and the line budget alone bounds lines, not bytes.
const MaxValueBytes = 256

// Clip cuts s to MaxValueBytes (on a rune boundary), saying how long it was.
func Clip(s string) string {
	if len(s) <= MaxValueBytes {
		return s
	}
	n := MaxValueBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:n], len(s))
}

func (t *Log) write(level slog.Level, msg string, args ...any) {
	ok, suppressed := t.allow(t.now())
	if !ok {
		return
	}
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = Clip(v)
		case error:
			args[i] = Clip(v.Error())
		case []byte:
			args[i] = Clip(string(v))
		case fmt.Stringer:
			args[i] = Clip(v.String())
		}
	}
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	t.log.Log(context.Background(), level, msg, args...)
}

func (t *Log) Error(msg string, args ...any) { t.write(slog.LevelError, msg, args...) }
func (t *Log) Warn(msg string, args ...any)  { t.write(slog.LevelWarn, msg, args...) }
func (t *Log) Info(msg string, args ...any)  { t.write(slog.LevelInfo, msg, args...) }

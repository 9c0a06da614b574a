package gateway

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// throttledLog writes at most burst lines per interval and counts the rest,
// so an event a stranger can trigger at will (a failed login, a panic) is
// logged without letting that stranger fill the disk. The first line of
// the next interval says how many were suppressed.
type throttledLog struct {
	log      *slog.Logger
	interval time.Duration
	burst    int

	mu         sync.Mutex
	start      time.Time
	written    int
	suppressed int
}

func newThrottledLog(log *slog.Logger, interval time.Duration, burst int) *throttledLog {
	return &throttledLog{log: log, interval: interval, burst: burst}
}

func (t *throttledLog) allow(now time.Time) (ok bool, suppressed int) {
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

func (t *throttledLog) write(level slog.Level, msg string, args ...any) {
	ok, suppressed := t.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	t.log.Log(context.Background(), level, msg, args...)
}

func (t *throttledLog) Error(msg string, args ...any) { t.write(slog.LevelError, msg, args...) }
func (t *throttledLog) Info(msg string, args ...any)  { t.write(slog.LevelInfo, msg, args...) }

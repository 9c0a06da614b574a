package testwait

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPollReturnsOnceCondHolds(t *testing.T) {
	var calls atomic.Int32
	err := Poll(Deadline, func() error {
		if calls.Add(1) < 5 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls.Load() != 5 {
		t.Fatalf("got err %v after %d calls; want nil after 5", err, calls.Load())
	}
}

func TestPollReportsTheLastError(t *testing.T) {
	n := 0
	err := Poll(10*time.Millisecond, func() error {
		n++
		return errors.New("state " + string(rune('a'+min(n, 25))))
	})
	if err == nil || n < 2 {
		t.Fatalf("got %v after %d calls; want the last error after several", err, n)
	}
}

// Package testwait is how marketcast's tests wait for something to happen:
// they poll a condition until it holds. The deadline is a guard against a
// hang, never the measurement: it is generous (a busy two-core machine
// running the race detector is slow), and a test that needs to observe time
// asserts order and counts, or injects a clock, instead.
//
// Modelled on nats-server's checkFor: poll, back off, report the condition's
// last answer when the deadline passes.
package testwait

import (
	"fmt"
	"testing"
	"time"
)

// Deadline is how long For and Check wait before failing the test.
const Deadline = 60 * time.Second

// For polls cond until it reports true, failing the test with what (a
// description of the awaited state) if it does not within Deadline.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Check(t, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("still waiting for %s", what)
	})
}

// Check polls cond until it returns nil, failing the test with cond's last
// error if it does not within Deadline. The error says what the state was,
// so the failure explains itself.
func Check(t testing.TB, cond func() error) {
	t.Helper()
	if err := Poll(Deadline, cond); err != nil {
		t.Fatalf("after %v: %v", Deadline, err)
	}
}

// Poll calls cond until it returns nil or within passes, backing off from a
// millisecond to 50 ms between calls; it returns cond's last error. For
// helpers that report errors rather than fail a test themselves.
func Poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause) // polling, not synchronization: cond decides
		pause = min(2*pause, 50*time.Millisecond)
	}
}

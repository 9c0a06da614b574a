// Package testlane sorts marketcast's tests into lanes, so the default
// suite (`make test`, what CI runs on two cores) stays well inside its time
// budget while heavy tests still exist and run where they belong:
//
//   - default: everything below except soaks. `make test`.
//   - quick (`go test -short`): skips tests that start several processes
//     (binaries, NATS servers, make): for a fast edit-test loop.
//   - soak (MARKETCAST_SOAK=1): long fault runs and thousands of sockets,
//     minutes each; `make chaos` and `make test-soak` set it.
package testlane

import (
	"os"
	"testing"
)

// MultiProcess marks a test that starts several processes: it is skipped
// in the quick lane.
func MultiProcess(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts several processes: not in the -short lane")
	}
}

// Soak marks a long test (minutes, many faults or thousands of sockets):
// it runs only when MARKETCAST_SOAK=1.
func Soak(t testing.TB) {
	t.Helper()
	if os.Getenv("MARKETCAST_SOAK") != "1" {
		t.Skip("a soak: runs with MARKETCAST_SOAK=1 (make test-soak, make chaos)")
	}
}

package natsbroker_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
)

// TestMain fails the package if any test leaves a goroutine behind (the
// embedded NATS servers and connections included), and removes the
// nats-server binary the process tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	natstest.RemoveBinaries()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

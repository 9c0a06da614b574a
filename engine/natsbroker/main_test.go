package natsbroker_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind (the
// embedded NATS servers and connections included).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

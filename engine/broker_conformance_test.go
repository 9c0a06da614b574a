package engine_test

import (
	"sync"
	"testing"
	"time"

	"github.com/marketcast/marketcast/engine"
	"github.com/marketcast/marketcast/engine/brokertest"
)

// TestMemoryBrokerConformance runs the broker conformance suite against
// the in-memory broker.
func TestMemoryBrokerConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, limits engine.HistoryLimits) brokertest.Backend {
		be := &memoryBackend{limits: limits, at: time.Now()}
		be.fresh()
		return be
	})
}

// memoryBackend is the memory broker as the suite sees it: one node (the
// broker lives in the node's process), a clock the test moves, and a store
// lost only with the process.
type memoryBackend struct {
	limits engine.HistoryLimits
	mu     sync.Mutex
	at     time.Time
	b      *engine.MemoryBroker
	given  bool
}

func (m *memoryBackend) fresh() {
	m.b = engine.NewMemoryBroker(m.limits)
	m.b.SetClock(m.now)
	m.given = false
}

func (m *memoryBackend) now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.at
}

func (m *memoryBackend) Node(t *testing.T) engine.Broker {
	if m.given {
		t.Fatal("the memory broker serves one node")
	}
	m.given = true
	return m.b
}

func (m *memoryBackend) Nodes() int { return 1 }

func (m *memoryBackend) Advance(d time.Duration) bool {
	m.mu.Lock()
	m.at = m.at.Add(d)
	m.mu.Unlock()
	return true
}

// Forget ages the store past the history TTL and sweeps it, as the
// broker's sweeper does for an idle topic.
func (m *memoryBackend) Forget(t *testing.T, topic string) {
	m.Advance(m.limits.TTL + time.Second)
	if m.b.Sweep(m.now()) == 0 {
		t.Fatalf("the sweep did not forget %s", topic)
	}
}

// LoseStore is a restart of the process: a new, empty broker.
func (m *memoryBackend) LoseStore(*testing.T) bool {
	m.fresh()
	return false
}

func (m *memoryBackend) Break(*testing.T) func() { return nil }

func (m *memoryBackend) FindsLostLast() bool { return false }

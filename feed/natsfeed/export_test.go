package natsfeed

import "time"

// SetLogClock makes the source's drop log read the time from now.
func SetLogClock(s *Source, now func() time.Time) { s.dropLog.log.SetClock(now) }

// CutWatch makes the checkpoints' watch end before its n-th entry, as the
// early end marker a restarted NATS once gave did, for the test's length.
func CutWatch(t interface{ Cleanup(func()) }, n int) {
	testWatchCut = n
	t.Cleanup(func() { testWatchCut = 0 })
}

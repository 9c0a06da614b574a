package natsfeed

import "time"

// SetLogClock makes the source's drop log read the time from now.
func SetLogClock(s *Source, now func() time.Time) { s.dropLog.log.SetClock(now) }

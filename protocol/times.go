package protocol

import "time"

// ChinaTime is the zone of the Chinese futures exchanges (UTC+8, no
// daylight saving since 1991), for Rules that name none.
var ChinaTime = time.FixedZone("CST", 8*3600)

// DefaultMaxAhead is how far ahead of the server's clock a tick's or a
// book's exchange time may be when Rules do not say (feed.max_time_ahead).
// Each symbol's bars close by its own exchange times: a tick stamped minutes
// ahead would close its symbol's forming bars early, so it is refused.
const DefaultMaxAhead = 10 * time.Second

// Rules are what market data is checked against beyond its shape: where a
// time written without a zone is, the server's clock and how far ahead of
// it an exchange time may be. The zero Rules read a zone-less time as UTC.
type Rules struct {
	// Zone is where a time written without a zone is ("2026-11-25
	// 21:01:30.500"): exchange time for collectors (CTP writes its
	// UpdateTime so; feed.time_zone), UTC for back ends (the seed's
	// datetime.utcnow().isoformat(); feed.publish_time_zone). nil: UTC.
	Zone *time.Location
	// Exchange is the exchanges' zone, whose clock a night session's date
	// is read on (the ActionDay correction). nil: ChinaTime.
	Exchange *time.Location
	// MaxAhead bounds how far ahead of Now an exchange time may be; 0:
	// DefaultMaxAhead.
	MaxAhead time.Duration
	// Now is the server's clock; nil: time.Now.
	Now func() time.Time
}

func (r *Rules) zone() *time.Location {
	if r == nil || r.Zone == nil {
		return time.UTC
	}
	return r.Zone
}

func (r *Rules) exchange() *time.Location {
	if r == nil || r.Exchange == nil {
		return ChinaTime
	}
	return r.Exchange
}

func (r *Rules) maxAhead() time.Duration {
	if r == nil || r.MaxAhead <= 0 {
		return DefaultMaxAhead
	}
	return r.MaxAhead
}

func (r *Rules) now() time.Time {
	if r == nil || r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// parseTime reads an exchange time: a date (2006-01-02 or 20060102), T or a
// space, a clock with optional fraction (up to nanoseconds), and a zone (Z
// or ±hh:mm) or none, when it is in zone. zoneless reports the last case.
func parseTime(b []byte, zone *time.Location) (t time.Time, zoneless, ok bool) {
	i := 0
	num := func(n int) (int, bool) {
		if i+n > len(b) {
			return 0, false
		}
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		i += n
		return v, true
	}
	sep := func(c byte) bool {
		if i < len(b) && b[i] == c {
			i++
			return true
		}
		return false
	}
	y, ok1 := num(4)
	if !ok1 {
		return t, false, false
	}
	dashed := sep('-')
	mo, ok2 := num(2)
	if dashed && !sep('-') {
		return t, false, false
	}
	d, ok3 := num(2)
	if !ok2 || !ok3 || i >= len(b) || b[i] != 'T' && b[i] != 't' && b[i] != ' ' {
		return t, false, false
	}
	i++
	h, ok4 := num(2)
	ok5 := sep(':')
	mi, ok6 := num(2)
	ok7 := sep(':')
	s, ok8 := num(2)
	if !(ok4 && ok5 && ok6 && ok7 && ok8) {
		return t, false, false
	}
	ns := 0
	if sep('.') || sep(',') {
		digits := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits < 9 {
				ns = ns*10 + int(b[i]-'0')
			}
			digits++
			i++
		}
		if digits == 0 {
			return t, false, false
		}
		for ; digits < 9; digits++ {
			ns *= 10
		}
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(time.Month(mo), y) || h > 23 || mi > 59 || s > 59 {
		return t, false, false
	}
	switch {
	case i == len(b):
		return time.Date(y, time.Month(mo), d, h, mi, s, ns, zone), true, true
	case b[i] == 'Z' || b[i] == 'z':
		if i+1 != len(b) {
			return t, false, false
		}
		return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC), false, true
	case b[i] == '+' || b[i] == '-':
		sign := 1
		if b[i] == '-' {
			sign = -1
		}
		i++
		oh, okh := num(2)
		sep(':')
		om, okm := num(2)
		if !okh || !okm || i != len(b) || oh > 23 || om > 59 {
			return t, false, false
		}
		off := sign * (oh*3600 + om*60)
		return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC).Add(-time.Duration(off) * time.Second), false, true
	}
	return t, false, false
}

func daysIn(m time.Month, y int) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// quoteTime checks an exchange time against the server's clock. One stamped
// more than MaxAhead ahead is refused, unless it is a night-session time
// carrying the next trading day's date, as CTP's ActionDay does on DCE's
// night sessions (a Friday night's ticks dated Monday): such a time, read
// on the exchange's clock between 20:00 and 03:00, whose date is 1 to 3
// days after the date that puts it within MaxAhead of now, takes that date
// (corrected reports it).
func (r *Rules) quoteTime(t time.Time) (out time.Time, corrected bool, ok bool) {
	now := r.now()
	ahead := r.maxAhead()
	if t.Sub(now) <= ahead {
		return t, false, true
	}
	ex := r.exchange()
	lt := t.In(ex)
	if h := lt.Hour(); h < 20 && h >= 3 {
		return t, false, false
	}
	// The same clock time on the day that puts it nearest now.
	ny, nm, nd := now.In(ex).Date()
	cand := time.Date(ny, nm, nd, lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), ex)
	switch {
	case cand.Sub(now) > 12*time.Hour:
		cand = cand.AddDate(0, 0, -1)
	case now.Sub(cand) > 12*time.Hour:
		cand = cand.AddDate(0, 0, 1)
	}
	if cand.Sub(now) > ahead {
		return t, false, false
	}
	cy, cm, cd := cand.Date()
	ty, tm, td := lt.Date()
	days := int(time.Date(ty, tm, td, 0, 0, 0, 0, time.UTC).Sub(time.Date(cy, cm, cd, 0, 0, 0, 0, time.UTC)) / (24 * time.Hour))
	if days < 1 || days > 3 {
		return t, false, false
	}
	return cand, true, true
}

// appendTime appends t in the wire layout (RFC 3339, UTC, milliseconds),
// as t.UTC().AppendFormat(dst, TimeLayout) does for years 0-9999, at a
// fraction of the cost: every tick and bar carries times.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, TimeLayout)
	}
	h, mi, s := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

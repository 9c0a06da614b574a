package feed

import (
	"fmt"
	"strconv"
	"strings"
)

// Decimal is a fixed-point number: Units / 10^Scale. Market data is kept in
// integers and rendered as decimal strings so no float rounding ever
// reaches a client.
type Decimal struct {
	Units int64
	Scale uint8
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}

// String renders d with exactly Scale fraction digits ("4000.0", "480.02").
func (d Decimal) String() string {
	var buf [32]byte
	return string(d.Append(buf[:0]))
}

// Append appends d's string form to dst.
func (d Decimal) Append(dst []byte) []byte {
	u := d.Units
	if u < 0 {
		dst = append(dst, '-')
		u = -u
	}
	if d.Scale == 0 {
		return strconv.AppendInt(dst, u, 10)
	}
	p := pow10[d.Scale]
	dst = strconv.AppendInt(dst, u/p, 10)
	dst = append(dst, '.')
	frac := u % p
	for q := p / 10; q > 1 && frac < q; q /= 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, frac, 10)
}

// ParseDecimal reads a decimal string ("3999.0", "-0.25", "15") exactly.
func ParseDecimal(s string) (Decimal, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	ip, fp, _ := strings.Cut(body, ".")
	if ip == "" || len(fp) > 8 || strings.TrimLeft(ip+fp, "0123456789") != "" {
		return Decimal{}, fmt.Errorf("feed: %q is not a decimal with at most 8 fraction digits", s)
	}
	u, err := strconv.ParseInt(ip+fp, 10, 64)
	if err != nil {
		return Decimal{}, fmt.Errorf("feed: %q: %w", s, err)
	}
	if neg {
		u = -u
	}
	return Decimal{Units: u, Scale: uint8(len(fp))}, nil
}

// Rescale returns d with scale s (s >= d.Scale: exact).
func (d Decimal) Rescale(s uint8) Decimal {
	for d.Scale < s {
		d.Units *= 10
		d.Scale++
	}
	return d
}

// Sub returns d - e at the larger of their scales.
func (d Decimal) Sub(e Decimal) Decimal {
	s := max(d.Scale, e.Scale)
	return Decimal{Units: d.Rescale(s).Units - e.Rescale(s).Units, Scale: s}
}

// Cmp compares d and e by value.
func (d Decimal) Cmp(e Decimal) int {
	s := max(d.Scale, e.Scale)
	a, b := d.Rescale(s).Units, e.Rescale(s).Units
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

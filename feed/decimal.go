package feed

import "strconv"

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

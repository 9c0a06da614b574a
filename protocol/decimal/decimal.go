// Package decimal is marketcast's one home for decimal numbers. Market data
// arrives as decimal strings or JSON number literals; it is parsed here
// (protocol validation), kept as fixed-point integers (the bar builder, the
// simulator) and rendered back as decimal strings, so no float rounding
// reaches a client, and validation and bars read every value alike.
package decimal

import (
	"errors"
	"math"
	"strconv"
)

// MaxScale is how many fraction digits a Decimal keeps. A value written
// with more (a float printed in full: "4421100.5000000001") is rounded to
// it, half away from zero: nothing a market quotes needs more.
const MaxScale = 8

// MaxLen bounds the text of one number: nothing in a market needs more.
const MaxLen = 40

// Decimal is a fixed-point number: Units / 10^Scale, Scale <= MaxScale. The
// scale is the number's own, as written ("4000.0" has scale 1), so it
// renders back with the digits it came with.
type Decimal struct {
	Units int64
	Scale uint8
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
	1000000000, 10000000000, 100000000000, 1000000000000, 10000000000000, 100000000000000,
	1000000000000000, 10000000000000000, 100000000000000000, 1000000000000000000}

// Errors of Parse; the caller says which key.
var (
	ErrSyntax = errors.New("not a decimal number (want digits with an optional . and sign)")
	ErrRange  = errors.New("out of range (at most 18 significant digits)")
)

// New returns units / 10^scale.
func New(units int64, scale uint8) Decimal { return Decimal{Units: units, Scale: scale} }

// Parse reads a decimal number exactly: an optional minus, digits, an
// optional fraction ("3999.0", "-0.25", "15"), and, as JSON number literals
// may have, an exponent ("6.801e4" is 68010, "1.25e-3" is 0.00125). Fraction
// digits beyond MaxScale are rounded half away from zero, then trailing
// zeros dropped (keeping one): "0.30000000000000004" is 0.3. So are fraction
// digits an int64 cannot hold beside a large integer part; an integer part
// beyond 18 digits is ErrRange. Leading zeros and a minus zero are not kept
// ("007" is 7, "-0.0" is 0.0). It does not allocate.
func Parse(b []byte) (Decimal, error) {
	if len(b) == 0 || len(b) > MaxLen {
		return Decimal{}, ErrSyntax
	}
	if d, ok := parsePlain(b); ok {
		return d, nil
	}
	i, neg := 0, false
	if b[0] == '-' {
		neg, i = true, 1
	}
	var (
		digits       [2 * MaxLen]byte // significant digits, leading zeros skipped
		n            int
		intDigits    int // digits before the point, as written
		fracDigits   int // digits after the point, as written
		afterPoint   bool
		exp, expSign = 0, 1
	)
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if afterPoint {
				fracDigits++
			} else {
				intDigits++
			}
			if n > 0 || c != '0' {
				digits[n] = c - '0'
				n++
			}
		case c == '.' && !afterPoint && intDigits > 0:
			afterPoint = true
		case (c == 'e' || c == 'E') && intDigits > 0 && (!afterPoint || fracDigits > 0):
			i++
			if i < len(b) && (b[i] == '+' || b[i] == '-') {
				if b[i] == '-' {
					expSign = -1
				}
				i++
			}
			if i == len(b) {
				return Decimal{}, ErrSyntax
			}
			for ; i < len(b); i++ {
				if b[i] < '0' || b[i] > '9' {
					return Decimal{}, ErrSyntax
				}
				if exp = exp*10 + int(b[i]-'0'); exp > MaxLen {
					return Decimal{}, ErrRange
				}
			}
		default:
			return Decimal{}, ErrSyntax
		}
	}
	if intDigits == 0 || afterPoint && fracDigits == 0 {
		return Decimal{}, ErrSyntax
	}
	exp *= expSign
	fractional := afterPoint || exp < 0
	// The value is digits[:n] × 10^-scale.
	scale := fracDigits - exp
	if n == 0 { // zero, with the zeros written after the point as its scale
		return Decimal{Scale: uint8(min(max(scale, 0), MaxScale))}, nil
	}
	for ; scale < 0; scale++ { // an exponent past the point: zeros
		digits[n] = 0
		n++
	}
	// Keep at most MaxScale fraction digits and 18 digits in all (an
	// int64 holds every 18-digit number).
	drop := max(scale-MaxScale, n-18, 0)
	if drop > scale {
		return Decimal{}, ErrRange // the integer part alone is too long
	}
	keep := n - drop // may be below 0: every digit is past MaxScale
	var u uint64
	for _, d := range digits[:max(keep, 0)] {
		u = u*10 + uint64(d)
	}
	if drop > 0 {
		scale -= drop
		if keep >= 0 && digits[keep] >= 5 { // half away from zero
			u++
		}
		// A rounded value keeps no trailing zeros, but one fraction digit
		// when it was written with a fraction ("2.000000000001" is 2.0).
		for scale > 0 && u%10 == 0 && (scale > 1 || !fractional) {
			u /= 10
			scale--
		}
	}
	v := int64(u)
	if neg {
		v = -v
	}
	return Decimal{Units: v, Scale: uint8(scale)}, nil
}

// parsePlain is Parse's fast path, for what nearly every market value is:
// at most 18 digits, at most MaxScale of them after the point, no exponent.
// ok is false for anything else, which Parse then reads in full.
func parsePlain(b []byte) (Decimal, bool) {
	i, neg := 0, false
	if b[0] == '-' {
		neg, i = true, 1
	}
	var u uint64
	n, scale, point := 0, 0, -1
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			u = u*10 + uint64(c-'0')
			n++
		case c == '.' && point < 0 && n > 0:
			point = n
		default:
			return Decimal{}, false
		}
	}
	if point >= 0 {
		scale = n - point
	}
	if n == 0 || n > 18 || scale > MaxScale || point == n {
		return Decimal{}, false
	}
	v := int64(u)
	if neg {
		v = -v
	}
	return Decimal{Units: v, Scale: uint8(scale)}, true
}

// ParseString is Parse of a string.
func ParseString(s string) (Decimal, error) {
	if len(s) > MaxLen {
		return Decimal{}, ErrSyntax
	}
	var buf [MaxLen]byte
	return Parse(append(buf[:0], s...))
}

// MustParse is ParseString for constants; it panics on a bad one.
func MustParse(s string) Decimal {
	d, err := ParseString(s)
	if err != nil {
		panic("decimal: " + s + ": " + err.Error())
	}
	return d
}

// String renders d with exactly Scale fraction digits ("4000.0", "480.02").
func (d Decimal) String() string {
	var buf [24]byte
	return string(d.Append(buf[:0]))
}

// Append appends d's string form to dst.
func (d Decimal) Append(dst []byte) []byte {
	u := uint64(d.Units)
	if d.Units < 0 {
		dst = append(dst, '-')
		u = uint64(-d.Units) // MinInt64 wraps to itself: still its magnitude as unsigned
	}
	if d.Scale == 0 {
		return strconv.AppendUint(dst, u, 10)
	}
	p := uint64(pow10[d.Scale])
	dst = strconv.AppendUint(dst, u/p, 10)
	dst = append(dst, '.')
	f := u % p
	for q := p / 10; q > 1 && f < q; q /= 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendUint(dst, f, 10)
}

// IsZero reports whether d is zero.
func (d Decimal) IsZero() bool { return d.Units == 0 }

// Sign is -1, 0 or 1.
func (d Decimal) Sign() int {
	switch {
	case d.Units < 0:
		return -1
	case d.Units > 0:
		return 1
	}
	return 0
}

// Neg returns -d.
func (d Decimal) Neg() Decimal { return Decimal{Units: -d.Units, Scale: d.Scale} }

// split returns d's integer part and its fraction in units of 10^-MaxScale,
// both with d's sign: a form every Decimal has without overflow.
func (d Decimal) split() (ip, fp int64) {
	p := pow10[d.Scale]
	return d.Units / p, d.Units % p * pow10[MaxScale-d.Scale]
}

// Cmp compares d and e by value: -1, 0 or 1.
func (d Decimal) Cmp(e Decimal) int {
	if d.Scale == e.Scale {
		return cmp(d.Units, e.Units)
	}
	di, df := d.split()
	ei, ef := e.split()
	if c := cmp(di, ei); c != 0 {
		return c
	}
	return cmp(df, ef)
}

func cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Equal reports whether d and e have the same value (3.0 equals 3).
func (d Decimal) Equal(e Decimal) bool { return d.Cmp(e) == 0 }

// rescale returns d at scale s >= d.Scale, and whether it fits.
func (d Decimal) rescale(s uint8) (Decimal, bool) {
	if s <= d.Scale {
		return d, true
	}
	p := pow10[s-d.Scale]
	if d.Units > math.MaxInt64/p || d.Units < math.MinInt64/p {
		return d, false
	}
	return Decimal{Units: d.Units * p, Scale: s}, true
}

// Add returns d + e at the larger of their scales. A sum beyond what an
// int64 holds at that scale (18 digits) saturates: no market reaches it.
func (d Decimal) Add(e Decimal) Decimal {
	s := max(d.Scale, e.Scale)
	a, ok1 := d.rescale(s)
	b, ok2 := e.rescale(s)
	if !ok1 || !ok2 {
		return saturate(d.Sign()+e.Sign(), s)
	}
	sum := a.Units + b.Units
	if (b.Units > 0 && sum < a.Units) || (b.Units < 0 && sum > a.Units) {
		return saturate(b.Sign(), s)
	}
	return Decimal{Units: sum, Scale: s}
}

// Sub returns d - e at the larger of their scales.
func (d Decimal) Sub(e Decimal) Decimal { return d.Add(e.Neg()) }

func saturate(sign int, s uint8) Decimal {
	if sign < 0 {
		return Decimal{Units: math.MinInt64 + 1, Scale: s}
	}
	return Decimal{Units: math.MaxInt64, Scale: s}
}

// Max returns the larger of d and e (d when equal).
func Max(d, e Decimal) Decimal {
	if e.Cmp(d) > 0 {
		return e
	}
	return d
}

// Min returns the smaller of d and e (d when equal).
func Min(d, e Decimal) Decimal {
	if e.Cmp(d) < 0 {
		return e
	}
	return d
}

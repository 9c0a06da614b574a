package decimal

import (
	"errors"
	"testing"
)

func TestParseKeepsTheDigitsAsWritten(t *testing.T) {
	for in, want := range map[string]string{
		"4000": "4000", "3999.0": "3999.0", "-0.25": "-0.25", "0.05": "0.05", "0": "0", "0.00": "0.00",
		"007": "7", "-0.0": "0.0", "480.02": "480.02", "99999999.99999999": "99999999.99999999",
		// JSON number literals: exponents expanded exactly.
		"1e3": "1000", "1.5E2": "150", "-2.5e-2": "-0.025", "0e5": "0", "12.34e1": "123.4", "5e-1": "0.5",
		"6.801e4": "68010", "3e0": "3", "1.0201005e6": "1020100.5", "5.9985e5": "599850", "1.25e-3": "0.00125",
		"2E+2": "200",
		// More fraction digits than kept: rounded half away from zero,
		// trailing zeros dropped (a float printed in full).
		"4421100.5000000001":  "4421100.5",
		"0.30000000000000004": "0.3",
		"2.000000000001":      "2.0",
		"0.123456785":         "0.12345679",
		"-0.123456785":        "-0.12345679",
		"0.999999999":         "1.0",
		"1e-40":               "0.0",
		"5e-9":                "0.00000001",
		// 18 digits in all: fraction digits give way to the integer part.
		"12345678901234.12345678":  "12345678901234.1235",
		"999999999999999999":       "999999999999999999",
		"1797693134862315.7081e-4": "179769313486.231571",
	} {
		d, err := ParseString(in)
		if err != nil {
			t.Errorf("Parse(%s): %v", in, err)
			continue
		}
		if got := d.String(); got != want {
			t.Errorf("Parse(%s) = %s; want %s", in, got, want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for in, want := range map[string]error{
		"": ErrSyntax, "-": ErrSyntax, ".5": ErrSyntax, "5.": ErrSyntax, "+5": ErrSyntax, "4,000": ErrSyntax,
		"1e": ErrSyntax, "1e+": ErrSyntax, "e5": ErrSyntax, "1.e5": ErrSyntax, "0x10": ErrSyntax, " 1": ErrSyntax,
		"1e999": ErrRange, "1e41": ErrRange, "1797693134862315708145274237317043567981": ErrRange,
		"1.7976931348623157e+308":                   ErrRange, // CTP's DBL_MAX: the caller reads it as "no value"
		"1234567890123456789":                       ErrRange,
		"12345678901234567890123456789012345678901": ErrSyntax, // longer than MaxLen
	} {
		if _, err := ParseString(in); !errors.Is(err, want) {
			t.Errorf("Parse(%q): %v; want %v", in, err, want)
		}
	}
}

func TestArithmetic(t *testing.T) {
	d := MustParse
	if got := d("10.5").Sub(d("0.25")).String(); got != "10.25" {
		t.Fatal(got)
	}
	if got := d("3").Add(d("0.5")).String(); got != "3.5" {
		t.Fatal(got)
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"3.0", "3", 0}, {"3.01", "3.1", -1}, {"-1", "-0.5", -1}, {"999999999999999999", "0.00000001", 1},
		{"-99999999.5", "99999999.99999999", -1}, {"0.0", "-0", 0}} {
		if got := d(c.a).Cmp(d(c.b)); got != c.want {
			t.Errorf("Cmp(%s, %s) = %d; want %d", c.a, c.b, got, c.want)
		}
	}
	if got := Max(d("1.5"), d("2")).String(); got != "2" {
		t.Fatal(got)
	}
	if got := Min(d("1.5"), d("2")).String(); got != "1.5" {
		t.Fatal(got)
	}
	// A sum past 18 digits saturates instead of wrapping.
	if got := d("999999999999999999").Add(d("999999999999999999")); got.Sign() <= 0 {
		t.Fatalf("wrapped: %v", got)
	}
	if got := d("99999999999999999").Add(d("0.5")); got.Sign() <= 0 {
		t.Fatalf("rescale overflow wrapped: %v", got)
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	b := []byte("4421100.5000000001")
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(b) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func BenchmarkParse(b *testing.B) {
	in := []byte("4421100.50")
	for b.Loop() {
		_, _ = Parse(in)
	}
}

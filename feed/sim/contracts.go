package sim

import (
	"fmt"
	"time"
)

// Product is a futures product with its exchange rules. Prices are held as
// integers of 10^-Decimals; TickUnits is the minimum price move in those
// units (rb: tick 1 yuan at 1 decimal = 10 units).
type Product struct {
	Exchange   string
	Code       string
	Decimals   uint8
	TickUnits  int64
	Multiplier int64
	BasePrice  int64   // reference settlement, in units
	LimitPct   int64   // daily price limit, percent of the previous settlement
	DailyVol   float64 // standard deviation of a day's return, percent
	Lots       float64 // mean lots of one trade of the main contract
	// Mains are the delivery months the main contract rolls through
	// (nil: every month); CFFEX index futures use the current month.
	Mains []time.Month
}

// Main-contract months.
var (
	jan      = []time.Month{1, 5, 9}  // most commodities: 01, 05, 09
	oct      = []time.Month{1, 5, 10} // ferrous: 01, 05, 10
	junDec   = []time.Month{6, 12}    // precious metals
	quarters = []time.Month{3, 6, 9, 12}
)

// Products lists the simulated products with their real tick sizes,
// multipliers and limits, and a volatility and activity near what each
// trades at.
var Products = []Product{
	{"SHFE", "rb", 1, 10, 10, 39000, 7, 1.2, 30, oct},         // rebar: tick 1, x10
	{"SHFE", "hc", 1, 10, 10, 40000, 7, 1.2, 12, oct},         // hot-rolled coil: tick 1, x10
	{"SHFE", "cu", 1, 100, 5, 680000, 7, 1.0, 3, nil},         // copper: tick 10, x5
	{"SHFE", "au", 2, 2, 1000, 48000, 7, 0.9, 3, junDec},      // gold: tick 0.02, x1000
	{"SHFE", "ag", 1, 10, 15, 58000, 8, 1.5, 15, junDec},      // silver: tick 1, x15
	{"SHFE", "al", 1, 50, 5, 190000, 7, 0.9, 4, nil},          // aluminium: tick 5, x5
	{"SHFE", "zn", 1, 50, 5, 210000, 7, 1.0, 4, nil},          // zinc: tick 5, x5
	{"SHFE", "ru", 1, 50, 10, 135000, 7, 1.5, 5, jan},         // rubber: tick 5, x10
	{"INE", "sc", 1, 1, 1000, 6000, 8, 2.0, 2, nil},           // crude oil: tick 0.1, x1000
	{"DCE", "m", 1, 10, 10, 33000, 6, 1.1, 20, jan},           // soybean meal: tick 1, x10
	{"DCE", "i", 1, 5, 100, 9500, 10, 1.8, 10, jan},           // iron ore: tick 0.5, x100
	{"DCE", "y", 1, 20, 10, 76000, 6, 1.1, 8, jan},            // soybean oil: tick 2, x10
	{"DCE", "p", 1, 20, 10, 70000, 7, 1.4, 10, jan},           // palm oil: tick 2, x10
	{"DCE", "c", 1, 10, 10, 24000, 5, 0.7, 15, jan},           // corn: tick 1, x10
	{"DCE", "j", 1, 5, 100, 23000, 9, 2.0, 3, jan},            // coke: tick 0.5, x100
	{"CZCE", "TA", 1, 20, 5, 59000, 6, 1.3, 15, jan},          // PTA: tick 2, x5
	{"CZCE", "MA", 1, 10, 10, 25000, 7, 1.4, 20, jan},         // methanol: tick 1, x10
	{"CZCE", "SR", 1, 10, 10, 63000, 5, 0.8, 8, jan},          // sugar: tick 1, x10
	{"CZCE", "CF", 1, 50, 5, 155000, 5, 0.9, 6, jan},          // cotton: tick 5, x5
	{"CZCE", "FG", 1, 10, 20, 16000, 6, 1.6, 12, jan},         // glass: tick 1, x20
	{"CFFEX", "IF", 1, 2, 300, 35000, 10, 1.0, 2, nil},        // CSI 300 index: tick 0.2, x300
	{"CFFEX", "IC", 1, 2, 200, 54000, 10, 1.3, 2, nil},        // CSI 500 index: tick 0.2, x200
	{"CFFEX", "IH", 1, 2, 300, 24000, 10, 0.9, 1, nil},        // SSE 50 index: tick 0.2, x300
	{"CFFEX", "T", 3, 5, 10000, 103000, 2, 0.15, 3, quarters}, // 10-year bond: tick 0.005, x10000
}

// seedSymbols are the seed design's examples, kept so its snippets run as
// written (contracts of 2024, simulated as if they still traded).
var seedSymbols = []string{"SHFE.rb2405", "SHFE.hc2405"}

// defaultProducts get today's main contract in the default set.
var defaultProducts = []string{"SHFE.rb", "SHFE.hc", "SHFE.cu", "SHFE.au", "SHFE.ag", "INE.sc", "DCE.m", "DCE.i",
	"CZCE.TA", "CZCE.MA", "CFFEX.IF", "CFFEX.IC"}

// DefaultSymbols are the simulator's symbols when the config names none:
// the seed's two examples, then the main contract of twelve products as of
// today.
func DefaultSymbols(today time.Time) []string {
	out := append([]string(nil), seedSymbols...)
	for _, code := range defaultProducts {
		for _, p := range Products {
			if p.Exchange+"."+p.Code == code {
				out = append(out, MainContract(p, today))
			}
		}
	}
	return out
}

// MainContract is the contract of p that trades most around today: the
// first of its main months at least two months ahead (the market rolls to
// it about then), the current month for index futures until their expiry
// on the third Friday, the next month after it.
func MainContract(p Product, today time.Time) string {
	y, m, _ := today.Date()
	if p.Exchange == "CFFEX" && p.Mains == nil {
		if today.After(thirdFriday(y, m)) {
			y, m = next(y, m)
		}
		return SymbolName(p, y, int(m))
	}
	for k := 2; k < 24; k++ {
		cy, cm := y, m
		for range k {
			cy, cm = next(cy, cm)
		}
		if p.Mains == nil || contains(p.Mains, cm) {
			return SymbolName(p, cy, int(cm))
		}
	}
	return SymbolName(p, y, int(m))
}

func next(y int, m time.Month) (int, time.Month) {
	if m == time.December {
		return y + 1, time.January
	}
	return y, m + 1
}

func thirdFriday(y int, m time.Month) time.Time {
	d := time.Date(y, m, 1, 15, 0, 0, 0, time.FixedZone("CST", 8*3600))
	for d.Weekday() != time.Friday {
		d = d.AddDate(0, 0, 1)
	}
	return d.AddDate(0, 0, 14)
}

func contains(ms []time.Month, m time.Month) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// SymbolName renders a contract symbol the way each exchange names it:
// CZCE uses a one-digit year ("TA405"), the others two digits ("rb2405").
func SymbolName(p Product, year, month int) string {
	if p.Exchange == "CZCE" {
		return fmt.Sprintf("%s.%s%d%02d", p.Exchange, p.Code, year%10, month)
	}
	return fmt.Sprintf("%s.%s%02d%02d", p.Exchange, p.Code, year%100, month)
}

// Universe returns n distinct symbols over every product and successive
// delivery months, for load tests that need many symbols.
func Universe(n int) []string {
	out := make([]string, 0, n)
	for m := 0; len(out) < n; m++ {
		year, month := 24+(m+4)/12, (m+4)%12+1
		for _, p := range Products {
			if len(out) == n {
				break
			}
			out = append(out, SymbolName(p, 2000+year, month))
		}
	}
	return out
}

// ParseSymbol finds the product of a symbol such as "SHFE.rb2405".
func ParseSymbol(symbol string) (Product, error) {
	for _, p := range Products {
		prefix := p.Exchange + "." + p.Code
		if len(symbol) > len(prefix) && symbol[:len(prefix)] == prefix && isDigits(symbol[len(prefix):]) {
			return p, nil
		}
	}
	return Product{}, fmt.Errorf("sim: unknown product in symbol %q", symbol)
}

func isDigits(s string) bool {
	if len(s) < 3 || len(s) > 4 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

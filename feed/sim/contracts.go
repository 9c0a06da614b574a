package sim

import "fmt"

// Product is a futures product with its exchange rules. Prices are held as
// integers of 10^-Decimals; TickUnits is the minimum price move in those
// units (rb: tick 1 yuan at 1 decimal = 10 units).
type Product struct {
	Exchange   string
	Code       string
	Decimals   uint8
	TickUnits  int64
	Multiplier int64
	BasePrice  int64 // reference settlement, in units
	LimitPct   int64 // daily price limit, percent of the previous settlement
}

// Products lists the simulated products with their real tick sizes and
// contract multipliers.
var Products = []Product{
	{"SHFE", "rb", 1, 10, 10, 39000, 7},    // rebar: tick 1, x10
	{"SHFE", "hc", 1, 10, 10, 40000, 7},    // hot-rolled coil: tick 1, x10
	{"SHFE", "cu", 1, 100, 5, 680000, 7},   // copper: tick 10, x5
	{"SHFE", "au", 2, 2, 1000, 48000, 7},   // gold: tick 0.02, x1000
	{"SHFE", "ag", 1, 10, 15, 58000, 8},    // silver: tick 1, x15
	{"SHFE", "al", 1, 50, 5, 190000, 7},    // aluminium: tick 5, x5
	{"SHFE", "zn", 1, 50, 5, 210000, 7},    // zinc: tick 5, x5
	{"SHFE", "ru", 1, 50, 10, 135000, 7},   // rubber: tick 5, x10
	{"INE", "sc", 1, 1, 1000, 6000, 8},     // crude oil: tick 0.1, x1000
	{"DCE", "m", 1, 10, 10, 33000, 6},      // soybean meal: tick 1, x10
	{"DCE", "i", 1, 5, 100, 9500, 10},      // iron ore: tick 0.5, x100
	{"DCE", "y", 1, 20, 10, 76000, 6},      // soybean oil: tick 2, x10
	{"DCE", "p", 1, 20, 10, 70000, 7},      // palm oil: tick 2, x10
	{"DCE", "c", 1, 10, 10, 24000, 5},      // corn: tick 1, x10
	{"DCE", "j", 1, 5, 100, 23000, 9},      // coke: tick 0.5, x100
	{"CZCE", "TA", 1, 20, 5, 59000, 6},     // PTA: tick 2, x5
	{"CZCE", "MA", 1, 10, 10, 25000, 7},    // methanol: tick 1, x10
	{"CZCE", "SR", 1, 10, 10, 63000, 5},    // sugar: tick 1, x10
	{"CZCE", "CF", 1, 50, 5, 155000, 5},    // cotton: tick 5, x5
	{"CZCE", "FG", 1, 10, 20, 16000, 6},    // glass: tick 1, x20
	{"CFFEX", "IF", 1, 2, 300, 35000, 10},  // CSI 300 index: tick 0.2, x300
	{"CFFEX", "IC", 1, 2, 200, 54000, 10},  // CSI 500 index: tick 0.2, x200
	{"CFFEX", "IH", 1, 2, 300, 24000, 10},  // SSE 50 index: tick 0.2, x300
	{"CFFEX", "T", 3, 5, 10000, 103000, 2}, // 10-year bond: tick 0.005, x10000
}

// DefaultSymbols are the simulator's symbols when the config names none.
// They include the seed's examples SHFE.rb2405 and SHFE.hc2405.
var DefaultSymbols = []string{
	"SHFE.rb2405", "SHFE.hc2405", "SHFE.cu2405", "SHFE.au2406", "SHFE.ag2406",
	"INE.sc2405", "DCE.m2405", "DCE.i2405", "CZCE.TA405", "CZCE.MA405",
	"CFFEX.IF2403", "CFFEX.IC2403",
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

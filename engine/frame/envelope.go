package frame

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/marketcast/marketcast/protocol"
)

// Envelope is the server→client message of PROTOCOL.md minus its data,
// which is carried as an already-encoded JSON object.
type Envelope struct {
	Type       string
	Channel    string
	Symbol     string // "symbol" key, market topics only
	StrategyID string // "strategy_id" key, signal topics only
	Broadcast  bool   // "broadcast": true on a notice to every user
	Timestamp  time.Time
	Sequence   uint64
	Epoch      string // "epoch" key, reliable topics only
}

// AppendEnvelope appends the JSON envelope around data (a JSON object or
// null) to dst. snapshot marks the state sent at subscribe time.
func AppendEnvelope(dst []byte, e *Envelope, data []byte, snapshot bool) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendString(dst, e.Type)
	dst = append(dst, `,"channel":`...)
	dst = AppendString(dst, e.Channel)
	if e.Symbol != "" {
		dst = append(dst, `,"symbol":`...)
		dst = AppendString(dst, e.Symbol)
	}
	if e.StrategyID != "" {
		dst = append(dst, `,"strategy_id":`...)
		dst = AppendString(dst, e.StrategyID)
	}
	dst = append(dst, `,"data":`...)
	if len(data) == 0 {
		data = []byte("null")
	}
	dst = append(dst, data...)
	dst = append(dst, `,"timestamp":"`...)
	dst = AppendTime(dst, e.Timestamp)
	dst = append(dst, `","sequence":`...)
	dst = strconv.AppendUint(dst, e.Sequence, 10)
	if e.Epoch != "" {
		dst = append(dst, `,"epoch":`...)
		dst = AppendString(dst, e.Epoch)
	}
	if e.Broadcast {
		dst = append(dst, `,"broadcast":true`...)
	}
	if snapshot {
		dst = append(dst, `,"snapshot":true`...)
	}
	return append(dst, '}')
}

// AppendTime appends t in the wire layout.
func AppendTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, protocol.TimeLayout)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD so a
// frame is always valid text.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

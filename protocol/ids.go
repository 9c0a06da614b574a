package protocol

import (
	"encoding/base64"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDBytes bounds user and strategy ids.
const MaxIDBytes = 128

// ValidID is the one rule for user ids (a JWT's sub, a subscribe's or a
// publish's user_id) and strategy ids: 1 to 128 bytes of printable UTF-8,
// no leading or trailing space, and neither * nor > (NATS wildcards; * also
// names the broadcast topic). So "alice@example.com" and "用户1" are ids;
// "", " 2" and "a\x00" are not.
func ValidID(s string) bool {
	if s == "" || len(s) > MaxIDBytes || !utf8.ValidString(s) || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for _, r := range s {
		if r == '*' || r == '>' || (r != ' ' && !unicode.IsPrint(r)) {
			return false
		}
	}
	return true
}

// MaxSymbolBytes bounds market symbols.
const MaxSymbolBytes = 64

// ValidSymbol is the rule for market symbols: dot-separated tokens of
// A-Z a-z 0-9 _ -, at most 64 bytes ("SHFE.rb2405", "CZCE.TA405"). A symbol
// is the tail of its NATS subject (md.tick.SHFE.rb2405), so it must be
// subject-safe as it is.
func ValidSymbol(s string) bool {
	if s == "" || len(s) > MaxSymbolBytes {
		return false
	}
	tokenStart := 0
	for i := 0; i < len(s); i++ { // without allocating: every tick's symbol is checked
		switch c := s[i]; {
		case c == '.':
			if i == tokenStart {
				return false
			}
			tokenStart = i + 1
		case !subjectSafe(c):
			return false
		}
	}
	return tokenStart < len(s)
}

func subjectSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// TopicKey names a topic: push channel and identity (symbol, user id,
// strategy id) joined by a colon: "tick:SHFE.rb2405", "orders:42".
func TopicKey(c *Channel, id string) string { return c.Push + ":" + id }

// BroadcastID is the identity of the broadcast notifications topic. No
// user id can be "*", so the topic is nobody's own.
const BroadcastID = "*"

// BroadcastTopic holds system notices for every user: one stream, stored
// once, fanned out to every notifications subscriber.
var BroadcastTopic = TopicKey(Notifications, BroadcastID)

// SubjectToken encodes an id as one NATS subject token: ids made only of
// A-Z a-z 0-9 _ - stay as they are; any other id (dots, spaces, @, unicode,
// the broadcast "*") becomes "~" and its base64url, which cannot collide
// with a plain one since "~" is not plain.
func SubjectToken(id string) string {
	for i := 0; i < len(id); i++ {
		if !subjectSafe(id[i]) {
			return "~" + base64.RawURLEncoding.EncodeToString([]byte(id))
		}
	}
	return id
}

// ParseSubjectToken reverses SubjectToken.
func ParseSubjectToken(tok string) (string, bool) {
	enc, ok := strings.CutPrefix(tok, "~")
	if !ok {
		return tok, tok != ""
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	return string(b), err == nil
}

// MarketSubjectPrefix starts the subjects market data travels on:
// md.<push channel>.<symbol>, e.g. md.tick.SHFE.rb2405, md.kline_1m.DCE.m2405.
const MarketSubjectPrefix = "md"

// MarketSubject is the NATS subject of a market topic's messages.
func MarketSubject(c *Channel, symbol string) string {
	return MarketSubjectPrefix + "." + c.Push + "." + symbol
}

// ParseMarketSubject splits md.<channel>.<symbol> into its market channel
// and symbol.
func ParseMarketSubject(subject string) (*Channel, string, bool) {
	rest, ok := strings.CutPrefix(subject, MarketSubjectPrefix+".")
	if !ok {
		return nil, "", false
	}
	name, symbol, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, "", false
	}
	c, ok := Lookup(name)
	if !ok || c.Kind != KindMarket || c.Push != name || !ValidSymbol(symbol) {
		return nil, "", false
	}
	return c, symbol, true
}

// Package frame turns engine messages into WebSocket frame bytes: the JSON
// envelope of PROTOCOL.md, encoded once, framed once, optionally compressed
// once (permessage-deflate without context takeover), and shared by every
// subscriber that needs the same variant.
package frame

import (
	"encoding/binary"
)

// HeaderRoom is the space reserved in front of a payload so that the frame
// header (at most 10 bytes for an unmasked server frame) can be written in
// place without copying the payload.
const HeaderRoom = 10

// WebSocket opcodes and flags used by server frames.
const (
	finBit     = 0x80
	rsv1Bit    = 0x40
	opText     = 0x1
	opClose    = 0x8
	opPing     = 0x9
	maxControl = 125
)

// Ping is an empty server ping frame. It is shared and must not be modified.
var Ping = []byte{finBit | opPing, 0}

// Seal writes a text-frame header into the HeaderRoom bytes in front of
// buf[HeaderRoom:] and returns the complete frame (a subslice of buf).
// compressed sets RSV1, as permessage-deflate requires for compressed
// messages.
func Seal(buf []byte, compressed bool) []byte {
	n := len(buf) - HeaderRoom
	b0 := byte(finBit | opText)
	if compressed {
		b0 |= rsv1Bit
	}
	var start int
	switch {
	case n <= 125:
		start = HeaderRoom - 2
		buf[start+1] = byte(n)
	case n <= 0xFFFF:
		start = HeaderRoom - 4
		buf[start+1] = 126
		binary.BigEndian.PutUint16(buf[start+2:], uint16(n))
	default:
		start = HeaderRoom - 10
		buf[start+1] = 127
		binary.BigEndian.PutUint64(buf[start+2:], uint64(n))
	}
	buf[start] = b0
	return buf[start:]
}

// Text frames a payload as one uncompressed text frame in a new buffer.
func Text(payload []byte) []byte {
	buf := make([]byte, HeaderRoom, HeaderRoom+len(payload))
	return Seal(append(buf, payload...), false)
}

// Close builds a close frame with a status code and a reason. The reason is
// cut so the control frame stays within 125 bytes, as RFC 6455 requires.
func Close(code uint16, reason string) []byte {
	if len(reason) > maxControl-2 {
		reason = reason[:maxControl-2]
	}
	b := make([]byte, 4, 4+len(reason))
	b[0] = finBit | opClose
	b[1] = byte(2 + len(reason))
	binary.BigEndian.PutUint16(b[2:], code)
	return append(b, reason...)
}

// Pong builds a pong frame echoing a ping's payload (at most 125 bytes).
func Pong(payload []byte) []byte {
	if len(payload) > maxControl {
		payload = payload[:maxControl]
	}
	b := make([]byte, 2, 2+len(payload))
	b[0] = finBit | 0xA
	b[1] = byte(len(payload))
	return append(b, payload...)
}

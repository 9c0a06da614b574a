package engine

import (
	"sync"

	"github.com/marketcast/marketcast/engine/frame"
)

// Event is one accepted message: its sequence and timestamp are fixed, and
// its frames are built lazily, once per variant, and shared by every
// subscriber that needs that variant.
type Event struct {
	env   frame.Envelope
	data  []byte
	final bool
	hub   *Hub

	mu       sync.Mutex
	variants []variant
}

type variant struct {
	key uint64
	b   []byte
}

// Sequence is the event's per-topic sequence number.
func (e *Event) Sequence() uint64 { return e.env.Sequence }

func variantKey(p *frame.Projection, deflate, snapshot bool) uint64 {
	var k uint64
	if p != nil {
		k = uint64(p.ID) << 2
	}
	if deflate {
		k |= 2
	}
	if snapshot {
		k |= 1
	}
	return k
}

// Frame returns the WebSocket frame for one variant, building it on first use.
func (e *Event) Frame(p *frame.Projection, deflate, snapshot bool) []byte {
	key := variantKey(p, deflate, snapshot)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range e.variants {
		if v.key == key {
			return v.b
		}
	}
	var b []byte
	if deflate {
		plain := e.frameLocked(variantKey(p, false, snapshot), p, snapshot)
		payload := plain[len(plain)-payloadLen(plain):]
		if len(payload) < e.hub.cfg.DeflateThreshold {
			b = plain
		} else {
			b = frame.Deflated(payload)
			e.hub.metrics.deflateIn.Add(len(payload))
			e.hub.metrics.deflateOut.Add(len(b))
		}
	} else {
		b = e.frameLocked(key, p, snapshot)
		return b
	}
	e.variants = append(e.variants, variant{key, b})
	return b
}

// frameLocked returns the plain frame for key, building and caching it.
// e.mu is held on entry.
func (e *Event) frameLocked(key uint64, p *frame.Projection, snapshot bool) []byte {
	for _, v := range e.variants {
		if v.key == key {
			return v.b
		}
	}
	data := frame.Project(e.data, p)
	buf := make([]byte, frame.HeaderRoom, frame.HeaderRoom+len(data)+160)
	buf = frame.AppendEnvelope(buf, &e.env, data, snapshot)
	b := frame.Seal(buf, false)
	e.variants = append(e.variants, variant{key, b})
	e.hub.metrics.encoded.Inc()
	return b
}

// payloadLen reads the payload length back from a server frame header.
func payloadLen(f []byte) int {
	switch n := f[1] & 0x7f; n {
	case 126:
		return int(f[2])<<8 | int(f[3])
	case 127:
		var v int
		for _, c := range f[2:10] {
			v = v<<8 | int(c)
		}
		return v
	default:
		return int(n)
	}
}

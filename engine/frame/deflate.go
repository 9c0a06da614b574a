package frame

import (
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// deflateTail is the empty stored block that ends every sync flush;
// RFC 7692 section 7.2.1 says to strip it from each message.
var deflateTail = []byte{0, 0, 0xff, 0xff}

// A flate.Writer holds about half a megabyte of state, so writers are pooled
// rather than kept per connection or per topic.
var writerPool = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// sliceWriter appends into a byte slice without the bookkeeping of
// bytes.Buffer, so the compressed frame can start with header room.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// Deflated compresses payload as one permessage-deflate message with no
// context takeover and frames it. The result is valid for every peer that
// negotiated permessage-deflate, whatever its window size, because each
// message stands alone.
func Deflated(payload []byte) []byte {
	w := writerPool.Get().(*flate.Writer)
	sw := sliceWriter{b: make([]byte, HeaderRoom, HeaderRoom+len(payload)/2+16)}
	w.Reset(&sw)
	_, _ = w.Write(payload) // writes to a slice cannot fail
	_ = w.Flush()
	writerPool.Put(w)
	out := bytes.TrimSuffix(sw.b, deflateTail)
	return Seal(out, true)
}

// Readers hold a 32 KiB window each: pooled, as messages stand alone.
var readerPool = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// finalBlock ends the stream after a message: the sync-flush tail the
// sender stripped, then an empty final stored block.
var finalBlock = []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// Inflate reverses Deflated's payload compression. Tests and the load
// generator use it to read compressed frames.
func Inflate(compressed []byte) ([]byte, error) {
	r := readerPool.Get().(io.ReadCloser)
	defer readerPool.Put(r)
	src := io.MultiReader(bytes.NewReader(compressed), bytes.NewReader(finalBlock))
	if err := r.(flate.Resetter).Reset(src, nil); err != nil {
		return nil, err
	}
	out := bytes.NewBuffer(make([]byte, 0, 3*len(compressed)))
	_, err := out.ReadFrom(r)
	return out.Bytes(), err
}

// Package replay records market data as it crosses NATS and plays it back
// through the same path: a team can reproduce a market day, demo offline,
// or load-test with real data.
//
// A recording is gzip-compressed JSON lines. The first line says what the
// file is; each following line is one message with the time it was
// received, its subject and its data:
//
//	{"marketcast_recording":1,"started":"2026-11-27T01:00:00.000Z"}
//	{"t":"2026-11-27T01:00:00.512Z","s":"md.tick.SHFE.rb2405","d":{"last_price":"3999.0",...}}
//
// Data that is not JSON (a broken collector's bytes) is kept in base64 in
// "b" instead of "d", so a recording holds what was published, bad input
// included, and its replay tests the same validation.
package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/feed"
	"github.com/marketcast/marketcast/protocol"
)

// Version is the recording format's version, in its first line.
const Version = 1

// MaxData is the largest message recorded: NATS's default maximum payload.
// A larger one (a server configured for more) is counted, not recorded: no
// source would accept it anyway (limits.max_message_bytes).
const MaxData = 1 << 20

// maxLine bounds one line of a recording: MaxData in base64, with room to
// spare.
const maxLine = 2 * MaxData

// header is a recording's first line.
type header struct {
	Version int    `json:"marketcast_recording"`
	Started string `json:"started"`
}

// Entry is one recorded message.
type Entry struct {
	Time    time.Time       `json:"-"`
	T       string          `json:"t"`
	Subject string          `json:"s"`
	Data    json.RawMessage `json:"d,omitempty"`
	Bytes   []byte          `json:"b,omitempty"` // data that is not JSON, base64
}

// Payload is the entry's data as it was published.
func (e *Entry) Payload() []byte {
	if e.Data == nil {
		return e.Bytes
	}
	return e.Data
}

// Writer writes a recording.
type Writer struct {
	f   io.Closer
	buf *bufio.Writer
	gz  *gzip.Writer
	enc *json.Encoder
	n   int

	skipped int
	compact bytes.Buffer
}

// Create starts a recording in a new file at path (an existing one is
// replaced).
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	buf := bufio.NewWriterSize(f, 64<<10)
	gz := gzip.NewWriter(buf)
	w := &Writer{f: f, buf: buf, gz: gz, enc: json.NewEncoder(gz)}
	w.enc.SetEscapeHTML(false) // data is written as it came
	if err := w.enc.Encode(header{Version: Version, Started: time.Now().UTC().Format(protocol.TimeLayout)}); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Write appends one message received at t.
func (w *Writer) Write(t time.Time, subject string, data []byte) error {
	if len(data) > MaxData {
		w.skipped++
		return nil
	}
	e := Entry{T: t.UTC().Format(time.RFC3339Nano), Subject: subject}
	// JSON is embedded as it is, unless embedding would change its bytes
	// (the encoder compacts what it embeds): a replay publishes exactly what
	// was recorded.
	w.compact.Reset()
	if json.Compact(&w.compact, data) == nil && bytes.Equal(w.compact.Bytes(), data) {
		e.Data = data
	} else {
		e.Bytes = data
	}
	w.n++
	return w.enc.Encode(&e)
}

// Count is the number of messages written.
func (w *Writer) Count() int { return w.n }

// Skipped is the number of messages not written: larger than MaxData.
func (w *Writer) Skipped() int { return w.skipped }

// Close completes the file: a recording is readable only once closed.
func (w *Writer) Close() error {
	err := w.gz.Close()
	if e := w.buf.Flush(); err == nil {
		err = e
	}
	if e := w.f.Close(); err == nil {
		err = e
	}
	return err
}

// Record writes every message on subjects (md.> for all market data) to w
// until ctx ends.
func Record(ctx context.Context, nc *nats.Conn, subjects string, w *Writer) error {
	msgs := make(chan *nats.Msg, 8192)
	sub, err := nc.ChanSubscribe(subjects, msgs)
	if err != nil {
		return fmt.Errorf("record: subscribe %s: %w", subjects, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	for {
		select {
		case <-ctx.Done():
			// What NATS delivered before the stop is recorded too.
			for {
				select {
				case m := <-msgs:
					if err := w.Write(time.Now(), m.Subject, m.Data); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		case m := <-msgs:
			if err := w.Write(time.Now(), m.Subject, m.Data); err != nil {
				return err
			}
		}
	}
}

// Reader reads a recording.
type Reader struct {
	f  io.Closer
	gz *gzip.Reader
	sc *bufio.Scanner
}

// Open opens the recording at path and checks its first line.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	gz, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("replay: %s is not a marketcast recording (not gzip): %w", path, err)
	}
	sc := bufio.NewScanner(gz)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var h header
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &h) != nil || h.Version == 0 {
		f.Close()
		return nil, fmt.Errorf("replay: %s is not a marketcast recording (no header line)", path)
	}
	if h.Version != Version {
		f.Close()
		return nil, fmt.Errorf("replay: %s is recording format %d; this build reads %d", path, h.Version, Version)
	}
	return &Reader{f: f, gz: gz, sc: sc}, nil
}

// Next returns the next message, or io.EOF after the last.
func (r *Reader) Next() (*Entry, error) {
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		return nil, io.EOF
	}
	var e Entry
	if err := json.Unmarshal(r.sc.Bytes(), &e); err != nil {
		return nil, fmt.Errorf("replay: bad line: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, e.T)
	if err != nil {
		return nil, fmt.Errorf("replay: bad time %q: %w", e.T, err)
	}
	e.Time = t
	return &e, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Play calls fn with each message of the recording at path, at its
// recorded pace divided by speed (0: as fast as fn returns). It returns the
// number of messages played, and a nil error once the recording has been
// played to its end.
func Play(ctx context.Context, path string, speed float64, fn func(*Entry) error) (int, error) {
	if speed < 0 {
		return 0, fmt.Errorf("replay: speed must be >= 0, got %v", speed)
	}
	r, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var (
		first  time.Time
		began  = time.Now()
		played int
	)
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return played, nil
		}
		if err != nil {
			return played, err
		}
		if first.IsZero() {
			first = e.Time
		}
		if speed > 0 {
			due := began.Add(time.Duration(float64(e.Time.Sub(first)) / speed))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return played, ctx.Err()
				case <-time.After(d):
				}
			}
		}
		if ctx.Err() != nil {
			return played, ctx.Err()
		}
		if err := fn(e); err != nil {
			return played, err
		}
		played++
	}
}

// Source plays a recording back as a node's own feed source: each message
// is validated as the NATS ingest validates it, then published.
type Source struct {
	Path  string
	Speed float64 // 1: as recorded; 10: ten times faster; 0: as fast as possible
	// MaxBytes bounds one message, as limits.max_message_bytes does for
	// every other source.
	MaxBytes int
	// Rules check what the recording holds as the NATS ingest does (a time
	// without a zone is feed.time_zone's); nil: the protocol's defaults.
	Rules *protocol.Rules
	Log   *slog.Logger
}

// Symbols implements feed.Source: the universe is learned from messages.
func (s *Source) Symbols() []string { return nil }

// Run implements feed.Source. It returns nil when the recording has been
// played to its end.
func (s *Source) Run(ctx context.Context, sink feed.Sink) error {
	skipped := 0
	n, err := Play(ctx, s.Path, s.Speed, func(e *Entry) error {
		p, err := Publication(e, s.MaxBytes, s.Rules)
		if err == nil {
			_, err = sink.Publish(ctx, p)
		}
		if err != nil && ctx.Err() == nil {
			skipped++
			s.Log.Debug("recorded message skipped", "subject", e.Subject, "err", err)
		}
		return ctx.Err()
	})
	if err == nil {
		s.Log.Info("replay finished", "file", s.Path, "messages", n-skipped, "skipped", skipped)
	}
	return err
}

// Publication validates a recorded message as the NATS ingest does.
func Publication(e *Entry, maxBytes int, r *protocol.Rules) (*protocol.Publication, error) {
	ch, symbol, ok := protocol.ParseMarketSubject(e.Subject)
	if !ok {
		return nil, fmt.Errorf("subject %q is not md.<market channel>.<symbol>", e.Subject)
	}
	return protocol.ValidateWith(&protocol.Item{Channel: ch.Push, Symbol: symbol, Data: e.Payload()}, maxBytes, r)
}

var _ feed.Source = (*Source)(nil)

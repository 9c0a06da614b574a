package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/protocol"
)

// TestRecordingKeepsBytes: every message comes back with the bytes it was
// published with, JSON or not, in order, with its time.
func TestRecordingKeepsBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.mcr")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 27, 1, 0, 0, 512_000_000, time.UTC)
	msgs := []struct{ subject, data string }{
		{"md.tick.SHFE.rb2405", `{"last_price":"3999.0","volume":"15"}`},
		{"md.tick.SHFE.rb2405", `{ "last_price": 3999.5 }`}, // not compact: kept as sent
		{"md.depth.SHFE.rb2405", `{"bids":[["1<2","&"]],"asks":[]}`},
		{"md.tick.X.y", "\x00not json\xff"},
		{"md.tick.X.y", strings.Repeat("a", MaxData+1)}, // too large: counted, not kept
	}
	for i, m := range msgs {
		if err := w.Write(t0.Add(time.Duration(i)*time.Second), m.subject, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	if w.Count() != 4 || w.Skipped() != 1 {
		t.Fatalf("count %d skipped %d", w.Count(), w.Skipped())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, m := range msgs[:4] {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Subject != m.subject || string(e.Payload()) != m.data || !e.Time.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("entry %d: %s %q at %v; want %s %q", i, e.Subject, e.Payload(), e.Time, m.subject, m.data)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last entry: %v; want EOF", err)
	}
}

func TestNotARecording(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	_ = os.WriteFile(plain, []byte("hello"), 0o600)
	if _, err := Open(plain); err == nil || !strings.Contains(err.Error(), "not gzip") {
		t.Fatalf("plain file: %v", err)
	}
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	_, _ = gz.Write([]byte(`{"hello":1}` + "\n"))
	_ = gz.Close()
	other := filepath.Join(dir, "other")
	_ = os.WriteFile(other, b.Bytes(), 0o600)
	if _, err := Open(other); err == nil || !strings.Contains(err.Error(), "no header") {
		t.Fatalf("gzip without header: %v", err)
	}
}

type sink struct{ pubs []*protocol.Publication }

func (s *sink) Publish(_ context.Context, p *protocol.Publication) (uint64, error) {
	s.pubs = append(s.pubs, p)
	return 0, nil
}

// TestSourceValidates: played as a node's own source, a recording goes
// through the same validation as live input; bad messages are skipped and
// the rest is published in order.
func TestSourceValidates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.mcr")
	w, _ := Create(path)
	now := time.Now()
	_ = w.Write(now, "md.tick.SHFE.rb2405", []byte(`{"last_price":3999.0,"volume":15}`))
	_ = w.Write(now, "md.trade.SHFE.rb2405", []byte(`{"price":"1"}`))                   // no such channel
	_ = w.Write(now, "md.tick.SHFE.rb2405", []byte(`{"last_price":"1","volume":"-1"}`)) // negative
	_ = w.Write(now.Add(20*time.Millisecond), "md.depth.SHFE.rb2405", []byte(`{"bids":[["3998.0",3]],"asks":[["3999.0",4]]}`))
	_ = w.Close()
	var s sink
	src := &Source{Path: path, Speed: 1, MaxBytes: 65536, Log: slog.New(slog.DiscardHandler)}
	if err := src.Run(context.Background(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.pubs) != 2 || s.pubs[0].Channel != protocol.Tick || s.pubs[1].Channel != protocol.Depth {
		t.Fatalf("published %d: %v", len(s.pubs), s.pubs)
	}
	if got := string(s.pubs[0].Data); got != `{"last_price":"3999.0","volume":"15"}` {
		t.Fatalf("tick normalised to %s", got)
	}
	if got := string(s.pubs[1].Data); got != `{"bids":[["3998.0","3"]],"asks":[["3999.0","4"]],"levels":1}` {
		t.Fatalf("depth normalised to %s", got)
	}

	// A stopped replay stops at once, whatever the recording's pace.
	w, _ = Create(path)
	_ = w.Write(now, "md.tick.A.b", []byte(`{"last_price":"1"}`))
	_ = w.Write(now.Add(time.Hour), "md.tick.A.b", []byte(`{"last_price":"2"}`))
	_ = w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s = sink{}
	done := make(chan error)
	go func() { done <- src.Run(ctx, &s) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("cancelled replay: %v", err)
	}
}

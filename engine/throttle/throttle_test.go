package throttle

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLinesAndBytesAreBounded is finding 9 of the second security test:
// the failed-login log allowed 20 lines a minute of any size (14 MB a
// minute from one client sending a 700 KB kid). Lines stay within the
// budget and every value is cut to MaxValueBytes.
func TestLinesAndBytesAreBounded(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, 20)
	huge := strings.Repeat("k", 700<<10)
	for range 2000 {
		l.Info("authentication failed", "remote", "127.0.0.1:1", "err", errors.New("no RS256 key (kid "+huge+")"), "ua", huge, "raw", []byte(huge))
	}
	lines := strings.Count(buf.String(), "\n")
	if lines != 20 {
		t.Fatalf("%d lines for 2000 failures; want the burst of 20", lines)
	}
	if perLine := buf.Len() / lines; perLine > 4*MaxValueBytes {
		t.Fatalf("%d bytes a line; want each value cut to %d bytes", perLine, MaxValueBytes)
	}
	if !strings.Contains(buf.String(), "bytes)") {
		t.Fatalf("a cut value does not say it was cut: %.300s", buf.String())
	}
}

func TestClipKeepsRunesWhole(t *testing.T) {
	s := strings.Repeat("用", 200) // 600 bytes
	c := Clip(s)
	if !strings.HasPrefix(c, strings.Repeat("用", MaxValueBytes/3)) || strings.ContainsRune(c, '\uFFFD') {
		t.Fatalf("clip cut a rune: %q", c)
	}
	if Clip("short") != "short" {
		t.Fatal("a short value was changed")
	}
}

package kline

import (
	"testing"
	"time"

	"github.com/marketcast/marketcast/feed"
)

func d(u int64) feed.Decimal { return feed.Decimal{Units: u, Scale: 1} }

func TestBarsFromTicks(t *testing.T) {
	a := New("SHFE.rb2405")
	var got []*feed.Bar
	emit := func(b *feed.Bar) {
		if b.Channel == "kline_1m" {
			got = append(got, b)
		}
	}
	base := time.Date(2024, 3, 1, 1, 30, 10, 0, time.UTC) // 09:30:10 in Shanghai
	a.Tick(base, d(40000), 100, d(4000000), emit)
	a.Tick(base.Add(20*time.Second), d(40100), 110, d(4401000), emit)
	a.Tick(base.Add(30*time.Second), d(39900), 115, d(4600500), emit)
	a.Tick(base.Add(55*time.Second), d(40050), 120, d(4800750), emit) // 09:31:05: next bar
	last := got[2]
	if last.Open != "4000.0" || last.High != "4010.0" || last.Low != "3990.0" || last.Close != "3990.0" ||
		last.Volume != "15" || last.Turnover != "60050.0" || last.Closed {
		t.Fatalf("forming bar %+v", last)
	}
	closed, next := got[3], got[4]
	if !closed.Closed || closed.Close != "3990.0" || closed.StartTime != "2024-03-01T01:30:00.000Z" || closed.EndTime != "2024-03-01T01:31:00.000Z" {
		t.Fatalf("closed bar %+v", closed)
	}
	if next.Closed || next.Open != "4005.0" || next.Volume != "5" || next.StartTime != "2024-03-01T01:31:00.000Z" {
		t.Fatalf("next bar %+v", next)
	}
	// Advance closes a bar on time without a tick.
	got = nil
	a.Advance(base.Add(2*time.Minute), emit)
	if len(got) != 1 || !got[0].Closed || got[0].StartTime != "2024-03-01T01:31:00.000Z" {
		t.Fatalf("advance emitted %+v", got)
	}
}

func TestDailyBarsAlignToShanghai(t *testing.T) {
	tm := time.Date(2024, 3, 1, 17, 0, 0, 0, time.UTC) // 01:00 on 2 March in Shanghai
	if got := BarStart(tm, 24*time.Hour); !got.Equal(time.Date(2024, 3, 1, 16, 0, 0, 0, time.UTC)) {
		t.Fatalf("daily bar starts %v; want Shanghai midnight", got)
	}
}

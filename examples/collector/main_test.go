package main

import (
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketcast/marketcast/engine/natsbroker/natstest"
	"github.com/marketcast/marketcast/internal/testwait"
)

// TestCollectorPublishesTheSampleFile runs the example against a real NATS
// server with its sample file, as the README does.
func TestCollectorPublishesTheSampleFile(t *testing.T) {
	ns := natstest.Start(t, "")
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 100)
	sub, err := nc.ChanSubscribe("md.>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = nc.Flush()
	f, err := os.Open("ticks.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := run(ns.URL(), f, 0)
	if err != nil || n != 6 {
		t.Fatalf("published %d: %v", n, err)
	}
	var subjects []string
	first := true
	for range n {
		select {
		case m := <-msgs:
			subjects = append(subjects, m.Subject)
			if m.Subject == "md.tick.DCE.m2601" && first && string(m.Data) != `{"ask_price":"2868.0","ask_volume":"25","bid_price":"2867.0","bid_volume":"41","last_price":"2868.0","open_interest":"2210004","turnover":"9177600.0","update_time":"2026-11-24T13:00:00.500Z","volume":"320"}` {
				t.Fatalf("payload %s", m.Data)
			}
			if m.Subject == "md.tick.DCE.m2601" {
				first = false
			}
		case <-time.After(testwait.Deadline): // a hang guard
			t.Fatalf("received %v", subjects)
		}
	}
	sort.Strings(subjects)
	if subjects[0] != "md.tick.DCE.m2601" || subjects[5] != "md.tick.SHFE.rb2601" {
		t.Fatalf("subjects %v", subjects)
	}
	// A CSV with the wrong columns is refused before anything is sent.
	if _, err := run(ns.URL(), strings.NewReader("symbol,price\nX.y,1\n"), 0); err == nil {
		t.Fatal("a bad header was accepted")
	}
}

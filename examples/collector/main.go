// Command collector is an example market collector: it reads ticks as CSV
// (what a CTP or exchange-gateway recorder typically writes) and publishes
// each to marketcast's NATS ingest subject, md.tick.<symbol>, as the JSON
// data object of the tick channel. Every node of a cluster (or a node with
// feed.kind nats) ingests it; bars are built there from these ticks.
//
//	go run ./examples/collector -nats nats://127.0.0.1:4222 < examples/collector/ticks.csv
//
// A collector in Python or JavaScript needs nothing but a NATS client and
// the same subject and payload (docs/FEED.md).
package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS server")
	pace := flag.Duration("pace", 0, "wait this long between ticks (0: as fast as NATS takes them)")
	flag.Parse()
	n, err := run(*url, os.Stdin, *pace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "collector: published %d ticks\n", n)
}

// columns of the CSV input, after a header line naming them. update_time
// is the exchange time, RFC 3339; prices and volumes are copied as written,
// so nothing is rounded on the way.
var columns = []string{"symbol", "update_time", "last_price", "bid_price", "bid_volume", "ask_price", "ask_volume",
	"volume", "turnover", "open_interest"}

// run publishes every CSV row read from in and returns how many.
func run(url string, in io.Reader, pace time.Duration) (int, error) {
	nc, err := nats.Connect(url, nats.Name("example-collector"))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	r := csv.NewReader(in)
	r.FieldsPerRecord = len(columns)
	head, err := r.Read()
	if err != nil {
		return 0, fmt.Errorf("header: %w", err)
	}
	for i, c := range columns {
		if head[i] != c {
			return 0, fmt.Errorf("header: column %d is %q; want %q", i+1, head[i], c)
		}
	}
	n := 0
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		tick := make(map[string]string, len(columns)-1)
		for i, c := range columns[1:] {
			if v := row[i+1]; v != "" {
				tick[c] = v
			}
		}
		data, _ := json.Marshal(tick)
		if err := nc.Publish("md.tick."+row[0], data); err != nil {
			return n, err
		}
		n++
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	// Publish is asynchronous: wait until the server has everything.
	return n, nc.FlushTimeout(10 * time.Second)
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/marketcast/marketcast/bench/load"
)

// perProcess is how many connections one load-generator process holds: the
// open-file limit here is 20,000 per process, and a process needs a few
// descriptors of its own.
const perProcess = 15000

// A worker is a child mcbench process holding connections [first,
// first+count). The parent talks to it over stdin and stdout, one JSON line
// per answer: "snap" (results so far, histogram reset), "stall N", "quit".
type worker struct {
	first, count int
	cmd          *exec.Cmd
	in           io.WriteCloser
	out          *bufio.Scanner
}

// workerReport is a worker's answer to "snap".
type workerReport struct {
	Ready     int64                  `json:"ready,omitempty"`
	Delivered int64                  `json:"delivered"`
	Hist      *hdrhistogram.Snapshot `json:"hist,omitempty"`
	Counts    []int64                `json:"counts,omitempty"`
	Error     string                 `json:"error,omitempty"`
}

// spawnWorkers starts child processes for connections beyond what this
// process holds itself, and waits until each has its subscriptions.
func (b *bench) spawnWorkers(total int) error {
	addr, secret := b.t.Endpoint()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for first := perProcess; first < total; first += perProcess {
		count := min(perProcess, total-first)
		args := []string{"-worker", "-target", b.o.target, "-addr", addr, "-secret", secret,
			"-scenario", b.o.scenario, "-channel", b.o.channel, "-symbols", strconv.Itoa(b.o.symbols),
			"-first", strconv.Itoa(first), "-count", strconv.Itoa(count), "-pin=false"}
		if b.o.deflate {
			args = append(args, "-deflate", "-inflate-every", strconv.Itoa(load.InflateEvery))
		}
		cmd := exec.Command(self, args...)
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		w := &worker{first: first, count: count, cmd: cmd, in: in, out: bufio.NewScanner(out)}
		w.out.Buffer(make([]byte, 1<<20), 64<<20)
		b.workers = append(b.workers, w)
	}
	for _, w := range b.workers {
		r, err := w.read()
		if err != nil {
			return err
		}
		progress("worker %d..%d ready (%d subscriptions)", w.first, w.first+w.count-1, r.Ready)
	}
	return nil
}

func (w *worker) read() (*workerReport, error) {
	if !w.out.Scan() {
		return nil, fmt.Errorf("worker %d: exited: %v", w.first, w.out.Err())
	}
	var r workerReport
	if err := json.Unmarshal(w.out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("worker %d: %v", w.first, err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("worker %d: %s", w.first, r.Error)
	}
	return &r, nil
}

func (w *worker) ask(cmd string) (*workerReport, error) {
	if _, err := fmt.Fprintln(w.in, cmd); err != nil {
		return nil, err
	}
	return w.read()
}

// collect merges every worker's results since the last collect into h and
// the per-connection counts; it returns their deliveries.
func (b *bench) collect(h *hdrhistogram.Histogram) int64 {
	var delivered int64
	for _, w := range b.workers {
		r, err := w.ask("snap")
		if err != nil {
			progress("%v", err)
			continue
		}
		delivered += r.Delivered
		if r.Hist != nil {
			h.Merge(hdrhistogram.Import(r.Hist))
		}
		for i, n := range r.Counts {
			b.counts[w.first+i].Store(n)
		}
	}
	return delivered
}

func (b *bench) stopWorkers() {
	for _, w := range b.workers {
		_, _ = fmt.Fprintln(w.in, "quit")
		done := make(chan struct{})
		go func() { _ = w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = w.cmd.Process.Kill()
		}
	}
}

// runWorker is the child side: connect a share, then answer the parent.
func runWorker(o options, addr, secret string, first, count int) error {
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) error {
		_ = out.Encode(workerReport{Error: err.Error()})
		return err
	}
	t, err := load.Attach(o.target, addr, secret)
	if err != nil {
		return fail(err)
	}
	rec := load.NewRecorder()
	counts := make([]atomic.Int64, count)
	conns := make([]*load.RawConn, count)
	var want int64
	for k := 0; k < count; k++ {
		i := first + k
		tp := topicsFor(o, i)
		want += int64(len(tp))
		c, err := t.Dial(sourceIP(i), "u"+strconv.Itoa(i), tp, o.deflate, func(msg []byte) {
			if sent, ok := load.SentAt(msg); ok {
				rec.Record(k, time.Since(sent))
			} else {
				rec.Count()
			}
			counts[k].Add(1)
		})
		if err != nil {
			return fail(fmt.Errorf("dial %d: %w", i, err))
		}
		conns[k] = c
	}
	for deadline := time.Now().Add(60 * time.Second); t.Ready() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("only %d of %d subscriptions confirmed", t.Ready(), want))
		}
	}
	_ = out.Encode(workerReport{Ready: t.Ready()})
	var last int64
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		if len(cmd) == 0 {
			continue
		}
		switch cmd[0] {
		case "snap":
			d := rec.Delivered()
			r := workerReport{Delivered: d - last, Hist: rec.Snapshot(true).Export(), Counts: make([]int64, count)}
			last = d
			for k := range counts {
				r.Counts[k] = counts[k].Load()
			}
			_ = out.Encode(r)
		case "stall":
			if n, err := strconv.Atoi(cmd[1]); err == nil && n-first >= 0 && n-first < count {
				conns[n-first].Stall()
			}
			_ = out.Encode(workerReport{})
		case "quit":
			for _, c := range conns {
				c.Close()
			}
			return nil
		}
	}
	return nil
}

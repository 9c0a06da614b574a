package load

import (
	"bufio"
	"context"
	"crypto/sha1" //nolint:gosec // RFC 6455's accept key is SHA-1 by definition
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/marketcast/marketcast/engine/frame"
)

// Floor is the kernel's floor for a fan-out: a server that does nothing a
// real one must (no queues, no conflation, no flow control, no metrics, no
// authentication) and writes each published message to every subscriber
// with one blocking write per connection, from the goroutine that took the
// publish. What it costs per delivery is what the system call and Go's
// network poller cost: the part of marketcast's (and Centrifugo's) CPU per
// delivery that no server-side change can remove. It runs as a process of
// its own (mcbench -floor-server), pinned like the others, so that its CPU
// is read the same way.
type Floor struct {
	Bin string // mcbench itself

	addr string
	proc *process
	counter
}

func (f *Floor) Endpoint() (string, string) { return f.addr, "" }
func (f *Floor) Name() string               { return "floor" }
func (f *Floor) PID() int                   { return f.proc.cmd.Process.Pid }
func (f *Floor) Stop()                      { f.proc.stop() }

func (f *Floor) Start(ctx context.Context) error {
	addr, err := freePort()
	if err != nil {
		return err
	}
	f.addr = addr
	f.proc, err = startProcess(ctx, f.Bin, []string{"-floor-server", "-addr", addr}, nil, "http://"+addr+"/healthz")
	return err
}

func (f *Floor) Dial(src, _ string, topics []Topic, deflate bool, onData func([]byte)) (*RawConn, error) {
	if deflate {
		return nil, errors.New("floor: no permessage-deflate")
	}
	c, err := DialRaw("ws://"+f.addr+"/ws", src, false, func(_ *RawConn, b []byte) {
		if string(b) == floorSubscribed {
			f.n.Add(1)
			return
		}
		onData(b)
	})
	if err != nil {
		return nil, err
	}
	for range topics {
		if err := c.Send([]byte(`{"type":"subscribe"}`)); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (f *Floor) Publish(msgs []Outgoing) error {
	items := make([]json.RawMessage, len(msgs))
	for i, o := range msgs {
		items[i] = fmt.Appendf(nil, `{"channel":%q,"id":%q,"data":%s}`, o.Topic.Channel, o.Topic.ID, o.Data)
	}
	body, _ := json.Marshal(items)
	return post("http://"+f.addr+"/api/v1/publish", http.Header{"Content-Type": {"application/json"}}, body)
}

const floorSubscribed = `{"type":"subscribe_response"}`

// floorServer is the floor's process: every connection subscribed to
// everything.
type floorServer struct {
	mu    sync.Mutex
	conns []net.Conn
	seq   uint64
}

// ServeFloor runs the floor server on addr until the process is stopped.
func ServeFloor(addr string) error {
	s := &floorServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/ws", s.upgrade)
	mux.HandleFunc("/api/v1/publish", s.publish)
	return (&http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe()
}

func (s *floorServer) upgrade(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) //nolint:gosec
	_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	_ = conn.SetDeadline(time.Time{}) // the header timeout's may still be set
	if rw.Flush() != nil {
		_ = conn.Close()
		return
	}
	go s.read(conn, rw.Reader)
}

// read answers each of the client's frames with a subscribe answer (the
// load generator sends nothing else but pongs, which it never gets a ping
// for) and drops the connection when the client goes.
func (s *floorServer) read(conn net.Conn, r *bufio.Reader) {
	defer func() {
		s.mu.Lock()
		for i, c := range s.conns {
			if c == conn {
				s.conns = append(s.conns[:i], s.conns[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
		_ = conn.Close()
	}()
	var head [14]byte
	for {
		if _, err := io.ReadFull(r, head[:2]); err != nil {
			return
		}
		n := uint64(head[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(r, head[2:4]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(head[2:4]))
		case 127:
			if _, err := io.ReadFull(r, head[2:10]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(head[2:10])
		}
		if n > 1<<16 {
			return
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)+4); err != nil { // mask key and payload
			return
		}
		switch head[0] & 0x0f {
		case 0x8: // close
			return
		case 0x1:
			s.mu.Lock()
			_, err := conn.Write(frame.Text([]byte(floorSubscribed)))
			s.conns = append(s.conns, conn)
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// publish writes each published message to every connection, one write
// each, in the request's goroutine.
func (s *floorServer) publish(w http.ResponseWriter, r *http.Request) {
	var items []struct {
		Channel string          `json:"channel"`
		ID      string          `json:"id"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&items); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		s.seq++
		// An envelope of the size marketcast sends.
		msg := fmt.Appendf(nil, `{"type":"signal","channel":%q,"strategy_id":%q,"sequence":%d,"epoch":"floor","timestamp":%q,"data":%s}`,
			it.Channel, it.ID, s.seq, time.Now().UTC().Format(time.RFC3339Nano), it.Data)
		f := frame.Text(msg)
		for _, c := range s.conns {
			_, _ = c.Write(f) // a reader that went away is dropped by its read loop
		}
	}
	_, _ = io.WriteString(w, `{"ok":true}`)
}

// FloorMain is mcbench -floor-server's body.
func FloorMain(addr string) {
	if err := ServeFloor(addr); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

package gateway_test

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric reads one sample of /metrics ("name" or `name{label="v"}`); a
// missing sample reads as 0.
func (ts *testServer) metric(name string) float64 {
	ts.t.Helper()
	return metricOf(ts.t, ts.http.URL, name)
}

func metricOf(t testing.TB, base, name string) float64 {
	t.Helper()
	_, body := httpGet(t, base+"/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return 0
}

// TestMalformedFramesCloseOnlyTheirConnection sends the frame-level attacks
// of the security test byte for byte: each closes its own connection with
// 1002 (protocol error), and the server, another client and the panic
// counter are unaffected.
func TestMalformedFramesCloseOnlyTheirConnection(t *testing.T) {
	ts := newTestServer(t, nil)
	bystander := ts.login("bystander")
	mask := []byte{1, 2, 3, 4}
	cases := []struct {
		name    string
		deflate bool
		bytes   []byte
	}{
		// A 64-bit length with the top bit set: gws v1.8.9 made it a
		// negative int and panicked, killing the process.
		{"negative length 0x8000000000000000", false, append([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, mask...)},
		{"negative length 0xffffffffffffffff", false, append([]byte{0x81, 0xFF, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mask...)},
		{"negative length with deflate", true, append([]byte{0xC1, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1}, mask...)},
		{"RSV2 with deflate", true, clientFrame(0xA1, []byte(`{"type":"ping"}`))},
		{"RSV3 with deflate", true, clientFrame(0x91, []byte(`{"type":"ping"}`))},
		{"RSV1 on a ping with deflate", true, clientFrame(0xC9, nil)},
		{"RSV1 on a continuation", true, append(clientFrame(0x01, []byte(`{"type":`)), clientFrame(0xC0, []byte(`"ping"}`))...)},
		{"RSV1 without deflate", false, clientFrame(0xC1, []byte(`{"type":"ping"}`))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.deflate {
				extra = append(extra, deflateOffer)
			}
			r := dialRaw(t, ts.ws, extra...)
			r.mustWrite(tc.bytes)
			code, err := r.closeCode(wait)
			if err != nil || code != 1002 {
				t.Fatalf("close %d, %v; want 1002", code, err)
			}
		})
	}
	mustSend(t, bystander, map[string]any{"type": "ping", "id": "still-here"})
	if m := mustType(t, bystander, "pong"); string(m.ID) != `"still-here"` {
		t.Fatalf("bystander got %s", m.Raw)
	}
	if n := ts.metric("marketcast_connection_panics_total"); n != 0 {
		t.Fatalf("%v read-loop panics; a malformed frame must be a protocol error, not a recovered panic", n)
	}
}

// FuzzReadPath feeds arbitrary bytes to a real server right after a real
// upgrade (with and without deflate): whatever they are, the server answers
// or closes that connection, never panics (the panic counter stays 0, so a
// recovered library bug fails too) and keeps serving others.
func FuzzReadPath(f *testing.F) {
	mask := []byte{1, 2, 3, 4}
	f.Add(false, append([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, mask...))
	f.Add(true, append([]byte{0xC1, 0xFF, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mask...))
	f.Add(false, textFrame(`{"type":"ping","id":1}`))
	f.Add(true, clientFrame(0xC1, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}))
	f.Add(true, clientFrame(0xC1, []byte{0xff, 0xff, 0xff}))
	f.Add(false, append(clientFrame(0x01, []byte(`{"ty`)), clientFrame(0x89, nil)...))
	f.Add(false, clientFrame(0x82, []byte(`{"type":"ping"}`)))
	f.Add(false, clientFrame(0x88, []byte{0x03}))
	f.Add(false, clientFrame(0x81, []byte{0xff, 0xfe}))
	f.Add(false, []byte{0x81, 0x7f, 0, 0, 0, 0, 0, 0x01, 0, 0, 1, 2, 3, 4})
	f.Add(false, []byte{0x81, 0x7e, 0xff})

	// One server for every input: its failure is what the fuzzer looks for.
	ts := newTestServer(f, nil)
	f.Fuzz(func(t *testing.T, deflate bool, b []byte) {
		var extra []string
		if deflate {
			extra = append(extra, deflateOffer)
		}
		r, _, err := tryDialRaw(ts.ws, extra...)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		defer r.c.Close()
		_ = r.write(b)
		// Read whatever comes until the server closes or goes quiet.
		for {
			if _, _, err := r.readFrame(50 * time.Millisecond); err != nil {
				break
			}
		}
		if n := metricOf(t, ts.http.URL, "marketcast_connection_panics_total"); n != 0 {
			t.Fatalf("input % x: %v read-loop panics", b, n)
		}
	})
}

package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketcast/marketcast/internal/testlane"
	"github.com/marketcast/marketcast/internal/testwait"
)

// TestMakeRunStops runs `make run` as a person does and stops it both ways
// a person does: Ctrl-C (SIGINT to the terminal's process group) and a
// SIGTERM to make alone. Either way the server itself gets the signal,
// drains and says it stopped, make reports no error, and nothing is left
// listening (with `go run` the binary was orphaned by a SIGTERM to make and
// Ctrl-C ended in "make: *** Error 1").
func TestMakeRunStops(t *testing.T) {
	testlane.MultiProcess(t)
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, _ := filepath.Abs("../..")
	for _, how := range []string{"ctrl-c", "sigterm-to-make"} {
		t.Run(how, func(t *testing.T) {
			addr := freePort(t)
			cmd := exec.Command("make", "--no-print-directory", "run")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "MARKETCAST_LISTEN="+addr)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as a terminal gives it
			// A pipe of our own, not StderrPipe: Wait closes that one as soon
			// as make exits, and on Ctrl-C make exits at once while the server
			// (which shares the pipe) is still draining; this one ends when
			// the last writer, the server, is gone.
			stderr, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stderr.Close()
			cmd.Stderr = w
			err = cmd.Start()
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
			var logs strings.Builder
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				logs.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "marketcast listening") {
					break
				}
			}
			rest := make(chan string, 1)
			go func() {
				var b strings.Builder
				for sc.Scan() {
					b.WriteString(sc.Text() + "\n")
				}
				rest <- b.String()
			}()
			waitReady(t, addr)
			if how == "ctrl-c" {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			} else {
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(testwait.Deadline):
				t.Fatalf("make run did not stop\n%s", logs.String())
			}
			after := <-rest
			// The server drained and said so; make reported no failure (on
			// Ctrl-C make ends by the signal, as it always does, silently).
			if !strings.Contains(after, `msg=stopped`) || strings.Contains(after, "make: ***") {
				t.Fatalf("after %s:\n%s", how, after)
			}
			testwait.For(t, "nothing listening once make run stopped", func() bool {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return true // the server is gone
				}
				c.Close()
				return false
			})
		})
	}
}

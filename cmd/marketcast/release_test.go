package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/marketcast/marketcast/internal/testlane"
)

// makeRelease runs `make release` into dir with the given stamp, as a
// release manager would, and returns SHA256SUMS.
func makeRelease(t *testing.T, dir string, stamp ...string) string {
	t.Helper()
	root, _ := filepath.Abs("../..")
	cmd := exec.Command("make", append([]string{"-s", "--no-print-directory", "release", "DIST=" + dir}, stamp...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	return string(sums)
}

// TestRelease: `make release` builds static linux/amd64 and linux/arm64
// binaries with their checksums, stamped with version, commit and date,
// and building the same commit again gives the same bytes. The first run
// on a machine cross-compiles everything for arm64 (minutes on two busy
// cores); -short skips it.
func TestRelease(t *testing.T) {
	testlane.MultiProcess(t) // make, and go build for two platforms
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	stamp := []string{"VERSION=v9.8.7-test", "COMMIT=0123456789abcdef0123456789abcdef01234567", "DATE=2026-01-02T03:04:05+08:00"}
	dir := t.TempDir()
	sums := makeRelease(t, dir, stamp...)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for arch, machine := range machines {
		name := "marketcast-v9.8.7-test-linux-" + arch
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if !strings.Contains(sums, hex.EncodeToString(sum[:])+"  "+name+"\n") {
			t.Fatalf("SHA256SUMS does not hold %s's checksum:\n%s", name, sums)
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Fatalf("%s is for %v", name, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Fatalf("%s is dynamically linked (%v): it would not run on scratch or distroless/static", name, p.Type)
			}
		}
		info, err := exec.Command("go", "version", "-m", filepath.Join(dir, name)).CombinedOutput()
		if err != nil || !strings.Contains(string(info), "CGO_ENABLED=0") || !strings.Contains(string(info), "-trimpath=true") {
			t.Fatalf("%s: built without CGO_ENABLED=0 -trimpath: %v\n%s", name, err, info)
		}
		if arch == runtime.GOARCH {
			out, err := exec.Command(filepath.Join(dir, name), "version").CombinedOutput()
			want := "marketcast v9.8.7-test (commit 0123456789abcdef0123456789abcdef01234567, built 2026-01-02T03:04:05+08:00, "
			if err != nil || !strings.HasPrefix(string(out), want) {
				t.Fatalf("%s version: %v %q; want %q...", name, err, out, want)
			}
		}
	}
	if again := makeRelease(t, t.TempDir(), stamp...); again != sums {
		t.Fatalf("the same commit built twice differs:\n%s\n%s", sums, again)
	}
}

// TestLicenseAgrees: the root LICENSE is the MIT license the JavaScript
// client's package.json declares.
func TestLicenseAgrees(t *testing.T) {
	license, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.ReadFile("../../clients/js/package.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(license), "MIT License\n") || !strings.Contains(string(pkg), `"license": "MIT"`) {
		t.Fatalf("LICENSE and clients/js/package.json disagree")
	}
}

package main

import (
	"bufio"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testlane"
	"github.com/marketcast/marketcast/internal/testwait"
)

// dockerfileStages returns the Dockerfile's build stage and final stage.
func dockerfileStages(t *testing.T) (build, final string) {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := regexp.MustCompile(`(?m)^FROM `).Split(string(b), -1)
	if len(stages) != 3 {
		t.Fatalf("the Dockerfile has %d stages; want a build stage and a final one", len(stages)-1)
	}
	return stages[1], stages[2]
}

// imageEnv is the final stage's ENV: the environment the image's binary
// starts with.
func imageEnv(t *testing.T, final string) map[string]string {
	t.Helper()
	_, block, ok := strings.Cut(final, "\nENV ")
	if !ok {
		t.Fatal("the final stage sets no ENV")
	}
	block, _, _ = strings.Cut(block, "\nEXPOSE")
	env := map[string]string{}
	for _, kv := range regexp.MustCompile(`([A-Z_]+)=(\S+)`).FindAllStringSubmatch(block, -1) {
		env[kv[1]] = kv[2]
	}
	return env
}

// TestImageTree is the container image tested without a container runtime
// (none runs on this machine): the image's file tree is built as the
// Dockerfile builds it (the same go build flags, the same deploy/rootfs.sh),
// and the binary is started from that tree alone — chroot into it, as the
// unprivileged user 65532, with the image's environment and a /proc of its
// own — then probed as the HEALTHCHECK and a load balancer would.
func TestImageTree(t *testing.T) {
	testlane.MultiProcess(t) // go build, unshare, chroot, the server
	if os.Geteuid() != 0 {
		t.Skip("chroot and a mount namespace need root")
	}
	unshare, err1 := exec.LookPath("unshare")
	chroot, err2 := exec.LookPath("chroot")
	mount, err3 := exec.LookPath("mount")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Skip("needs unshare, chroot and mount (util-linux, coreutils)")
	}
	build, final := dockerfileStages(t)
	for _, want := range []string{"CGO_ENABLED=0 go build -trimpath -buildvcs=false", "sh deploy/rootfs.sh /out/marketcast /rootfs"} {
		if !strings.Contains(build, want) {
			t.Fatalf("the build stage no longer runs %q: update this test with it", want)
		}
	}
	for _, want := range []string{"scratch\n", "COPY --from=build /rootfs /\n", "USER 65532:65532\n", "EXPOSE 8000 9090\n",
		`CMD ["/usr/local/bin/marketcast", "healthcheck"]`, `ENTRYPOINT ["/usr/local/bin/marketcast"]`, `CMD ["serve"]`} {
		if !strings.Contains(final, want) {
			t.Fatalf("the final stage lacks %q", want)
		}
	}
	env := imageEnv(t, final)
	for name := range env {
		if !configs.KnownEnv(name) {
			t.Fatalf("the image sets %s, which no configuration key reads", name)
		}
	}

	// The tree, as the build stage makes it.
	dir := t.TempDir()
	bin, root := filepath.Join(dir, "marketcast"), filepath.Join(dir, "rootfs")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command("sh", "../../deploy/rootfs.sh", bin, root).CombinedOutput(); err != nil {
		t.Fatalf("rootfs.sh: %v\n%s", err, out)
	}
	var tree []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if rel, _ := filepath.Rel(root, path); rel != "." && !d.IsDir() {
			tree = append(tree, rel)
		}
		return err
	})
	want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "usr/local/bin/marketcast"}
	if !slices.Equal(tree, want) {
		t.Fatalf("the image holds %v; want %v", tree, want)
	}

	// Started from the tree alone. The container's :8000 and :9090 are in
	// a network of its own; here they are loopback ports, free ones.
	addr, ops := freePort(t), freePort(t)
	env["MARKETCAST_LISTEN"], env["MARKETCAST_OPS_LISTEN"] = addr, ops
	env["MARKETCAST_JWT_SECRET"] = "image-tree-secret-0123456789"
	env["MARKETCAST_FEED"] = "sim"
	env["TZ"] = "Asia/Shanghai" // the binary carries the zone database; the tree has none
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	inTree := func(args ...string) *exec.Cmd {
		c := exec.Command(chroot, append([]string{"--userspec=65532:65532", root, "/usr/local/bin/marketcast"}, args...)...)
		c.Env = environ
		return c
	}
	srv := exec.Command(unshare, "--mount", "--pid", "--fork", "--kill-child", "sh", "-c",
		`"$1" -t proc proc "$2/proc" && exec "$3" --userspec=65532:65532 "$2" /usr/local/bin/marketcast serve`, "sh", mount, root, chroot)
	srv.Env = environ
	stderr, _ := srv.StderrPipe()
	logs := &lockedbuf.Buffer{}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
		}
	}()
	testwait.Check(t, func() error {
		res, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return &statusError{res.Status, logs.String()}
		}
		return nil
	})

	// The image's HEALTHCHECK, run in the tree with the image's environment.
	if out, err := inTree("healthcheck").CombinedOutput(); err != nil || !strings.Contains(string(out), "http://"+ops+"/healthz: 200 OK") {
		t.Fatalf("healthcheck: %v\n%s", err, out)
	}
	if out, err := inTree("healthcheck", "-ready").CombinedOutput(); err != nil || !strings.Contains(string(out), "/readyz: 200 OK") {
		t.Fatalf("healthcheck -ready: %v\n%s", err, out)
	}

	// It runs as 65532, in JSON, in Shanghai time.
	unsharePid := strconv.Itoa(srv.Process.Pid)
	children, err := os.ReadFile("/proc/" + unsharePid + "/task/" + unsharePid + "/children")
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(string(children))
	if len(pid) != 1 {
		t.Fatalf("unshare has children %q", children)
	}
	status, err := os.ReadFile("/proc/" + pid[0] + "/status")
	if err != nil || !regexp.MustCompile(`(?m)^Uid:\s+65532\s+65532\s+65532\s+65532$`).Match(status) {
		t.Fatalf("the server does not run as 65532: %v\n%s", err, status)
	}
	if !regexp.MustCompile(`"time":"[0-9T:.-]+\+08:00","level":"INFO","msg":"marketcast listening"`).MatchString(logs.String()) {
		t.Fatalf("not a JSON log in Shanghai time:\n%s", logs.String())
	}

	// SIGTERM (PID 1 of its namespace, as in a container): a clean exit.
	n, _ := strconv.Atoi(pid[0])
	if err := syscall.Kill(n, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop:\n%s", logs.String())
	}
}

type statusError struct{ status, logs string }

func (e *statusError) Error() string { return "/readyz " + e.status + "\n" + e.logs }

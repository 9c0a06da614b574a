package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/marketcast/marketcast/bench/wsclient"
	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/internal/lockedbuf"
	"github.com/marketcast/marketcast/internal/testwait"
)

const deployDir = "../../deploy"

// metricNames are the metric names a PromQL text uses (histogram series
// named by their family).
func metricNames(expr string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`\b((?:marketcast|process|go)_[a-z0-9_]+)`).FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok && (base == "marketcast_publish_to_flush_seconds" || base == "marketcast_flush_batch_frames") {
				m = base
			}
		}
		names = append(names, m)
	}
	return names
}

// TestAlertsAndDashboardNameRealMetrics: every metric the alert rules and
// the Grafana dashboard use is one a real server serves (a renamed metric
// would silently blank a panel or mute an alert), every alert is explained
// in docs/OPERATIONS.md, and promtool, where installed, checks the rules,
// runs their unit tests and checks the Prometheus configuration.
func TestAlertsAndDashboardNameRealMetrics(t *testing.T) {
	families := scrape(t, metricsNode(t).addr)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "prometheus/marketcast-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			exprs = append(exprs, r.Expr)
			if !strings.Contains(string(ops), "#### "+r.Alert+"\n") {
				t.Errorf("docs/OPERATIONS.md does not explain the alert %s (a '#### %s' section)", r.Alert, r.Alert)
			}
		}
	}
	for _, want := range []string{"MarketcastSlowConsumers", "MarketcastFeedOverflow", "MarketcastNATSDisconnected",
		"MarketcastPublishErrors", "MarketcastDeliveryLatencyHigh", "MarketcastConnectionsNearLimit"} {
		if !strings.Contains(string(b), "alert: "+want+"\n") {
			t.Errorf("no alert %s", want)
		}
	}

	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err = os.ReadFile(filepath.Join(deployDir, "grafana/marketcast.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	panels := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			panels++
			exprs = append(exprs, target.Expr)
		}
	}
	if alerts < 9 || panels < 20 {
		t.Fatalf("%d alerts, %d dashboard queries", alerts, panels)
	}
	for _, e := range exprs {
		for _, name := range metricNames(e) {
			if families[name] == nil {
				t.Errorf("%q uses %s, which the server does not serve", e, name)
			}
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed (apt-get install prometheus): rules and configuration checked by parsing only")
		return
	}
	for _, args := range [][]string{{"check", "rules", "marketcast-alerts.yaml"}, {"test", "rules", "marketcast-alerts.test.yaml"},
		{"check", "config", "prometheus.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join(deployDir, "prometheus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// unitSettings reads a systemd unit's Key=Value lines.
func unitSettings(text string) map[string][]string {
	s := map[string][]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			s[k] = append(s[k], v)
		}
	}
	return s
}

// TestSystemdUnit: the unit is hardened as promised, gives the drain the
// time it needs, sets only variables that exist, and systemd itself
// accepts it (systemd-analyze verify, with ExecStart pointed at a real
// binary, since verify checks it exists) and rates its exposure "OK".
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "systemd/marketcast.service"))
	if err != nil {
		t.Fatal(err)
	}
	s := unitSettings(string(b))
	for k, want := range map[string]string{"DynamicUser": "yes", "ProtectSystem": "strict", "LimitNOFILE": "1048576",
		"Restart": "on-failure", "ExecReload": "/bin/kill -HUP $MAINPID", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
		"ExecStart": "/usr/local/bin/marketcast serve -config /etc/marketcast/marketcast.yaml", "StateDirectory": "marketcast"} {
		if !slices.Contains(s[k], want) {
			t.Errorf("%s=%v; want %q", k, s[k], want)
		}
	}
	env := map[string]string{}
	for _, line := range s["Environment"] {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			if !configs.KnownEnv(k) {
				t.Errorf("the unit sets %s, which no configuration key reads", k)
			}
			env[k] = v
		}
	}
	stop, _ := time.ParseDuration(s["TimeoutStopSec"][0])
	unready, _ := time.ParseDuration(env["MARKETCAST_SHUTDOWN_UNREADY_DELAY"])
	if stop < unready+configs.Default().Shutdown.Grace.Duration+5*time.Second {
		t.Errorf("TimeoutStopSec=%v leaves the drain (unready %v + grace %v) no room", stop, unready, configs.Default().Shutdown.Grace.Duration)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian's systemd package)")
	}
	unit := filepath.Join(t.TempDir(), "marketcast.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/marketcast"), []byte(binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=true", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for marketcast.service: (\d+\.\d+) (\w+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2 || string(m[2]) != "OK" {
		t.Fatalf("exposure %s %s; the unit promised OK (<= 2)", m[1], m[2])
	}
}

// TestSIGHUPReloadsCertificate: `systemctl reload` (SIGHUP) makes the
// binary load a replaced certificate at once (not at the next handshake's
// check) and serve it, and does not end the process.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, "first")
	st, err := os.Stat(certFile)
	if err != nil {
		t.Fatal(err)
	}
	// Started by hand: startBinary waits for /readyz over plain HTTP, which
	// a TLS listener does not speak; the ops listener does.
	addr, ops := freePort(t), freePort(t)
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "MARKETCAST_LISTEN="+addr, "MARKETCAST_OPS_LISTEN="+ops, "MARKETCAST_TLS_CERT="+certFile,
		"MARKETCAST_TLS_KEY="+keyFile, "MARKETCAST_DEV_MODE=false", "MARKETCAST_JWT_SECRET=sighup-test-secret-0123456789", "MARKETCAST_FEED=none")
	p := &binaryProc{cmd: cmd, logs: &lockedbuf.Buffer{}, addr: addr}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitReady(t, ops)
	dial := func(pool *x509.CertPool) error {
		c, _, err := wsclient.Dial("wss://"+addr+"/ws", wsclient.Options{TLS: &tls.Config{RootCAs: pool}})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(first); err != nil {
		t.Fatal(err)
	}
	second := writeCert(t, certFile, keyFile, "second")
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the reload after SIGHUP", func() bool { return strings.Contains(p.logs.String(), "SIGHUP: tls certificate reloaded") })
	if err := dial(second); err != nil {
		t.Fatalf("the new certificate after SIGHUP: %v\n%s", err, p.logs.String())
	}
	p.stop(t)
}

// TestComposeFile: NATS, three nodes and the feed, from the repository's
// Dockerfile, with variables that exist.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Build       struct{ Context, Dockerfile string }
			Image       string
			Command     []string
			Environment map[string]string
			Ports       []string
		}
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, svc := range compose.Services {
		names = append(names, name)
		for k := range svc.Environment {
			if !configs.KnownEnv(k) {
				t.Errorf("%s sets %s, which no configuration key reads", name, k)
			}
		}
		if svc.Image != "marketcast:local" {
			t.Errorf("%s runs %q; want the image built from the Dockerfile", name, svc.Image)
		}
		if svc.Build.Context != "" {
			if _, err := os.Stat(filepath.Join(deployDir, svc.Build.Context, svc.Build.Dockerfile)); err != nil {
				t.Errorf("%s builds from %s/%s: %v", name, svc.Build.Context, svc.Build.Dockerfile, err)
			}
		}
		if strings.HasPrefix(name, "node") {
			if svc.Environment["MARKETCAST_NATS_URL"] != "nats://nats:4222" || svc.Environment["MARKETCAST_FEED"] != "nats" ||
				len(svc.Ports) != 2 || !strings.HasSuffix(svc.Ports[0], ":8000") || !strings.HasSuffix(svc.Ports[1], ":9090") {
				t.Errorf("%s: %+v", name, svc)
			}
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"feed", "nats", "node1", "node2", "node3"}) {
		t.Fatalf("services %v", names)
	}
	if c := compose.Services["nats"].Command; len(c) == 0 || c[0] != "nats" || compose.Services["feed"].Command[0] != "feed" {
		t.Fatalf("nats runs %v, feed runs %v", c, compose.Services["feed"].Command)
	}
}

type probe struct {
	HTTPGet struct {
		Path string
		Port string
	} `yaml:"httpGet"`
}

// k8sObject is the part of a manifest the checks below read.
type k8sObject struct {
	Kind     string
	Metadata struct {
		Name        string
		Labels      map[string]string
		Annotations map[string]string
	}
	Spec struct {
		Replicas       int
		MaxUnavailable any              `yaml:"maxUnavailable"`
		Selector       yaml.MapSlice    `yaml:"selector"`
		Ports          []map[string]any `yaml:"ports"`
		Template       struct {
			Metadata struct {
				Labels      map[string]string
				Annotations map[string]string
			}
			Spec struct {
				EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
				TerminationGracePeriodSeconds int   `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []struct {
					Args  []string
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
					}
					Env []struct {
						Name  string
						Value string
					}
					ReadinessProbe probe `yaml:"readinessProbe"`
					LivenessProbe  probe `yaml:"livenessProbe"`
					Lifecycle      struct {
						PreStop struct {
							Sleep struct{ Seconds int }
						} `yaml:"preStop"`
					}
				}
			}
		}
	}
}

// TestKubernetesManifests parses deploy/k8s/marketcast.yaml and checks
// what a schema cannot: the probes point at /readyz and /healthz on ports
// that exist, the preStop sleep, unready delay and grace fit in the
// termination grace period, selectors match the pods, the scrape
// annotation names the ops port, the user is the image's, and every
// variable exists. Where kubectl-validate is installed (make check-deploy
// installs it), the manifests are validated against Kubernetes 1.30's own
// schemas too.
func TestKubernetesManifests(t *testing.T) {
	file := filepath.Join(deployDir, "k8s/marketcast.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]k8sObject{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	dep, ok := objs["Deployment/marketcast"]
	if !ok || objs["Service/marketcast"].Kind == "" || objs["Service/marketcast-ops"].Kind == "" || objs["PodDisruptionBudget/marketcast"].Kind == "" {
		t.Fatalf("want a Deployment, two Services and a PodDisruptionBudget: %v", slices.Collect(maps.Keys(objs)))
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 || dep.Spec.Replicas < 3 {
		t.Fatalf("%d containers, %d replicas", len(pod.Containers), dep.Spec.Replicas)
	}
	c := pod.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if !configs.KnownEnv(e.Name) {
			t.Errorf("the pod sets %s, which no configuration key reads", e.Name)
		}
		env[e.Name] = e.Value
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		ports[c.ReadinessProbe.HTTPGet.Port] == 0 || ports[c.LivenessProbe.HTTPGet.Port] == 0 {
		t.Errorf("probes %+v %+v on ports %v", c.ReadinessProbe, c.LivenessProbe, ports)
	}
	image := imageEnv(t, func() string { _, f := dockerfileStages(t); return f }())
	if listen := image["MARKETCAST_LISTEN"]; listen != ":"+strconv.Itoa(ports["ws"]) || image["MARKETCAST_OPS_LISTEN"] != ":"+strconv.Itoa(ports["ops"]) {
		t.Errorf("container ports %v; the image listens on %s and %s", ports, listen, image["MARKETCAST_OPS_LISTEN"])
	}
	unready, _ := time.ParseDuration(env["MARKETCAST_SHUTDOWN_UNREADY_DELAY"])
	grace, _ := time.ParseDuration(env["MARKETCAST_SHUTDOWN_GRACE"])
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop == 0 || unready == 0 || time.Duration(pod.TerminationGracePeriodSeconds)*time.Second < preStop+unready+grace+5*time.Second {
		t.Errorf("preStop %v + unready %v + grace %v do not fit terminationGracePeriodSeconds %d with room", preStop, unready, grace, pod.TerminationGracePeriodSeconds)
	}
	if !pod.SecurityContext.RunAsNonRoot || pod.SecurityContext.RunAsUser != 65532 || pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("pod security %+v, service links %v", pod.SecurityContext, pod.EnableServiceLinks)
	}
	if a := dep.Spec.Template.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(ports["ops"]) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", a)
	}
	labels := dep.Spec.Template.Metadata.Labels
	for name, o := range objs {
		sel := map[string]string{}
		for _, item := range o.Spec.Selector {
			if item.Key == "matchLabels" {
				for k, v := range item.Value.(map[string]any) {
					sel[k] = v.(string)
				}
			} else {
				sel[item.Key.(string)] = item.Value.(string)
			}
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s; the pods are labelled %v", name, k, v, labels)
			}
		}
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", name)
		}
	}

	validate, err := exec.LookPath("kubectl-validate")
	if err != nil {
		validate, err = exec.LookPath("../../bin/kubectl-validate")
	}
	if err != nil {
		t.Log("kubectl-validate is not installed (make check-deploy installs it): the manifests were checked by parsing only")
		return
	}
	if out, err := exec.Command(validate, "--version", "1.30", file).CombinedOutput(); err != nil {
		t.Fatalf("kubectl-validate: %v\n%s", err, out)
	}
}

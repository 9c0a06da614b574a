# marketcast — the two commands that matter: `make run` and `make test`.
GO ?= go

# What `marketcast version` and marketcast_build_info say (internal/buildinfo).
# The date is the commit's, not the clock's, so building a commit again gives
# the same bytes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
BUILDINFO := github.com/marketcast/marketcast/internal/buildinfo
LDFLAGS := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(DATE)
# Static (no cgo: Go's own DNS resolver; runs on scratch, distroless, any
# glibc or musl) and reproducible (no local paths, no VCS stamp of its own).
STATIC_BUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false

.PHONY: run test setup vet tidy test-go test-js test-python test-browser test-quick test-soak test-busy chaos build bench fuzz cluster screenshot clean release check-deploy FORCE

## run: build, then start the server with the embedded default config and the
## simulator. The binary replaces make's shell, so Ctrl-C or a SIGTERM to make
## reaches the server itself, which drains and exits cleanly.
run: bin/marketcast
	@exec ./bin/marketcast

## test: every test: go vet, go.mod tidy, go test -race, the JavaScript and Python
## clients against the real binary (Node's test runner, pytest), and the demo page
## in headless Chromium. Installs what it needs first (setup). Soaks are not in it
## (test-soak).
test: setup vet tidy test-go test-js test-python test-browser

## setup: Node, Debian's chromium and a CJK font, the tests' npm packages:
## installed when missing (as root or with sudo), else the command to run
setup:
	@bash web/test/setup.sh

vet:
	$(GO) vet ./...

## tidy: go.mod and go.sum are exactly what the imports need
tidy:
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod is not tidy: run go mod tidy (go mod tidy -diff shows what changes)" >&2; exit 1; }

# GOTESTFLAGS: extra flags for test-go (test-busy passes -count=3).
GOTESTFLAGS ?= -count=1

test-go:
	$(GO) test -race -timeout 30m $(GOTESTFLAGS) ./...

## test-quick: the Go tests without those that start several processes
test-quick:
	$(GO) test -short ./...

## chaos: the long fault run of the cluster (docs/CLUSTER.md): real nats-server
## processes (one, then a JetStream cluster of three with R3) and three nodes,
## five rounds of kills, stops and restarts; prints its figures. ~5 minutes
chaos:
	MARKETCAST_SOAK=1 $(GO) test -count=1 -timeout 60m -run 'TestChaos' -v ./internal/chaos/

## test-soak: the long tests (fault runs, thousands of sockets) too; see internal/testlane
test-soak:
	MARKETCAST_SOAK=1 $(GO) test -race -timeout 60m -count=1 ./...

## test-busy: make test three runs in a row with every core kept busy by
## stress-ng, Go packages with -count=3 (README says how long it takes)
test-busy:
	bash .ci/busy

test-js: bin/marketcast
	cd clients/js && node --experimental-websocket --test --test-concurrency=1 test/

## test-python: the Python client (clients/python) against the real binary, with
## Debian's python3 and its python3-pytest and python3-websockets (setup installs
## them); no bytecode or pytest cache is left in the tree
PYTHON ?= /usr/bin/python3
test-python: bin/marketcast
	cd clients/python && PYTHONDONTWRITEBYTECODE=1 $(PYTHON) -m pytest -p no:cacheprovider -q tests

test-browser: bin/marketcast
	cd web && node --test --test-concurrency=1 test/

## screenshot: refresh the README's picture of the demo terminal
screenshot: setup bin/marketcast
	cd web && MARKETCAST_SCREENSHOT=$(CURDIR)/docs/screenshot.png node --test test/

bin/marketcast: FORCE
	@test -x bin/marketcast || echo "building bin/marketcast: the first build downloads the Go modules and compiles them (about a minute); later ones take seconds"
	@$(STATIC_BUILD) -ldflags '$(LDFLAGS)' -o bin/marketcast ./cmd/marketcast

FORCE:

## build: binaries into bin/
build:
	$(STATIC_BUILD) -ldflags '$(LDFLAGS)' -o bin/marketcast ./cmd/marketcast
	$(GO) build -o bin/mcbench ./cmd/mcbench

## cluster: NATS with JetStream, three nodes (8001-8003) and one feed, on loopback
cluster:
	bash examples/cluster/run.sh

## bench: the benchmark set of BENCHMARKS.md (go test -bench, then load scenarios vs Centrifugo); ~25 min
bench:
	bash bench/run.sh

## fuzz: each fuzz target for FUZZTIME (default 60s): the request decoder, the
## whole read path (raw bytes after a real upgrade), projection (frame.Project
## and skipValue) and the publish validator. Their seed corpora also run as
## ordinary tests in `make test`.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeRequest -fuzztime $(FUZZTIME) ./engine/gateway/
	$(GO) test -run XXX -fuzz FuzzReadPath -fuzztime $(FUZZTIME) -fuzzminimizetime 0 ./engine/gateway/
	$(GO) test -run XXX -fuzz FuzzProject -fuzztime $(FUZZTIME) ./engine/frame/
	$(GO) test -run XXX -fuzz FuzzValidate -fuzztime $(FUZZTIME) ./protocol/

## release: static linux/amd64 and linux/arm64 binaries, stripped, version
## stamped, with their SHA-256 checksums, in dist/ (git ignores it)
DIST ?= dist
release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	for arch in amd64 arm64; do \
		GOOS=linux GOARCH=$$arch $(STATIC_BUILD) -ldflags '-s -w $(LDFLAGS)' \
			-o $(DIST)/marketcast-$(VERSION)-linux-$$arch ./cmd/marketcast || exit 1; \
	done
	cd $(DIST) && sha256sum marketcast-* > SHA256SUMS && cat SHA256SUMS

## check-deploy: check deploy/ with the tools that know each format: promtool
## (the alert rules, their unit tests, the Prometheus configuration; Debian's
## prometheus package), systemd-analyze (the unit; Debian's systemd) and
## kubectl-validate (the manifests against Kubernetes 1.30's schemas; built
## from the Go module proxy into bin/ on first use, a few minutes). The Go
## tests run the same checks wherever the tools are installed.
KUBECTL_VALIDATE := bin/kubectl-validate
check-deploy: bin/marketcast
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install --no-install-recommends prometheus"; exit 1; }
	cd deploy/prometheus && promtool check rules marketcast-alerts.yaml && \
		promtool test rules marketcast-alerts.test.yaml && promtool check config prometheus.yml
	@command -v systemd-analyze >/dev/null || { echo "systemd-analyze missing: apt-get install systemd"; exit 1; }
	sed 's#/usr/local/bin/marketcast#$(CURDIR)/bin/marketcast#' deploy/systemd/marketcast.service > bin/marketcast.service
	systemd-analyze verify bin/marketcast.service
	systemd-analyze security --offline=true bin/marketcast.service | tail -1
	test -x $(KUBECTL_VALIDATE) || GOBIN=$(CURDIR)/bin GOFLAGS=-mod=mod $(GO) install sigs.k8s.io/kubectl-validate@v0.0.4
	$(KUBECTL_VALIDATE) --version 1.30 deploy/k8s/marketcast.yaml

clean:
	rm -rf bin dist

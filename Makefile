# marketcast — the two commands that matter: `make run` and `make test`.
GO ?= go

.PHONY: run test vet test-go test-js test-browser build bench fuzz cluster clean FORCE

## run: start the server with the embedded default config and the simulator
run:
	$(GO) run ./cmd/marketcast

## test: every test: go vet, go test -race, the JavaScript client against the real
## binary (Node's test runner), and the demo page in headless Chromium
test: vet test-go test-js test-browser

vet:
	$(GO) vet ./...

test-go:
	$(GO) test -race -count=1 ./...

test-js: bin/marketcast
	cd clients/js && node --experimental-websocket --test --test-concurrency=1 test/

test-browser: bin/marketcast web/node_modules
	cd web && node --test --test-concurrency=1 test/

web/node_modules: web/package.json
	cd web && npm install --no-audit --no-fund
	touch web/node_modules

bin/marketcast: FORCE
	$(GO) build -o bin/marketcast ./cmd/marketcast

FORCE:

## build: binaries into bin/
build:
	$(GO) build -o bin/marketcast ./cmd/marketcast
	$(GO) build -o bin/mcbench ./cmd/mcbench

## cluster: NATS with JetStream, three nodes (8001-8003) and one feed, on loopback
cluster:
	bash examples/cluster/run.sh

## bench: the benchmark set of BENCHMARKS.md (go test -bench, then load scenarios vs Centrifugo); < 15 min
bench:
	bash bench/run.sh

## fuzz: fuzz the client request decoder, then the whole read path (raw bytes
## after a real upgrade), a minute each
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeRequest -fuzztime 60s ./engine/gateway/
	$(GO) test -run XXX -fuzz FuzzReadPath -fuzztime 60s -fuzzminimizetime 0 ./engine/gateway/

clean:
	rm -rf bin

# marketcast — the two commands that matter: `make run` and `make test`.
GO ?= go

.PHONY: run test vet test-go build bench fuzz clean

## run: start the server with the embedded default config and the simulator
run:
	$(GO) run ./cmd/marketcast

## test: every test (vet, then go test -race)
test: vet test-go

vet:
	$(GO) vet ./...

test-go:
	$(GO) test -race -count=1 ./...

## build: binaries into bin/
build:
	$(GO) build -o bin/marketcast ./cmd/marketcast
	$(GO) build -o bin/mcbench ./cmd/mcbench

## bench: the benchmark set of BENCHMARKS.md (go test -bench, then load scenarios vs Centrifugo); < 15 min
bench:
	bash bench/run.sh

## fuzz: fuzz the client request decoder for a minute
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeRequest -fuzztime 60s ./engine/gateway/

clean:
	rm -rf bin

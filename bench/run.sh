#!/usr/bin/env bash
# The benchmark set behind BENCHMARKS.md: go test -bench suites, then every
# load scenario, marketcast and Centrifugo side by side where the issue asks.
# Under 15 minutes on a 2-core machine. Results go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
go build -o bin/marketcast ./cmd/marketcast
go build -o bin/mcbench ./cmd/mcbench
bash bench/centrifugo.sh

echo "== go test -bench (hot path)"
go test -run XXX -bench . -benchtime 3000x ./bench/ | tee "$out/gobench.txt"

run() { echo "== mcbench $*"; ./bin/mcbench "$@" | tee -a "$out/load.txt"; }
: > "$out/load.txt"
run -scenario fanout -target marketcast -rates 30,60,100,200,400,800,1600 -p99-limit 1000
run -scenario fanout -target centrifugo -rates 30,60,100,200,400 -p99-limit 1000
run -scenario fanout -target marketcast -channel tick -rates 100,400,1600 -p99-limit 1000
run -scenario memory -target marketcast -conns 19000
run -scenario memory -target centrifugo -conns 19000
run -scenario slow -target marketcast -subs 1000 -rates 100 -duration 10s
run -scenario private -target marketcast -users 10000 -rates 5000 -duration 15s
run -scenario fleet -conns 10000 -symbols 500 -duration 15s
run -scenario fleet -conns 10000 -symbols 500 -duration 15s -deflate -server-config "$(printf 'delivery:\n  deflate_threshold: 128')"

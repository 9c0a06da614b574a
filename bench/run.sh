#!/usr/bin/env bash
# The benchmark set behind BENCHMARKS.md: go test -bench suites, then every
# load scenario. Comparisons with Centrifugo run both servers at the same
# rates in the same run, interleaved, every point twice (two rounds), so each
# number comes with its spread. About 25 minutes on a 2-core machine.
# Results go to bench/results/ (raw output: load.txt; one line per point).
#
#   bench/run.sh [-cpus N]   N cores for the server (default 1), the rest for the load generator
set -euo pipefail
cd "$(dirname "$0")/.."
cpus=1
if [ "${1:-}" = "-cpus" ]; then cpus=$2; fi
out=bench/results
mkdir -p "$out"
go build -o bin/marketcast ./cmd/marketcast
go build -o bin/mcbench ./cmd/mcbench
bash bench/centrifugo.sh

echo "== go test -bench (hot path)"
go test -run XXX -bench . -benchtime 3000x ./bench/ | tee "$out/gobench.txt"

run() { echo "== mcbench $*"; ./bin/mcbench -cpus "$cpus" "$@" | tee -a "$out/load.txt" || echo "FAILED: mcbench $*" | tee -a "$out/load.txt"; sleep 5; }
: > "$out/load.txt"
rates=30,100,200,400,800,1600
for round in 1 2; do
  run -scenario fanout -target marketcast -rates "$rates" -p99-limit 100000
  run -scenario fanout -target centrifugo -rates "$rates" -p99-limit 100000
  run -scenario fanout -target marketcast -rates 100,800 -p99-limit 100000 -name flush0 \
    -server-config "$(printf 'delivery:\n  flush_delay: 0s')"
  run -scenario fanout -target marketcast -rates 100,800 -p99-limit 100000 -name unsent0 \
    -server-config "$(printf 'delivery:\n  max_unsent_bytes: 0')"
done
for round in 1 2; do
  run -scenario memory -target marketcast -conns 19000
  run -scenario memory -target centrifugo -conns 19000
  run -scenario memory -target centrifugo-tuned -conns 19000
done
for round in 1 2; do
  run -scenario storm -target marketcast -conns 10000
  run -scenario storm -target centrifugo -conns 10000
  run -scenario storm -target marketcast -conns 10000 -concurrency 16
  run -scenario storm -target centrifugo -conns 10000 -concurrency 16
done
for round in 1 2; do
  run -scenario fanout -target marketcast -channel tick -rates 100,400,1600 -p99-limit 100000
  run -scenario slow -target marketcast -subs 1000 -rates 100 -duration 10s
  run -scenario private -target marketcast -users 10000 -rates 5000 -duration 15s
done
for round in 1 2; do
  run -scenario fleet -conns 10000 -symbols 500 -duration 15s
  run -scenario fleet -conns 10000 -symbols 500 -duration 15s -deflate -server-config "$(printf 'delivery:\n  deflate_threshold: 128')"
  run -scenario ingest -symbols 500 -subs 500 -rates 2000,5000,10000,20000
done
for round in 1 2; do
  run -scenario cluster -nodes 3
done

#!/usr/bin/env bash
# A marketcast cluster on one machine, to see one work: a NATS server with
# JetStream, three nodes, and one feed (the simulator) publishing market data
# for all of them. Everything runs from the one binary, on loopback; Ctrl-C
# stops it all. Ports: NATS 4222, nodes 8001-8003 (override with NATS_PORT and
# BASE_PORT). docs/CLUSTER.md explains what runs here and how to size it.
set -euo pipefail
cd "$(dirname "$0")/../.."

nats_port=${NATS_PORT:-4222}
base_port=${BASE_PORT:-8000}
echo "building bin/marketcast (the first build downloads modules and takes a minute)..."
go build -o bin/marketcast ./cmd/marketcast

dir=$(mktemp -d -t marketcast-cluster-XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo "stopping the cluster..."
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# Each role connects to NATS with its own user and least privilege
# (docs/CLUSTER.md): the nodes as "node", the feed as "collector" (it may
# publish market data and nothing else).
node_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
collector_pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
url="nats://127.0.0.1:${nats_port}"
bin/marketcast nats -listen "127.0.0.1:${nats_port}" -store "$dir/nats" \
  -node-password "$node_pw" -collector-password "$collector_pw" 2>"$dir/nats.log" &
pids+=($!)
for _ in $(seq 50); do
  grep -q "ready" "$dir/nats.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "ready" "$dir/nats.log" || { cat "$dir/nats.log"; echo "nats did not start"; exit 1; }

# The feed's simulator trades around the clock (its demo hours): the nodes
# build bars around the clock too (docs/FEED.md, trading sessions).
for i in 1 2 3; do
  MARKETCAST_NATS_URL="$url" MARKETCAST_NATS_USER=node MARKETCAST_NATS_PASSWORD="$node_pw" MARKETCAST_SESSIONS=always MARKETCAST_LISTEN="127.0.0.1:$((base_port + i))" MARKETCAST_NODE_NAME="node$i" \
    bin/marketcast 2>"$dir/node$i.log" &
  pids+=($!)
done
MARKETCAST_NATS_URL="$url" MARKETCAST_NATS_USER=collector MARKETCAST_NATS_PASSWORD="$collector_pw" bin/marketcast feed 2>"$dir/feed.log" &
pids+=($!)

for i in 1 2 3; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((base_port + i))/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
tok=$(grep -o 'token=[^ ]*' "$dir/node1.log" | head -1 | cut -d= -f2)
cat <<TXT

marketcast cluster up: NATS ${url}, logs in ${dir}
  node1  http://127.0.0.1:$((base_port + 1))/   (the demo terminal on each node)
  node2  http://127.0.0.1:$((base_port + 2))/
  node3  http://127.0.0.1:$((base_port + 3))/

Publish an order through node 2; a terminal on node 1 or 3 shows it:
  curl -s -X POST 127.0.0.1:$((base_port + 2))/api/v1/publish -H "Authorization: Bearer ${tok}" \\
    -d '{"channel":"orders","user_id":"1","data":{"order_id":"ORD-1","status":"FILLED"}}'

Ctrl-C stops everything.
TXT
wait

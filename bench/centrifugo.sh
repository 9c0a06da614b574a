#!/usr/bin/env bash
# Installs Centrifugo v6.9.1 into bin/ for the side-by-side benchmarks.
# Built from the Go module proxy; nothing of it is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x bin/centrifugo ]; then
  exit 0
fi
echo "installing Centrifugo v6.9.1 into bin/ (a few minutes on 2 cores)..." >&2
GOBIN="$PWD/bin" go install github.com/centrifugal/centrifugo/v6@v6.9.1

#!/usr/bin/env bash
# What `make test` needs beyond Go: Node 20+, Debian's chromium and a CJK
# font for the browser test, Debian's python3 with pytest and websockets for
# the Python client's tests, the npm packages of the tests. Installs what is
# missing when it can (root, or sudo without a password); otherwise stops
# with the one command to run. Idempotent and quiet when all is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if command -v node >/dev/null 2>&1; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "make test needs Node 20 or newer; this is $(node --version)" >&2
    exit 1
  fi
fi
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "${CHROMIUM:-}" ] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi wenquanyi || missing+=(fonts-wqy-microhei)
# The Python tests run on Debian's interpreter (python3 on PATH may be another
# one without Debian's packages); PyPI is not needed.
[ -x /usr/bin/python3 ] || missing+=(python3)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import pytest' 2>/dev/null || missing+=(python3-pytest)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import websockets' 2>/dev/null || missing+=(python3-websockets)
# The packaging test installs clients/python into a venv, offline.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import setuptools' 2>/dev/null || missing+=(python3-setuptools)

if [ ${#missing[@]} -gt 0 ]; then
  cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]} (Debian packages the tests need)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "== installing ${missing[*]} with sudo (Debian packages the tests need)"
    sudo -n env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${missing[*]} >/dev/null"
  else
    echo "make test needs ${missing[*]}; install them with:" >&2
    echo "  sudo sh -c '$cmd'" >&2
    exit 1
  fi
fi

# The tests' npm packages, pinned by package-lock.json.
for dir in web clients/js; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "== npm packages in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$dir/node_modules"
  fi
done

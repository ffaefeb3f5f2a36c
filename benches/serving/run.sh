#!/usr/bin/env bash
# Load-test `exeml serve` against a FastAPI/uvicorn + LightGBM server answering the same SPEC JSON
# requests, on this machine, in one run; writes benches/serving/last-results.md.
# usage: [EXEML_BIN=path/to/exeml] benches/serving/run.sh [SECONDS_PER_LEVEL]   (default 10)
# Needs `wrk` (Debian: apt-get install wrk); installs the Python side in benches/serving/.venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
venv=benches/serving/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q lightgbm pandas numpy fastapi "uvicorn[standard]" psutil
fi
bin=${EXEML_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --bin exeml
  bin=target/release/exeml
fi
"$venv/bin/python" benches/serving/compare.py "$bin" --seconds "${1:-10}" --out benches/serving/last-results.md

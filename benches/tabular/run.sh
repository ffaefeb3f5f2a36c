#!/usr/bin/env bash
# Reproduce the exeml vs LightGBM table of docs/benchmarks.md in one run.
# usage: [EXEML_BIN=path/to/exeml] benches/tabular/run.sh [TIME_LIMIT]   (default 60s)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=benches/tabular/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q lightgbm scikit-learn pandas numpy
fi
# EXEML_BIN picks an already built binary; by default a release build is made.
bin=${EXEML_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --bin exeml
  bin=target/release/exeml
fi
"$venv/bin/python" benches/tabular/compare_lightgbm.py "$bin" --time-limit "${1:-60s}" --out benches/tabular/last-results.md

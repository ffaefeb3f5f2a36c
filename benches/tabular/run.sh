#!/usr/bin/env bash
# Reproduce the exeml vs LightGBM table of docs/benchmarks.md in one run.
# usage: benches/tabular/run.sh [TIME_LIMIT]   (default 60s)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=benches/tabular/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q lightgbm scikit-learn pandas numpy
fi
cargo build --release --bin exeml
"$venv/bin/python" benches/tabular/compare_lightgbm.py target/release/exeml --time-limit "${1:-60s}" --out benches/tabular/last-results.md

#!/usr/bin/env bash
# Test log loss of the same image model with and without its fitted temperature (calibration),
# on the vision benchmark's data (docs/benchmarks.md, "Calibrated probabilities").
# usage: benches/vision/calibration.sh [--pairs] [BUDGET ...]   (default: 2m 10m)
# Single-label: the data and weights benches/vision/run.sh prepares
# (target/bench-data/fashion-mnist-10k). --pairs: the multi-label set of export_fashion_pairs.py
# (garments on a 2x2 grid, labels in side-by-side .txt files), written here on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
export EXEML_WEIGHTS_DIR=${EXEML_WEIGHTS_DIR:-$PWD/target/weights}
data=target/bench-data/fashion-mnist-10k
work=target/bench-vision/calibration
if [ "${1:-}" = --pairs ]; then
  shift
  data=target/bench-data/fashion-pairs
  work=target/bench-vision/calibration-pairs
  [ -d "$data/test" ] || (cd benches/vision && python3 export_fashion_pairs.py "../../$data")
fi
[ -d "$data/test" ] || { echo "no $data: run benches/vision/run.sh first" >&2; exit 1; }
cargo build --release --bin exeml
exeml=target/release/exeml
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(2m 10m)
mkdir -p "$work"
# Accuracy (exact-set accuracy and micro F1 for multi-label) / log loss (per label for multi-label).
metrics() {
  python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
extra = " (micro F1 %.4f)" % d["micro_f1"] if "micro_f1" in d else ""
print("%.4f%s / %.3f" % (d["accuracy"], extra, d["log_loss"]))' "$1"
}
echo "| budget | T | test accuracy / log loss, calibrated | without the temperature |"
echo "| --- | --- | --- | --- |"
for budget in "${budgets[@]}"; do
  model=$work/balance-$budget
  rm -rf "$model"
  "$exeml" train --task image --data "$data/train" --out "$model" --time-limit "$budget" \
    --preference balance >"$model.log" 2>&1
  "$exeml" evaluate --model "$model" --data "$data/test" --json | tail -n 1 >"$model.eval.json"
  # The same model, its temperature deleted from the manifest (model-raw).
  raw=$(python3 benches/vision/uncalibrated.py "$model")
  "$exeml" evaluate --model "$raw" --data "$data/test" --json | tail -n 1 >"$raw.eval.json"
  t=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("temperature", 1.0))' "$model/manifest.json")
  echo "| $budget | $(printf '%.2f' "$t") | $(metrics "$model.eval.json") | $(metrics "$raw.eval.json") |"
done

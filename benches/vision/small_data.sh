#!/usr/bin/env bash
# exeml on small data sets: two disjoint 250-image subsets of the benchmark's Fashion-MNIST
# training images (25 per class: the 1st-25th and the 26th-50th file of each class folder, by
# name), `balance` with a 2-minute budget, test accuracy and log loss on the 10,000 test images.
# (copies, not links: exeml refuses links that leave the data folder).
# usage: benches/vision/small_data.sh [EXEML_BIN]   (after benches/vision/run.sh made the data)
set -euo pipefail
cd "$(dirname "$0")/../.."
exeml=${1:-target/release/exeml}
data=target/bench-data/fashion-mnist-10k
export EXEML_WEIGHTS_DIR=${EXEML_WEIGHTS_DIR:-$PWD/target/weights}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for part in 1 2; do
  for class in "$data"/train/*/; do
    mkdir -p "$work/subset-$part/$(basename "$class")"
    ls "$class" | sort | sed -n "$(( (part - 1) * 25 + 1 )),$(( part * 25 ))p" |
      while read -r f; do cp "$class$f" "$work/subset-$part/$(basename "$class")/"; done
  done
  "$exeml" train --task image --data "$work/subset-$part" --time-limit 2m --out "$work/model-$part" \
    > "$work/train-$part.log" 2>&1 || { cat "$work/train-$part.log"; exit 1; }
  "$exeml" evaluate --model "$work/model-$part" --data "$data/test" --json 2>/dev/null |
    python3 -c 'import json, sys; d = json.load(sys.stdin)
print(json.dumps({"subset": '"$part"', "accuracy": d["accuracy"], "log_loss": round(d["log_loss"], 4)}))'
  grep -A30 '^search:' "$work/train-$part.log" | grep -v '^saved'
done

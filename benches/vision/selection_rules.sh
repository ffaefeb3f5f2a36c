#!/usr/bin/env bash
# How the rule that picks the fine-tuned model (and keeps an ensemble) does on test images:
# trains with a build that dumps every fine-tuning arm's best state (validation probabilities,
# and probabilities on 500 test images per class), then replays the rules offline
# (selection_rules.py). The dumping build is dump_arms.patch applied to the source (made on
# a2388ae; it is not part of exeml) and is removed again after the build.
# usage: benches/vision/selection_rules.sh [OUT]   (after benches/vision/run.sh made the data)
#   Two runs a seed (the benchmark's training set and a disjoint one), 10 minutes each plus about
#   a minute an arm for the test probabilities; SEEDS (default "0 1 2") and EXTRA (more
#   `exeml train` options) vary them. docs/benchmarks.md's table is
#     SEEDS=0 benches/vision/selection_rules.sh
#     SEEDS="1 2 3" EXTRA="--resolution 160" benches/vision/selection_rules.sh
#   (the replay at the end covers every run in OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/bench-data/selection-rules}
data=target/bench-data/fashion-mnist-10k
export EXEML_WEIGHTS_DIR=${EXEML_WEIGHTS_DIR:-$PWD/target/weights}
python=benches/vision/.venv/bin/python   # run.sh's venv: Pillow, numpy
mkdir -p "$out"
git apply benches/vision/dump_arms.patch
trap 'git apply -R benches/vision/dump_arms.patch' EXIT
cargo build --release --bin exeml
cp target/release/exeml "$out/exeml-dump"
git apply -R benches/vision/dump_arms.patch
trap - EXIT
# A second training set, disjoint from the benchmark's (the next 200 images of each class).
[ -d "$out/fashion-mnist-b/train" ] ||
  "$python" benches/vision/export_fashion_mnist.py "$out/fashion-mnist-b" --train-offset 200 --test-per-class 0
# 500 test images per class (the first 500 files of each class folder, by name).
if [ ! -d "$out/test-5k" ]; then
  for class in "$data"/test/*/; do
    mkdir -p "$out/test-5k/$(basename "$class")"
    ls "$class" | sort | sed -n 1,500p | while read -r f; do cp "$class$f" "$out/test-5k/$(basename "$class")/"; done
  done
fi
for seed in ${SEEDS:-0 1 2}; do
  for set in a b; do
    train=$data/train
    [ "$set" = b ] && train=$out/fashion-mnist-b/train
    EXEML_DUMP_ARMS="$out/$set$seed.json" EXEML_DUMP_TEST="$out/test-5k" "$out/exeml-dump" train \
      --task image --data "$train" --time-limit 10m --preference balance --seed "$seed" ${EXTRA:-} \
      --out "$out/model-$set$seed" > "$out/$set$seed.log" 2>&1
  done
done
"$python" benches/vision/selection_rules.py "$out"/[ab]*.json

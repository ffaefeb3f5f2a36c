#!/usr/bin/env bash
# The exported ONNX file of a trained image model against exeml and PyTorch on this CPU (see
# onnx_export.py). Usage: benches/vision/onnx_export.sh [MODEL_DIR]  (default: the 2-minute
# model benches/vision/run.sh leaves in target/bench-vision/balance-2m).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:-target/bench-vision/balance-2m}
export EXEML_WEIGHTS_DIR=$PWD/target/weights
venv=benches/vision/.venv
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q torch torchvision; }
"$venv/bin/pip" install -q "onnxruntime>=1.17,<2" pillow numpy
cargo build --release --bin exeml --example vision_speed
# The Python package too, for the exact inputs (`onnx_input`); skipped when no wheel was built.
wheel=$(ls target/wheels/exeml-*.whl 2>/dev/null | head -1 || true)
[ -n "$wheel" ] && "$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel"
"$venv/bin/python" benches/vision/onnx_export.py target/release/exeml target/release/examples/vision_speed "$model" \
  target/bench-data/fashion-mnist-10k/test target/bench-onnx

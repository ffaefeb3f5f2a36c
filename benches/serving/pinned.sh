#!/usr/bin/env bash
# The serving comparison on a machine with many cores and no network: servers pinned to two
# cores, wrk to the others, so the load generator does not share cores with what it measures.
# Runs from the repository root over `.serving/` (made on a networked machine):
#   .serving/bin/exeml.xz   a stripped, xz-compressed release build of exeml
#   .serving/bin/wrk        wrk (Debian's) with its libraries in .serving/lib
#   .serving/whl/*.whl      FastAPI, uvicorn, httptools, uvloop, LightGBM and their pure-Python needs
# python3 there must have numpy, pandas, scipy and psutil.
#
# usage: benches/serving/pinned.sh [OUT_DIR] [SECONDS_PER_LEVEL] [SERVER_CPUS] [LOAD_CPUS]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-/tmp/exeml-serving}}
seconds=${2:-10}
server_cpus=${3:-0,1}
load_cpus=${4:-2-$(($(nproc) - 1))}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/serving-site .serving/whl/*.whl
export PYTHONPATH=/tmp/serving-site PATH=$PWD/.serving/bin:$PATH
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.serving/bin/exeml.xz'), open('/tmp/exeml', 'wb'))"
chmod +x /tmp/exeml
wrk --version | head -1 || true
python3 benches/serving/compare.py /tmp/exeml --seconds "$seconds" --out "$out/serving.md" \
  --server-cpus "$server_cpus" --load-cpus "$load_cpus"

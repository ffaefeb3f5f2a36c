#!/usr/bin/env bash
# Reproduce the tabular benchmarks of docs/benchmarks.md in one run.
# usage: [EXEML_BIN=path/to/exeml] benches/tabular/run.sh [TIME_LIMIT] [all|lightgbm|automl] [AUTOML ARGS...]
#   TIME_LIMIT  exeml's syntax, default 60s; the AutoML comparison gives the same seconds to every tool
#   lightgbm    exeml vs LightGBM defaults only (compare_lightgbm.py → benches/tabular/last-results.md)
#   automl      exeml vs FLAML vs AutoGluon vs LightGBM only (compare_automl.py →
#               benches/tabular/last-automl-results.md); the rest of the arguments go to it,
#               e.g. `benches/tabular/run.sh 10s automl --sets iris,diabetes`
#   all         both (the default)
# The packages go into benches/tabular/.venv (made on first use).
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=${1:-60s}
mode=${2:-all}
shift $(( $# < 2 ? $# : 2 ))
case "$mode" in
  all | lightgbm | automl) ;;
  *) echo "usage: benches/tabular/run.sh [TIME_LIMIT] [all|lightgbm|automl] [AUTOML ARGS...]" >&2; exit 2 ;;
esac
venv=benches/tabular/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import lightgbm, sklearn, pandas, numpy" 2>/dev/null; then
  "$venv/bin/pip" install -q lightgbm scikit-learn pandas numpy
fi
if [ "$mode" != lightgbm ] && ! "$venv/bin/python" -W ignore -c "from flaml import AutoML; import autogluon.tabular" 2>/dev/null; then
  # FLAML's AutoML needs an importable xgboost (<3, as flaml[automl] pins); on Linux the CPU-only
  # build (xgboost-cpu, same `xgboost` module) avoids the 350 MB NCCL wheel. autogluon.tabular
  # without extras needs no torch.
  if [ "$(uname -s)" = Linux ]; then xgb="xgboost-cpu<3"; else xgb="xgboost<3"; fi
  "$venv/bin/pip" install -q flaml "$xgb" autogluon.tabular
fi
# The AutoML comparison's extra data sets come from Debian packages (R's modeldata, read with
# Rscript, and Fashion-MNIST); installed here when missing.
if [ "$mode" != lightgbm ]; then
  missing=()
  command -v Rscript >/dev/null && Rscript -e 'library(modeldata)' >/dev/null 2>&1 || missing+=(r-cran-modeldata)
  [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
  if [ ${#missing[@]} -gt 0 ]; then
    sudo_=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo_ apt-get install -y -q "${missing[@]}"
  fi
fi
# EXEML_BIN picks an already built binary; by default a release build is made.
bin=${EXEML_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --bin exeml
  bin=target/release/exeml
fi
if [ "$mode" != automl ]; then
  "$venv/bin/python" benches/tabular/compare_lightgbm.py "$bin" --time-limit "$limit" --out benches/tabular/last-results.md
fi
if [ "$mode" != lightgbm ]; then
  "$venv/bin/python" benches/tabular/compare_automl.py "$bin" --time-limit "$limit" \
    --out benches/tabular/last-automl-results.md "$@"
fi

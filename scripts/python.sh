#!/usr/bin/env bash
# Build the `exeml` wheel with maturin, install it into a fresh virtualenv, and run the Python
# checks there: pytest (with the example notebook) and mypy's stubtest of the type stubs.
# Called by scripts/test.sh; usable alone after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# A virtualenv: the standard venv module, or virtualenv where a distribution split venv out.
make_venv() {
  python3 -m venv "$1" 2>/dev/null || {
    rm -rf "$1"
    python3 -m pip install --quiet --user virtualenv
    python3 -m virtualenv --quiet "$1"
  }
}
tools=.venv
if [ ! -x "$tools/bin/maturin" ]; then
  make_venv "$tools"
  "$tools/bin/pip" install --quiet --upgrade pip
  "$tools/bin/pip" install --quiet "maturin>=1.9,<2"
fi

# The dev profile (dependencies optimised, our crates at opt-level 1) shares its compiled
# dependencies with `cargo test`; --strip drops the debug info from the extension.
rm -rf target/wheels
"$tools/bin/maturin" build --quiet --manifest-path exeml-py/Cargo.toml --profile dev --strip \
  --out target/wheels
wheel=$(ls target/wheels/exeml-*.whl)
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))"

venv=target/python-test-venv
rm -rf "$venv"
make_venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "${wheel}[test]"

export EXEML_BIN=${EXEML_BIN:-$PWD/target/debug/exeml}
# Run from the tests folder so that `import exeml` is the installed wheel, not the source tree.
(cd exeml-py && "../$venv/bin/python" -m pytest -q tests)
(cd "$venv" && bin/python -m mypy.stubtest exeml --mypy-config-file ../../exeml-py/pyproject.toml \
  --allowlist ../../exeml-py/stubtest-allowlist.txt)

#!/usr/bin/env bash
# Set up and run every check and test of exeml: formatting, lints, unit + integration + doc
# tests, the demo, the Python package (wheel, pytest, notebook, stubs) and the command-line
# contract smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TERM_COLOR=never
# A one-off build gains nothing from incremental caches, which cost gigabytes of disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
# The backbone weights scripts/setup.sh installed (image tests and demo).
export EXEML_WEIGHTS_DIR="$PWD/target/weights"
step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, integration and doc tests)"
cargo test --workspace

step "exeml demo (in a temporary workspace)"
demo_home=$(mktemp -d)
trap 'rm -rf "$demo_home"' EXIT
# The binary `cargo test --workspace` just built: `cargo run --bin exeml` alone would resolve
# features without the Python crate and rebuild polars and friends a second time.
EXEML_HOME="$demo_home" target/debug/exeml demo --time-limit 10s

step "Python: wheel (maturin) in a fresh venv, pytest + example notebook, stubtest"
scripts/python.sh

if [ -x ../shared/hooks/contract-check ]; then
  step "command-line contract (../shared/CLI.md)"
  out=$(../shared/hooks/contract-check)
  echo "$out"
  if ! grep -q "follow ../shared/CLI.md" <<<"$out"; then
    echo "the command-line contract check failed" >&2
    exit 1
  fi
fi
echo
echo "all checks passed"

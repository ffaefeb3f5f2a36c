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

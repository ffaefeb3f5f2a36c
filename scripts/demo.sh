#!/usr/bin/env bash
# Set up and run `exeml demo`: a built-in table taken through project → import → check →
# publish version → train → evaluate → model version 0.0.1 → predict.
# Builds the dev profile (dependencies optimised), which shares its build with scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --bin exeml
exec target/debug/exeml demo "$@"

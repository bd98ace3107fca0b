#!/usr/bin/env bash
# Runs the whole test suite from a clean checkout: builds every crate and runs every test
# (unit tests, fixture parity tests, CLI end-to-end tests). Needs the reference fixtures at
# ../shared/fixtures (or $SONIC_FIXTURES) and a Rust toolchain with a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sonic-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if [ -z "${SONIC_FIXTURES:-}" ] && [ ! -d ../shared/fixtures ]; then
  echo "reference fixtures not found: put them at ../shared/fixtures or set SONIC_FIXTURES" >&2
  exit 1
fi
cargo test --workspace --locked "$@"

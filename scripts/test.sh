#!/usr/bin/env bash
# Runs the whole test suite from a clean checkout: builds every crate and runs every test
# (unit tests, fixture parity tests, CLI end-to-end tests). Needs a Rust toolchain with a C
# compiler and the reference fixtures, looked for in order at $SONIC_FIXTURES,
# ../shared/fixtures and $XDG_CACHE_HOME/sonic-diffusion/fixtures (~/.cache/...). When none
# holds them, scripts/fixtures.sh first builds them into the cache folder from the project's
# own generators (a one-time download of the pinned Python packages, about 2.7 GB);
# SONIC_FIXTURES_OFFLINE=1 makes it stop instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sonic-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
FOLDERS=(schedulers-sd sd15-tiny sd21-tiny sonic-tiny sonic-projector-full eval-tiny fast-tiny)
complete() {
  local f
  for f in "${FOLDERS[@]}"; do [ -f "$1/$f/reference/cases.json" ] || return 1; done
}
CACHED="${XDG_CACHE_HOME:-$HOME/.cache}/sonic-diffusion/fixtures"
if [ -n "${SONIC_FIXTURES:-}" ]; then
  :
elif [ -d ../shared/fixtures ]; then
  SONIC_FIXTURES="$(cd ../shared/fixtures && pwd)"
elif complete "$CACHED"; then
  SONIC_FIXTURES="$CACHED"
elif [ "${SONIC_FIXTURES_OFFLINE:-0}" = 1 ]; then
  echo "reference fixtures not found (SONIC_FIXTURES, ../shared/fixtures, $CACHED) and" \
    "SONIC_FIXTURES_OFFLINE=1: not generating them" >&2
  exit 1
else
  echo "reference fixtures not found: building them into $CACHED with scripts/fixtures.sh" >&2
  bash scripts/fixtures.sh "$CACHED"
  SONIC_FIXTURES="$CACHED"
fi
export SONIC_FIXTURES
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# CI check of the fixture generators: regenerates FOLDER (default schedulers-sd) with
# tools/fixtures/ and compares every tensor with the shared copy (../shared/fixtures or
# $SONIC_FIXTURES), max |generated - shared| <= 1e-6, plus the committed manifest.
#
# sonic-tiny's random parts (sounds, weights, drawn inputs) differ from the shared folder's by
# design (tools/fixtures/sonic_tiny.py), so for it the check regenerates sd15-tiny, then runs the
# sonic-tiny generator with `--inputs-from` the shared folder: every reference tensor is
# recomputed from the shared folder's random parts and compared (cases.json's wording and the
# versions record aside).
#
#   bash scripts/check_fixture_generator.sh [FOLDER]
#
# It needs the generators' venv (scripts/fixtures.sh makes it; about 2.7 GB of downloads). When
# no venv is there and SONIC_FIXTURES_OFFLINE=1, it skips with a message instead.
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDER="${1:-schedulers-sd}"
SHARED="${SONIC_FIXTURES:-../shared/fixtures}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sonic-diffusion"
VENV="${SONIC_FIXTURES_VENV:-$CACHE/venv}"
if [ ! -d "$SHARED/$FOLDER" ]; then
  echo "check_fixture_generator: no shared $FOLDER at $SHARED" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ] && [ "${SONIC_FIXTURES_OFFLINE:-0}" = 1 ]; then
  echo "check_fixture_generator: skipped (no generator venv at $VENV and SONIC_FIXTURES_OFFLINE=1)"
  exit 0
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
if [ "$FOLDER" = sonic-tiny ]; then
  SONIC_FIXTURES_VENV="$VENV" bash scripts/fixtures.sh "$OUT" sd15-tiny
  echo "check_fixture_generator: sonic-tiny with --inputs-from $SHARED/sonic-tiny" >&2
  PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CUDA_VISIBLE_DEVICES="" \
    SONIC_FIXTURES_WHEELS="$VENV/wheels" "$VENV/bin/python" -W ignore \
    tools/fixtures/sonic_tiny.py "$OUT/sonic-tiny" --inputs-from "$SHARED/sonic-tiny"
  "$VENV/bin/python" tools/fixtures/compare.py "$OUT/sonic-tiny" "$SHARED/sonic-tiny" \
    --tol 1e-6 --ignore-json
  exit
fi
SONIC_FIXTURES_VENV="$VENV" bash scripts/fixtures.sh "$OUT" "$FOLDER"
"$VENV/bin/python" tools/fixtures/compare.py "$OUT/$FOLDER" "$SHARED/$FOLDER" --tol 1e-6

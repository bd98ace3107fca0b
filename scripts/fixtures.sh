#!/usr/bin/env bash
# Builds the reference fixtures from the project's own generators (tools/fixtures/*.py):
# creates a Python venv with the pinned packages (tools/fixtures/requirements.txt), runs each
# generator on the CPU with fixed seeds, and checks the result against the committed manifest
# (tools/fixtures/manifest.json: every file's sha256 and every tensor's shape; reference outputs
# whose last float32 bits differ, as on another CPU, pass by three summary numbers per tensor).
#
#   bash scripts/fixtures.sh [DIR] [FOLDER...]
#   bash scripts/fixtures.sh --setup        # only create the venv
#
# DIR defaults to $XDG_CACHE_HOME/sonic-diffusion/fixtures (~/.cache/...). FOLDERs default to
# every folder the tests use. sonic-tiny reuses DIR/sd15-tiny (generate that first, or together:
# the default order does). The venv lives in $SONIC_FIXTURES_VENV (default
# $XDG_CACHE_HOME/sonic-diffusion/venv) and is reused. Needs python3 (>= 3.10) with venv.
#
# Download: PyPI's Linux torch wheel depends on NVIDIA's CUDA libraries, so the first run
# downloads about 2.7 GB (torch 530 MB + CUDA libraries; 5 GB installed), although the
# generators run on the CPU only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sonic-diffusion"
SETUP_ONLY=0
if [ "${1:-}" = --setup ]; then SETUP_ONLY=1; shift; fi
DIR="${1:-$CACHE/fixtures}"
[ $# -gt 0 ] && shift
ALL=(schedulers-sd sd15-tiny sd21-tiny sonic-tiny sonic-projector-full eval-tiny fast-tiny)
if [ $# -gt 0 ]; then FOLDERS=("$@"); else FOLDERS=("${ALL[@]}"); fi
VENV="${SONIC_FIXTURES_VENV:-$CACHE/venv}"
REQ="$ROOT/tools/fixtures/requirements.txt"
PY="$VENV/bin/python"
OPEN_CLIP=3.3.0
MSCLAP=1.3.4

say() { echo "[fixtures] $*" >&2; }

# The generator of a folder: tools/fixtures/<folder with - as _>.py
generator() { echo "$ROOT/tools/fixtures/${1//-/_}.py"; }

missing=()
[ "$SETUP_ONLY" = 1 ] && FOLDERS=()
for f in ${FOLDERS[@]+"${FOLDERS[@]}"}; do
  [ -f "$(generator "$f")" ] || missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "no generator yet for: ${missing[*]} (tools/fixtures/ has generators for the others)"
  say "these folders cannot be built here; get them from a copy of the shared fixtures"
  exit 2
fi

stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$PY" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating the Python venv $VENV with the pinned packages of $REQ"
  say "this downloads about 2.7 GB from PyPI once (torch's Linux wheel pulls NVIDIA's CUDA"
  say "libraries, unused here: the generators run on the CPU) and takes about 5 GB of disk"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --progress-bar on -r "$REQ"
  # open_clip_torch's wheel only for its copy of CLIP's BPE merge list (tools/fixtures/clip_bpe.py)
  "$PY" -m pip download --quiet --no-deps -d "$VENV/wheels" "open_clip_torch==$OPEN_CLIP"
  # msclap's wheel only for its model code (msclap.models: Cnn14, Projection; sonic_tiny.py):
  # its own pins (numpy<2, transformers<5) clash with ours, so it is not installed
  "$PY" -m pip download --quiet --no-deps -d "$VENV/wheels" "msclap==$MSCLAP"
  echo "$want" > "$stamp"
else
  say "using the venv $VENV"
fi
if [ "$SETUP_ONLY" = 1 ]; then
  say "venv ready: $VENV"
  exit 0
fi

mkdir -p "$DIR"
export SONIC_FIXTURES_WHEELS="$VENV/wheels"
export PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=""
i=0
for f in "${FOLDERS[@]}"; do
  i=$((i + 1))
  say "[$i/${#FOLDERS[@]}] generating $f"
  tmp="$DIR/.$f.tmp"
  rm -rf "$tmp"
  "$PY" -W ignore "$(generator "$f")" "$tmp"
  rm -rf "${DIR:?}/$f"
  mv "$tmp" "$DIR/$f"
done

say "checking against tools/fixtures/manifest.json"
"$PY" "$ROOT/tools/fixtures/manifest.py" check "$DIR" "${FOLDERS[@]}"
say "fixtures ready in $DIR"

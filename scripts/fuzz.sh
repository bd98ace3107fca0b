#!/usr/bin/env bash
# The fuzz targets of fuzz/ (docs/RELIABILITY.md section 5).
#
#   scripts/fuzz.sh smoke [RUNS]    CI's smoke: builds the targets with the test build's
#                                   artifacts (no coverage instrumentation, so libFuzzer mutates
#                                   blindly) and runs each RUNS times (default 3000) from its
#                                   seeds. Needs no nightly and no cargo-fuzz.
#   scripts/fuzz.sh run [RUNS]      The recorded runs: every target instrumented by cargo-fuzz
#                                   (installed from crates.io when missing), RUNS executions
#                                   each (default 1000000), corpora kept in fuzz/corpus/<target>,
#                                   crashes in fuzz/artifacts/<target>; prints a table row per
#                                   target for docs/RELIABILITY.md.
# A target's crash, timeout or out-of-memory is a non-zero exit. The `tokenizer` target reads
# the sd15-tiny tokenizer from $SONIC_FIXTURES (default ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sonic-target}"
export SONIC_FIXTURES="${SONIC_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
TARGETS=(decode_audio safetensors_header torch_pickle model_configs scheduler_config
  train_configs manifest image tokenizer)
mode="${1:-smoke}"

max_len() {
  case "$1" in
    decode_audio) echo 65536 ;;
    *) echo 16384 ;;
  esac
}

case "$mode" in
  smoke)
    runs="${2:-3000}"
    cargo build -p sonic-fuzz --bins --locked
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    for t in "${TARGETS[@]}"; do
      mkdir -p "$scratch/$t"
      start=$SECONDS
      "$CARGO_TARGET_DIR/debug/$t" "$scratch/$t" "fuzz/seeds/$t" -runs="$runs" \
        -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=30 \
        -artifact_prefix="$scratch/$t/crash-" >"$scratch/$t.log" 2>&1 || {
        tail -n 40 "$scratch/$t.log" >&2
        echo "fuzz smoke: $t failed" >&2
        exit 1
      }
      echo "fuzz smoke: $t: $runs runs in $((SECONDS - start)) s"
    done
    ;;
  run)
    runs="${2:-1000000}"
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    (cd fuzz && cargo fuzz build -s none -O)
    bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
    for t in "${TARGETS[@]}"; do
      mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
      start=$SECONDS
      "$bin/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -runs="$runs" -max_len="$(max_len "$t")" \
        -rss_limit_mb=2048 -timeout=30 -artifact_prefix="fuzz/artifacts/$t/" \
        -print_final_stats=1 >"fuzz/artifacts/$t.log" 2>&1 || {
        tail -n 40 "fuzz/artifacts/$t.log" >&2
        echo "fuzz: $t failed (log: fuzz/artifacts/$t.log)" >&2
        exit 1
      }
      execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/artifacts/$t.log" | grep -o '[0-9]*$')
      rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "fuzz/artifacts/$t.log" | grep -o '[0-9]*$')
      corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
      echo "| \`$t\` | $execs | $corpus files | $((SECONDS - start)) s | $rss MB | none |"
    done
    ;;
  *)
    echo "usage: scripts/fuzz.sh smoke|run [RUNS]" >&2
    exit 2
    ;;
esac

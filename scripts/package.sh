#!/usr/bin/env bash
# Publishing checks: every publishable crate of the workspace, in dependency order, packages
# with its README and without test data (`cargo package --list`, offline, seconds).
#
#   bash scripts/package.sh            # the list check (CI runs this)
#   bash scripts/package.sh --dry-run  # also `cargo publish --dry-run` (builds the packaged
#                                      # crate; needs crates.io) for each crate whose workspace
#                                      # dependencies are all published: today the bottom ones
#
# The crates above those cannot be dry-run before the lower ones are on crates.io: cargo
# resolves path dependencies through the registry when it packages.
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=0
[ "${1:-}" = "--dry-run" ] && dry_run=1

# "name bottom" lines in dependency order; bottom = 1 when no workspace dependency.
plan=$(cargo metadata --format-version 1 --no-deps --offline | python3 -c '
import json, sys
m = json.load(sys.stdin)
pkgs = {p["name"]: p for p in m["packages"] if p.get("publish") != []}
deps = {n: {d["name"] for d in p["dependencies"] if d["name"] in pkgs and d["kind"] != "dev"} for n, p in pkgs.items()}
done, order = set(), []
while len(order) < len(pkgs):
    ready = sorted(n for n in pkgs if n not in done and deps[n] <= done)
    if not ready:
        sys.exit("dependency cycle among " + ", ".join(sorted(set(pkgs) - done)))
    for n in ready:
        order.append(n); done.add(n)
for n in order:
    print(n, int(not deps[n]))
')

fail=0
while read -r crate bottom; do
  list=$(cargo package --list --offline --allow-dirty -p "$crate")
  if ! grep -qx "README.md" <<<"$list"; then
    echo "package: $crate: README.md is not packaged" >&2
    fail=1
  fi
  if grep -Eq "^(tests/data|tests-data)/" <<<"$list"; then
    echo "package: $crate: test data is packaged (add it to exclude)" >&2
    fail=1
  fi
  echo "package: $crate ($(wc -l <<<"$list") files)"
  if [ "$dry_run" = 1 ] && [ "$bottom" = 1 ]; then
    cargo publish --dry-run --allow-dirty -p "$crate"
  fi
done <<<"$plan"
exit $fail

#!/usr/bin/env bash
# Long fuzzing runs of the property tests in tests/fuzz.rs (proptest; stable toolchain):
#   scripts/fuzz.sh [CASES] [FILTER]
# runs every target (or those whose name contains FILTER) with CASES cases each (default
# 1,000,000; the test suite runs 128-256), one target at a time in a release build, and prints
# a table of cases, wall time and outcome per target. A failing target prints proptest's
# minimal failing input; proptest also saves its seed in a proptest-regressions/ file, which
# the normal suite then replays. Needs no Docker engine and no network.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
filter=${2:-}
cargo test --release --locked --test fuzz --no-run 2>&1 | grep -v '^ *Executable' >&2 || true
mapfile -t targets < <(cargo test -q --release --locked --test fuzz -- --list 2>/dev/null |
  sed -n 's/: test$//p' | grep -F -- "$filter")
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no target matches ${filter:-anything}" >&2; exit 2; }
printf '| target | cases | wall | outcome |\n|---|---|---|---|\n'
failed=0
for target in "${targets[@]}"; do
  log=$(mktemp)
  start=$(date +%s%N)
  if PROPTEST_CASES=$cases cargo test -q --release --locked --test fuzz -- --exact "$target" \
      >"$log" 2>&1; then
    outcome="no failure"
  else
    outcome="**FAILED** (see above)"
    failed=1
    sed -n '/minimal failing input\|panicked at\|Test failed/p' "$log" >&2
  fi
  wall=$((($(date +%s%N) - start) / 1000000000))
  printf '| %s | %s | %s s | %s |\n' "$target" "$cases" "$wall" "$outcome"
  rm -f "$log"
done
exit $failed

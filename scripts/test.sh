#!/usr/bin/env bash
# Run every test: installs the real peers the interop tests use when they are missing, then
# `cargo test --workspace`. Extra arguments go to cargo test (e.g. `scripts/test.sh -- --nocapture`).
#
# With CI=true a missing peer binary fails the test that needs it instead of skipping it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-test-deps.sh

log=$(mktemp -t anchorage-test.XXXXXX)
trap 'rm -f "$log"' EXIT

status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?

echo
echo "== test summary =="
# One line per test binary ("test result: ok. 12 passed; ..."), then the totals.
grep -E '^(test result:|error(\[|:)|failures:$)' "$log" || true
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "total: %d passed, %d failed, %d ignored\n", p, f, i }' "$log"
exit "$status"

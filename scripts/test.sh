#!/usr/bin/env bash
# Run every test: installs the real peers the interop tests use when they are missing, then
# `cargo test --workspace`. Extra arguments go to cargo test (e.g. `scripts/test.sh -- --nocapture`).
#
# With CI=true a missing peer binary fails the test that needs it instead of skipping it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Without root or sudo the install can fail; locally the tests that need a missing peer then skip
# loudly, in CI they fail anyway, so stop here.
if ! scripts/install-test-deps.sh; then
    [[ ${CI:-} == true ]] && exit 1
    echo "test.sh: could not install test peers; tests that need them will be skipped" >&2
fi

log=$(mktemp -t anchorage-test.XXXXXX)
trap 'rm -f "$log"' EXIT

status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?

echo
echo "== test summary =="
# One line per test binary, named by the cargo line that ran it, then the totals; errors too.
awk '
    /^ *(Running|Doc-tests) / {
        label = $0
        sub(/^ +/, "", label)
        sub(/ \(.*\/deps\//, " (", label)       # keep the binary name, drop the target path
        sub(/-[0-9a-f]+\)$/, ")", label)        # and its hash
    }
    /^test result:/ {
        printf "%-58s %s\n", label, $0
        passed += $4; failed += $6; ignored += $8
    }
    /^error(\[|:)/ { print }
    END { printf "total: %d passed, %d failed, %d ignored\n", passed, failed, ignored }
' "$log"
exit "$status"

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
# Tests record every skip here (anchorage_test_support::peer::skip): a skipped test still shows
# `ok`, so this file, not libtest's count, says what did not run.
skips=$(mktemp -t anchorage-skips.XXXXXX)
trap 'rm -f "$log" "$skips"' EXIT
export ANCHORAGE_SKIP_LOG="$skips"

status=0
started=$SECONDS
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

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

# Skips: counted, listed with their reasons, and in CI refused unless scripts/allowed-skips.txt
# lists them (one extended regular expression per line, matched against "<binary> <test>\treason").
nskips=$(grep -c . "$skips" || true)
echo "skipped: $nskips (counted as passed above)"
if [[ $nskips -gt 0 ]]; then
    sort "$skips" | sed 's/^/  /; s/\t/: /'
fi
allowed=scripts/allowed-skips.txt
if [[ ${CI:-} == true && $nskips -gt 0 ]]; then
    unexpected=$(grep -v -E -f <(grep -v -e '^#' -e '^$' "$allowed") "$skips" || true)
    if [[ -n $unexpected ]]; then
        echo "error: skips not allowed in CI (fix the test or install the peer; $allowed lists the allowed ones):"
        echo "$unexpected" | sed 's/^/  /; s/\t/: /'
        [[ $status -eq 0 ]] && status=1
    fi
fi
echo "tests took $((SECONDS - started)) s"
exit "$status"

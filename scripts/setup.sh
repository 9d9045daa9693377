#!/usr/bin/env bash
# Installs what taphold needs to build, run and test on Debian 12 (idempotent):
# DPDK 22.11 and its headers, libclang for bindgen, libpcap for net_pcap,
# tcpdump and iproute2 for the test networks, tshark for the Wireshark dissector's
# test, shellcheck for the scripts; for the live lab's real FIX session
# (crates/taphold-lab/tests/fix_gateway.rs, tools/fix/build.sh) g++ and QuickFIX:
# libquickfix-dev (headers, library) and libquickfix-doc (the only package that
# ships QuickFIX's example executor, the lab's exchange); and checks the Rust toolchain.
# `--build-only` (the Dockerfile's build stage) leaves out the test tools.
set -euo pipefail

PACKAGES=(dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config libpcap-dev python3 ca-certificates)
[ "${1:-}" = "--build-only" ] || PACKAGES+=(tcpdump iproute2 ethtool tshark shellcheck g++ libquickfix-dev libquickfix-doc)
MIN_RUST=1.82

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # wireshark-common asks whether non-root users may capture: answer it (no) so
    # the install never waits for a terminal.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

ver=$(pkg-config --modversion libdpdk)
echo "setup: DPDK $ver"

if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs), $MIN_RUST or newer" >&2
    exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$have" | sort -V | head -1)" != "$MIN_RUST" ]; then
    echo "setup: rustc $have is older than $MIN_RUST" >&2
    exit 1
fi
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
done
echo "setup: rustc $have"

#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs
# (scripts/setup.sh), checks formatting and lints, runs every test (EAL tests
# each in a process of their own, end-to-end replays through the real
# binary; the replay invariant tests a second time with every backup frame
# encrypted, link_security: aead), the Wireshark dissector against a replay's
# outputs, the Dockerfile's
# package lists against ldd, a short AFL++ run of every fuzz target, and the loom
# models of the hold ring, event ring and re-send round.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cleanup() {
    # EAL runtime directories of test processes that died before cleaning up.
    rm -rf /var/run/dpdk/taphold-test-* /var/run/dpdk/taphold-replay-* /var/run/dpdk/taphold-sig-* 2>/dev/null || true
}
trap cleanup EXIT

scripts/setup.sh
echo "== test captures are what the generator makes"
python3 scripts/gen-test-pcaps.py --check
echo "== scripts: bash -n, shellcheck"
for s in scripts/*.sh tools/docker/*.sh; do bash -n "$s"; done
shellcheck scripts/*.sh tools/docker/*.sh
echo "== scripts/host-setup.sh: a dry run here, real runs on a fake /proc and /sys"
scripts/test-host-setup.sh
echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
# The AFL harness is behind a feature (it links AFL++'s runtime): lint it too.
cargo clippy -p taphold-fuzz --features afl --all-targets -- -D warnings
echo "== tests"
cargo test --workspace
echo "== the replay invariant tests again, every replay with link_security: aead"
TAPHOLD_TEST_AEAD=1 cargo test -p taphold --test replay
echo "== Wireshark dissector, on a replay's outputs (and broken copies of it must fail)"
cargo build -q -p taphold -p taphold-backup -p taphold-arbiter
TAPHOLD_BIN="$PWD/target/debug/taphold" scripts/test-dissector.sh --mutants
echo "== Dockerfile: the runtime packages cover what the binaries link; the entrypoint's examples run"
scripts/check-docker.sh libs target/debug
scripts/check-docker.sh selftest target/debug
scripts/check-docker.sh entrypoint target/debug
echo "== the launcher (scripts/taphold-run.sh) and the systemd units"
scripts/test-taphold-run.sh target/debug
echo "== fuzz targets: a few seconds each under AFL++ (cargo test replayed their seeds and regression inputs)"
for t in $(scripts/fuzz.sh --list); do
    scripts/fuzz.sh "$t" "${TAPHOLD_FUZZ_SECONDS:-4}"
done
echo "== loom models: hold ring, event ring, re-send round"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p taphold-core --release --test loom

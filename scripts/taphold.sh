#!/usr/bin/env bash
# Runs the taphold binary (building it first if needed), passing every
# argument through: `scripts/taphold.sh [EAL args] -- --config FILE [...]`.
# With no EAL arguments before `--`, uses a default set for a machine
# without hugepages or NICs (see docs/operations.md for production flags).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p taphold
bin=target/release/taphold
if [ "${1:-}" = "--" ]; then
    exec "$bin" --no-huge -m "${TAPHOLD_MEM_MB:-1024}" --no-pci -l "${TAPHOLD_LCORES:-0,1}" \
        --file-prefix "taphold-$$" --log-level '*:warning' "$@"
fi
exec "$bin" "$@"

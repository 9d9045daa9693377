#!/usr/bin/env bash
# Offline replay: scripts/replay.sh IN.pcap OUTDIR [extra taphold args...]
#
# Feeds IN.pcap into the primary port P through net_pcap and runs the whole
# pipeline (config/default.yaml unless TAPHOLD_CONFIG says otherwise). The
# backup link and its tap are in-process ring ports wired by the config's
# `harness` section (docs/operations.md). OUTDIR receives:
#   destination.pcap  what left P for the destination (P tx queue 0)
#   source.pcap       confirmations and ARP replies (P tx queue 1)
#   backup.pcap       what was launched on the backup link (reached its far end)
#   events.csv        one line per message
#   summary.json      every counter
#   held.pcap         messages still held at shutdown (only if any)
# The run ends once nothing has moved for TAPHOLD_IDLE_MS (default 500 ms).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 IN.pcap OUTDIR [extra taphold args...]" >&2
    exit 2
fi
in=$(realpath "$1")
mkdir -p "$2"
out=$(realpath "$2")
shift 2
cd "$(dirname "$0")/.."
config=${TAPHOLD_CONFIG:-config/default.yaml}
[ -f "$in" ] || { echo "replay: no such capture: $in" >&2; exit 2; }
rm -f "$out"/{destination,source,backup,held}.pcap "$out"/events.csv "$out"/summary.json
bin=${TAPHOLD_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -q -p taphold
    bin=target/release/taphold
fi
exec "$bin" --no-huge -m "${TAPHOLD_MEM_MB:-1024}" --no-pci -l "${TAPHOLD_LCORES:-0,1}" \
    --file-prefix "taphold-replay-$$" --log-level '*:warning' \
    --vdev "net_pcap0,rx_pcap=$in,tx_pcap=$out/destination.pcap,tx_pcap=$out/source.pcap" \
    --vdev "net_pcap1,tx_pcap=$out/backup.pcap" \
    -- --config "$config" --out "$out" --exit-when-idle-ms "${TAPHOLD_IDLE_MS:-500}" "$@"

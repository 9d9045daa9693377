#!/usr/bin/env bash
# Gateway mode beside listener mode, same harness, same FIX order payloads, one
# after the other in one run (benches/RESULTS.md, "Gateway mode").
#
#   benches/gateway.sh [--quick]
#
# Throughput: each mode fed the same 256 orders forever (net_pcap infinite_rx),
# spinning, P's tx dropped (net_pcap with no tx_pcap), the backup link's far end
# net_null0; the median of the per-second `released` rates after the first
# second. Latency: LAT_COUNT orders replayed once, hold time (rx -> release)
# p50/p99/max from the summary: both modes pushed at net_pcap's full speed, so
# these are times under load, compared with each other. Writes
# benches/out/gateway.json and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$root/benches/out
mkdir -p "$out"
DURATION_MS=${DURATION_MS:-6000}
LAT_COUNT=${LAT_COUNT:-20000}
LAT_MS=${LAT_MS:-3000}
[ "${1:-}" = --quick ] && DURATION_MS=2500 LAT_COUNT=2000
trap 'rm -rf /var/run/dpdk/bench-gw-*-$$' EXIT
cargo build --release -q -p taphold
bin=$root/target/release/taphold
python3 benches/gen_gateway_pcap.py "$out/gw-256.pcap" "$out/ls-256.pcap" --count 256
python3 benches/gen_gateway_pcap.py "$out/gw-lat.pcap" "$out/ls-lat.pcap" --count "$LAT_COUNT"

config_for() { # MODE OUT: the shipped replay config of MODE, set for a benchmark
    local src=config/default.yaml
    [ "$1" = gateway ] && src=config/gateway.yaml
    sed -e 's/^idle: .*/idle: spin/' \
        -e 's/^  tx_queues: 2 .*/  tx_queues: 1/' \
        -e 's/^    sink: net_pcap1/    sink: net_null0/' \
        -e "s#^state_dir: .*#state_dir: $out/state-$1#" \
        -e 's/^stats_interval_ms: .*/stats_interval_ms: 1000/' "$src" > "$2"
    grep -q "sink: net_null0" "$2" || { echo "gateway.sh: $src changed shape" >&2; exit 2; }
}

: > "$out/gateway.runs"
for mode in listener gateway; do
    cfg=$out/gw-bench-$mode.yaml
    config_for "$mode" "$cfg"
    pcap=$out/ls-256.pcap lat=$out/ls-lat.pcap
    [ "$mode" = gateway ] && pcap=$out/gw-256.pcap lat=$out/gw-lat.pcap
    tp=("$bin" --no-huge -m 1024 --no-pci -l "0,1" --file-prefix "bench-gw-tp-$$" --log-level '*:warning'
        --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev net_null0
        -- --config "$cfg" --json --duration-ms "$DURATION_MS")
    echo "[gateway.sh] throughput $mode" >&2
    "${tp[@]}" > "$out/gw-tp-$mode.txt" 2>&1
    dir=$out/gw-lat-$mode
    rm -rf "$dir"; mkdir -p "$dir"
    lt=("$bin" --no-huge -m 1024 --no-pci -l "0,1" --file-prefix "bench-gw-lat-$$" --log-level '*:warning'
        --vdev "net_pcap0,rx_pcap=$lat" --vdev net_null0
        -- --config "$cfg" --json --out "$dir" --duration-ms "$LAT_MS")
    echo "[gateway.sh] latency $mode" >&2
    "${lt[@]}" > "$dir/stdout.txt" 2> "$dir/stderr.txt"
    rm -rf "/var/run/dpdk/bench-gw-tp-$$" "/var/run/dpdk/bench-gw-lat-$$"
    printf '%s\t%s\t%s\n' "$mode" "${tp[*]}" "${lt[*]}" | sed "s#$root/##g" >> "$out/gateway.runs"
done

python3 - "$out" <<'PY'
import json, sys
sys.path.insert(0, "benches")
from parse_throughput import taphold
out = sys.argv[1]
rows = {}
for line in open(out + "/gateway.runs"):
    mode, tp_cmd, lat_cmd = line.rstrip("\n").split("\t")
    t = taphold("%s/gw-tp-%s.txt" % (out, mode))
    s = json.load(open("%s/gw-lat-%s/summary.json" % (out, mode)))
    rows[mode] = {
        "msgs_per_s": t["mps"], "samples": t["samples"],
        "hot_path_allocations": t["hot_path_allocations"],
        "latency_released": s["messages"]["released"],
        "hold_ns": s["latency_ns"]["hold"],
        "gateway": s.get("gateway"),
        "throughput_cmd": tp_cmd, "latency_cmd": lat_cmd,
    }
l, g = rows.get("listener", {}), rows.get("gateway", {})
if l.get("msgs_per_s") and g.get("msgs_per_s"):
    rows["gateway_over_listener"] = round(g["msgs_per_s"] / l["msgs_per_s"], 3)
json.dump(rows, open(out + "/gateway.json", "w"), indent=1)
print(json.dumps(rows, indent=1))
PY

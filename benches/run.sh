#!/usr/bin/env bash
# Regenerates every figure in benches/RESULTS.md.
#
#   benches/run.sh [--quick] [throughput] [ring] [latency] [callgrind] [paced] [gateway] [plot]
#
# With no section named, runs them all. Raw outputs go to benches/out/ (gitignored);
# each section leaves a JSON there, and benches/report.py rewrites RESULTS.md from
# whatever JSONs exist (so a subset run keeps the other sections' last figures).
# --quick: 2 s runs, fewer sizes: a smoke test of the script, not figures to record.
#
# Only one busy-polling DPDK process runs at any time: testpmd and taphold are run
# one after the other, never together. Environment: DURATION_MS (throughput run
# length, default 6000), SIZES ("64 256 1024 1500"), CAPS ("64 1024 4096", swept at
# 64 B), SPLIT_SIZES ("64 1500": sizes also run with the harness's tap-model on its own
# lcore, see below), LAT_COUNT (messages per latency replay, 20000), LAT_MS (3000),
# PACED_RATES ("10000,100000,1000000,max"), PACED_PHASE_MS (1000 per fixed rate),
# PACED_MAX_COUNT (messages per phase at most, 200000), PACED_QUIET_MS ("1,100,1000"),
# PACED_QUIET_REPEATS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$root/benches/out
mkdir -p "$out"

quick=0
sections=()
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        throughput|ring|latency|callgrind|paced|gateway|plot) sections+=("$a") ;;
        -h|--help) sed -n 2,19p "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
[ ${#sections[@]} -eq 0 ] && sections=(throughput ring latency callgrind paced gateway plot)
want() { local s; for s in "${sections[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
# EAL runtime directories of this run's processes (a process stopped by a
# timeout, e.g. testpmd under callgrind, cannot remove its own).
trap 'rm -rf /var/run/dpdk/bench-*-$$' EXIT

DURATION_MS=${DURATION_MS:-6000}
SIZES=${SIZES:-64 256 1024 1500}
CAPS=${CAPS:-64 1024 4096}
SPLIT_SIZES=${SPLIT_SIZES:-64 1500}
LAT_COUNT=${LAT_COUNT:-20000}
# Latency replays stop on a timer: the modelled backup node's heartbeats keep the
# appliance busy, so --exit-when-idle-ms would never fire.
LAT_MS=${LAT_MS:-3000}
PACED_RATES=${PACED_RATES:-10000,100000,1000000,max}
PACED_PHASE_MS=${PACED_PHASE_MS:-1000}
PACED_MAX_COUNT=${PACED_MAX_COUNT:-200000}
PACED_QUIET_MS=${PACED_QUIET_MS:-1,100,1000}
PACED_QUIET_REPEATS=${PACED_QUIET_REPEATS:-5}
if [ $quick = 1 ]; then
    DURATION_MS=2500 SIZES="64 1500" CAPS="4096" LAT_COUNT=2000
    PACED_PHASE_MS=200 PACED_MAX_COUNT=20000 PACED_QUIET_MS=1,100 PACED_QUIET_REPEATS=3
fi

log() { printf '[run.sh] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- machine
python3 - "$out/machine.json" <<'EOF'
import json, platform, subprocess, sys
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception as e:
        return "?"
m = {
    "nproc": sh("nproc"),
    "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip(),
    "kernel": platform.release(),
    "dpdk": sh("pkg-config --modversion libdpdk"),
    "rustc": sh("rustc --version"),
    "valgrind": sh("valgrind --version"),
    "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "commit": sh("git rev-parse --short HEAD") + (" (dirty tree)" if sh("git status --porcelain") else ""),
}
json.dump(m, open(sys.argv[1], "w"), indent=1)
EOF

log "building taphold (release)"
cargo build --release -q -p taphold
bin=$root/target/release/taphold
command -v dpdk-testpmd >/dev/null || { echo "run.sh: dpdk-testpmd not found (apt-get install dpdk-dev)" >&2; exit 2; }

# Busy-polling processes must never overlap: refuse to start if another DPDK
# benchmark of ours is still running.
busy_check() {
    if pgrep -x dpdk-testpmd >/dev/null; then
        echo "run.sh: a dpdk-testpmd is already running; not starting a second busy process" >&2
        exit 3
    fi
}

# A copy of the shipped config for the benchmarks: spin (benchmarks only), P's tx
# is net_pcap's drop queue (one queue: no tx_pcap), the far end of the backup link
# is net_null0 (no disk I/O), a stats line every second.
bench_config() { # OUT CAPACITY [IDLE]
    sed -e "s/^idle: .*/idle: ${3:-spin}/" \
        -e 's/^  tx_queues: 2 .*/  tx_queues: 1/' \
        -e 's/^    sink: net_pcap1/    sink: net_null0/' \
        -e "s/^  capacity: 4096/  capacity: $2/" \
        -e 's/^stats_interval_ms: .*/stats_interval_ms: 1000/' \
        config/default.yaml > "$1"
    grep -q "^idle: ${3:-spin}" "$1" && grep -q "sink: net_null0" "$1" && grep -q "capacity: $2" "$1" \
        || { echo "run.sh: config/default.yaml changed shape; fix bench_config" >&2; exit 2; }
}

pcap_for() { # SIZE COUNT -> path
    local p=$out/msgs-$1B-$2.pcap
    [ -f "$p" ] || python3 benches/gen_pcap.py "$p" --count "$2" --payload "$1"
    echo "$p"
}

# ---------------------------------------------------------------- 1. throughput
if want throughput; then
    secs=$(( (DURATION_MS + 999) / 1000 ))
    runs=()
    for s in $SIZES; do runs+=("$s:4096"); done
    for c in $CAPS; do [ "$c" = 4096 ] || runs+=("64:$c"); done
    # "split": the replay harness's tap-model (modelled fibre, tap copy, modelled backup
    # node: hardware in a deployment) on lcore 2, sharing CPU 0 with the main lcore (which
    # mostly sleeps), instead of on the appliance's worker lcore. Both lcores spin.
    for s in $SPLIT_SIZES; do runs+=("$s:4096:split"); done
    : > "$out/throughput.runs"
    for r in "${runs[@]}"; do
        IFS=: read -r size cap place <<< "$r"
        pcap=$(pcap_for "$size" 256)
        cfg=$out/bench-cap$cap.yaml
        bench_config "$cfg" "$cap"
        tag=${size}B-cap$cap
        lcores=(-l 0,1)
        if [ "$place" = split ]; then
            cfg=$out/bench-cap$cap-split.yaml
            bench_config "$cfg" "$cap"
            python3 - "$cfg" <<'EOF'
import re, sys
path = sys.argv[1]
s = open(path).read()
s, n = re.subn(r"^lcores:\n  - lcore: 1\n    roles: \[ingress, tap-rx, egress, link-rx, tap-model\]\n",
               "lcores:\n  - lcore: 1\n    roles: [ingress, tap-rx, egress, link-rx]\n"
               "  - lcore: 2\n    roles: [tap-model]\n", s, flags=re.M)
if n != 1:
    sys.exit("run.sh: config/default.yaml's lcores changed shape; fix the split config")
open(path, "w").write(s)
EOF
            tag=$tag-split
            lcores=(--lcores 0@0,1@1,2@0)
        fi
        busy_check
        tp_cmd=(timeout -s INT $((secs + 2)) dpdk-testpmd --no-huge -m 1024 --no-pci -l 0,1
            --file-prefix "bench-tp-$$" --log-level '*:warning'
            --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1"
            -- --forward-mode=io --port-topology=loop --nb-cores=1 --stats-period 1)
        log "testpmd $tag"
        "${tp_cmd[@]}" > "$out/testpmd-$tag.txt" 2>&1 || true
        th_cmd=("$bin" --no-huge -m 1024 --no-pci "${lcores[@]}" --file-prefix "bench-th-$$" --log-level '*:warning'
            --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev net_null0
            -- --config "$cfg" --json --duration-ms "$DURATION_MS")
        log "taphold $tag"
        "${th_cmd[@]}" > "$out/taphold-$tag.txt" 2>&1
        rm -rf "/var/run/dpdk/bench-tp-$$" "/var/run/dpdk/bench-th-$$"
        printf '%s\t%s\t%s\t%s\t%s\n' "$size" "$cap" "$tag" \
            "${tp_cmd[*]}" "${th_cmd[*]}" | sed "s#$root/##g" >> "$out/throughput.runs"
    done
    python3 benches/parse_throughput.py "$out/throughput.runs" "$out" > "$out/throughput.json"
fi

# ---------------------------------------------------------------- 2. hold ring
if want ring; then
    log "criterion: hold ring vs rte_ring"
    busy_check
    ring_cmd=(cargo bench -p taphold-benches --bench hold_ring)
    [ $quick = 1 ] && ring_cmd+=(-- --warm-up-time 0.5 --measurement-time 1)
    "${ring_cmd[@]}" > "$out/hold_ring.txt" 2>&1
    python3 benches/parse_ring.py "$root/target/criterion" "${ring_cmd[*]}" > "$out/ring.json"
fi

# ---------------------------------------------------------------- 3. release latency
if want latency; then
    pcap=$(pcap_for 64 "$LAT_COUNT")
    : > "$out/latency.runs"
    for mode in tap ack; do
        for delay in 5 50; do
            tag=$mode-${delay}us
            cfg=$out/lat-$tag.yaml
            bench_config "$cfg" 4096
            # Set release.gate and the link's fibre_delay_us, replacing the shipped values
            # or adding the keys where the shipped config does not have them yet.
            python3 - "$cfg" "$mode" "$delay" <<'EOF'
import re, sys
path, mode, delay = sys.argv[1:]
s = open(path).read()
if re.search(r"^  gate: ", s, re.M):
    s = re.sub(r"^  gate: \S+", "  gate: " + mode, s, count=1, flags=re.M)
else:
    s = s.replace("  content: full ", "  gate: %s\n  content: full " % mode, 1)
if re.search(r"^    fibre_delay_us: ", s, re.M):
    s = re.sub(r"^    fibre_delay_us: \S+", "    fibre_delay_us: " + delay, s, count=1, flags=re.M)
else:
    s = s.replace("    sink: net_null0", "    sink: net_null0\n    fibre_delay_us: %s" % delay, 1)
open(path, "w").write(s)
EOF
            dir=$out/lat-$tag
            rm -rf "$dir"; mkdir -p "$dir"
            busy_check
            cmd=("$bin" --no-huge -m 1024 --no-pci -l 0,1 --file-prefix "bench-lat-$$" --log-level '*:warning'
                --vdev "net_pcap0,rx_pcap=$pcap" --vdev net_null0
                -- --config "$cfg" --json --out "$dir" --duration-ms "$LAT_MS")
            log "latency $tag"
            rc=0
            "${cmd[@]}" > "$dir/stdout.txt" 2> "$dir/stderr.txt" || rc=$?
            if [ $rc = 2 ] && grep -qE "unknown (field|variant).*(gate|fibre_delay_us|ack)" "$dir/stderr.txt"; then
                echo "pending: release.gate not implemented ($(grep -m1 -E 'unknown' "$dir/stderr.txt"))" | tee "$dir/pending"
            elif [ $rc != 0 ]; then
                echo "run.sh: latency run $tag failed (exit $rc), see $dir/stderr.txt" >&2; exit 1
            fi
            printf '%s\t%s\t%s\t%s\n' "$mode" "$delay" "$tag" "${cmd[*]}" | sed "s#$root/##g" >> "$out/latency.runs"
        done
    done
    # The current harness (no fibre model, tap at 0 m, release on the tap copy): a
    # baseline that works today whatever the state of release.gate.
    cfg=$out/lat-baseline.yaml
    bench_config "$cfg" 4096
    dir=$out/lat-baseline
    rm -rf "$dir"; mkdir -p "$dir"
    busy_check
    cmd=("$bin" --no-huge -m 1024 --no-pci -l 0,1 --file-prefix "bench-lat-$$" --log-level '*:warning'
        --vdev "net_pcap0,rx_pcap=$pcap" --vdev net_null0
        -- --config "$cfg" --json --out "$dir" --duration-ms "$LAT_MS")
    log "latency baseline (no fibre model)"
    "${cmd[@]}" > "$dir/stdout.txt" 2> "$dir/stderr.txt"
    printf '%s\t%s\t%s\t%s\n' "tap" "none" "baseline" "${cmd[*]}" | sed "s#$root/##g" >> "$out/latency.runs"
    python3 benches/parse_latency.py "$out/latency.runs" "$out" > "$out/latency.json"
fi

# ---------------------------------------------------------------- 4. instructions by role
if want callgrind; then
    pcap=$(pcap_for 64 256)
    cfg=$out/bench-cap4096.yaml
    bench_config "$cfg" 4096
    cg=$out/callgrind.out
    rm -f "$cg"
    busy_check
    cmd=(valgrind --tool=callgrind --dump-instr=yes "--toggle-collect=*Role*poll*"
        --callgrind-out-file="$cg"
        "$bin" --no-huge -m 1024 --no-pci -l 0,1 --file-prefix "bench-cg-$$" --log-level '*:warning'
        --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev net_null0
        -- --config "$cfg" --json --duration-ms $([ $quick = 1 ] && echo 1500 || echo 4000))
    log "callgrind (about a minute)"
    "${cmd[@]}" > "$out/callgrind.txt" 2>&1
    accepted=$(python3 -c '
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("\n{") + 1 : t.rindex("}") + 1])
print(j["messages"]["accepted"])' "$out/callgrind.txt")
    python3 benches/callgrind_roles.py "$cg" "$bin" "$accepted" --json "$out/callgrind-roles.json" \
        > "$out/callgrind-roles.txt"
    python3 - "$out/callgrind-roles.json" "${cmd[*]}" "$root" <<'EOF'
import json, sys
path, cmd, root = sys.argv[1:]
j = json.load(open(path))
j["command"] = cmd.replace(root + "/", "")
json.dump(j, open(path, "w"), indent=1)
EOF
    # testpmd's io forward under the same tool: instructions per forwarded packet. Its
    # binary is stripped of static symbols, so collect in every thread EAL started (the
    # forwarding lcore; the interrupt and telemetry threads only wait).
    tcg=$out/callgrind-testpmd.out
    rm -f "$tcg"
    busy_check
    tcmd=(timeout -s INT 25 valgrind --tool=callgrind "--toggle-collect=start_thread"
        --callgrind-out-file="$tcg"
        dpdk-testpmd --no-huge -m 1024 --no-pci -l 0,1 --file-prefix "bench-tpcg-$$" --log-level '*:warning'
        --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1"
        -- --forward-mode=io --port-topology=loop --nb-cores=1 --stats-period 5)
    log "callgrind testpmd"
    "${tcmd[@]}" > "$out/callgrind-testpmd.txt" 2>&1 || true
    python3 - "$tcg" "$out/callgrind-testpmd.txt" "${tcmd[*]}" "$root" > "$out/callgrind-testpmd.json" <<'EOF'
import json, re, sys
cg, txt, cmd, root = sys.argv[1:]
ir = 0
for line in open(cg):
    if line.startswith("summary:") or line.startswith("totals:"):
        ir = int(line.split()[1])
t = open(txt).read()
m = re.findall(r"Accumulated forward statistics.*?TX-packets:\s+(\d+)", t, re.S)
pkts = int(m[-1]) if m else 0
print(json.dumps({"ir": ir, "packets": pkts, "ir_per_packet": round(ir / pkts, 1) if pkts else None,
                  "command": cmd.replace(root + "/", "")}, indent=1))
EOF
fi

# ---------------------------------------------------------------- gateway mode beside listener mode
if want gateway; then
    busy_check
    gw_args=()
    [ $quick = 1 ] && gw_args=(--quick)
    benches/gateway.sh "${gw_args[@]}" > "$out/gateway.txt"
fi

# ---------------------------------------------------------------- 5. paced load
# The generator (taphold-paced gen, memif server, main lcore on CPU 0) offers
# 64-byte messages to P at fixed rates and times each released one end to end;
# the device under test is a memif client on P with its worker lcore spinning on
# CPU 1 (its main lcore shares CPU 0 with the generator: on 2 cores the generator
# takes the core the appliance's main lcore mostly sleeps on). One after the
# other, same generator, same schedule: (a) the plain forwarder, (b) the tap
# gate, tap a few metres away (the model's tap at 0 m), (c) the ack gate with the
# backup node 5 km (25 us one way) and 50 km (250 us) away.
if want paced; then
    log "building taphold-paced (release)"
    cargo build --release -q -p taphold-benches --bin taphold-paced
    pbin=$root/target/release/taphold-paced
    : > "$out/paced.runs"
    gen_args=(gen --rates "$PACED_RATES" --phase-ms "$PACED_PHASE_MS" --max-count "$PACED_MAX_COUNT"
        --quiet-ms "$PACED_QUIET_MS" --quiet-repeats "$PACED_QUIET_REPEATS")
    for run in fwd tap ack-5km ack-50km; do
        dir=$out/paced-$run
        rm -rf "$dir"; mkdir -p "$dir"
        sock=/tmp/taphold-paced-$$.sock
        rm -f "$sock"
        case $run in
            fwd) dut=("$pbin" --no-huge -m 512 --no-pci -l 0,1 --file-prefix "bench-pdut-$$" --log-level '*:warning'
                    --vdev "net_memif0,role=client,socket=$sock" -- fwd --duration-ms 600000 --out "$dir/residence.csv") ;;
            *)
                cfg=$out/paced-$run.yaml
                bench_config "$cfg" 4096
                case $run in tap) gate=tap; delay=0 ;; ack-5km) gate=ack; delay=25 ;; *) gate=ack; delay=250 ;; esac
                python3 - "$cfg" "$gate" "$delay" <<'EOF'
import re, sys
path, gate, delay = sys.argv[1:]
s = open(path).read()
n = 0
for pat, rep in [(r"^  port: net_pcap0", "  port: net_memif0"),
                 (r"^  gate: \S+", "  gate: " + gate),
                 (r"^    fibre_delay_us: \S+", "    fibre_delay_us: " + delay),
                 (r"^  max_payload: \S+", "  max_payload: 1472")]:
    s, k = re.subn(pat, rep, s, count=1, flags=re.M)
    n += k
if n != 4:
    sys.exit("run.sh: config/default.yaml changed shape; fix the paced config")
open(path, "w").write(s)
EOF
                dut=("$bin" --no-huge -m 1024 --no-pci -l 0,1 --file-prefix "bench-pdut-$$" --log-level '*:warning'
                    --vdev "net_memif0,role=client,socket=$sock" --vdev net_null0
                    -- --config "$cfg" --json --out "$dir" --duration-ms 600000) ;;
        esac
        gcmd=("$pbin" --no-huge -m 512 --no-pci -l 0 --file-prefix "bench-pgen-$$" --log-level '*:warning'
            --vdev "net_memif0,role=server,socket=$sock" -- "${gen_args[@]}" --out "$dir/gen.json")
        busy_check
        log "paced $run"
        "${gcmd[@]}" > "$dir/gen.txt" 2>&1 &
        gpid=$!
        sleep 1
        "${dut[@]}" > "$dir/stdout.txt" 2> "$dir/stderr.txt" &
        dpid=$!
        grc=0; wait $gpid || grc=$?
        kill -INT $dpid 2>/dev/null || true
        drc=0; wait $dpid || drc=$?
        rm -f "$sock"; rm -rf "/var/run/dpdk/bench-pgen-$$" "/var/run/dpdk/bench-pdut-$$"
        if [ $grc != 0 ] || [ $drc != 0 ]; then
            echo "run.sh: paced $run failed (generator exit $grc, device exit $drc); see $dir" >&2; exit 1
        fi
        printf '%s\t%s\t%s\n' "$run" "${gcmd[*]}" "${dut[*]}" | sed "s#$root/##g" >> "$out/paced.runs"
    done
    python3 benches/paced_report.py "$out/paced.runs" "$out" > "$out/paced.json"
    python3 benches/plot_paced.py "$out/paced.json" benches/added-latency.svg
fi

# ---------------------------------------------------------------- 6. plot
if want plot; then
    python3 benches/plot.py "$out" benches/hold-time-cdf.svg
fi

python3 benches/report.py "$out" benches/RESULTS.md
log "wrote benches/RESULTS.md"

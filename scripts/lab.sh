#!/usr/bin/env bash
# The live namespace lab (docs/lab.md).
#
#   scripts/lab.sh up                 build the namespaces, veths, bridge, taps; start the link emulators
#   scripts/lab.sh down               kill the lab's processes, delete everything named $LAB_PREFIX-*
#   scripts/lab.sh status             namespaces, links, tc filters, lab processes
#   scripts/lab.sh appliance OUTDIR [taphold args...]
#                                     run taphold (foreground) in the app namespace, config/lab.yaml
#   scripts/lab.sh emu 1|2 COMMAND... control a link emulator (stats, get, 'a2b delay_us=50', 'both cut=1', 'both clear')
#   scripts/lab.sh src|dst ARGS...    run scripts/lab/source.py | dest.py in the source | destination namespace
#   scripts/lab.sh exec NS CMD...     run CMD in namespace $LAB_PREFIX-NS (app, sw, src, dst, emu1, ...)
#
# Environment: LAB_PREFIX (default th; lowercase letters and digits, at most 9)
# names every namespace and interface so several labs can coexist; LAB_BIN_DIR
# (default target/debug) holds taphold and taphold-linkemu; LAB_CONFIG (default
# config/lab.yaml); LAB_MEM_MB (256); LAB_LCORES (0,1); LAB_SEED (1) seeds the
# emulators; LAB_EMU1 / LAB_EMU2 initial emulator settings ('delay_us=20 ...').
# Traffic never leaves the lab's own namespaces: nothing is created in the root
# namespace. Root, iproute2 (ip, tc) and ethtool are needed.
set -euo pipefail

P=${LAB_PREFIX:-th}
if ! [[ $P =~ ^[a-z][a-z0-9]{0,8}$ ]]; then
    echo "lab: LAB_PREFIX '$P' must be 1-9 lowercase letters/digits, starting with a letter" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=/run/taphold-lab-$P
BIN=${LAB_BIN_DIR:-$ROOT/target/debug}
CONFIG=${LAB_CONFIG:-$ROOT/config/lab.yaml}
NAMESPACES=(sw src dst app emu1 emu2 node1 node2)

die() { echo "lab: $*" >&2; exit 1; }
ns() { echo "$P-$1"; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

need_tools() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v tc >/dev/null || missing+=(iproute2)
    command -v ethtool >/dev/null || missing+=(ethtool)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "lab: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } ||
            die "could not install ${missing[*]}"
    fi
}

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-" || true; }

# A veth pair: NAME in namespace NS1, PEER in NS2, both created there directly.
veth() {
    local ns1=$1 if1=$2 mac1=$3 ns2=$4 if2=$5 mac2=$6
    ip link add "$P-$if1" netns "$(ns "$ns1")" address "$mac1" type veth \
        peer name "$P-$if2" netns "$(ns "$ns2")" address "$mac2"
    quiet_if "$ns1" "$if1"
    quiet_if "$ns2" "$if2"
}

# No IPv6, no offloads (af_packet must see whole, checksummed frames), up.
quiet_if() {
    local n=$1 dev=$P-$2
    nsx "$n" sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" 2>/dev/null || true
    nsx "$n" ethtool -K "$dev" tx off rx off gso off gro off tso off >/dev/null 2>&1 || true
    ip -n "$(ns "$n")" link set "$dev" up
}

wait_for() { # FILE SECONDS
    local i
    for ((i = 0; i < $2 * 20; i++)); do [ -e "$1" ] && return 0; sleep 0.05; done
    return 1
}

start_emu() { # N
    local n=$1 emu=$BIN/taphold-linkemu init_var="LAB_EMU$1"
    [ -x "$emu" ] || die "$emu missing: cargo build -p taphold-lab (or set LAB_BIN_DIR)"
    rm -f "$RUN/emu$n.sock"
    # ip netns exec execs the emulator: $! is its pid.
    # shellcheck disable=SC2086
    nohup ip netns exec "$(ns "emu$n")" "$emu" run --a "$P-e${n}a" --b "$P-e${n}b" \
        --ctl "$RUN/emu$n.sock" --seed "$(( ${LAB_SEED:-1} + n ))" ${!init_var:-} \
        >"$RUN/emu$n.log" 2>&1 </dev/null &
    echo $! >"$RUN/emu$n.pid"
    wait_for "$RUN/emu$n.sock" 5 || die "emulator $n did not start: $(cat "$RUN/emu$n.log")"
}

up() {
    need_tools
    [ -z "$(our_namespaces)" ] || die "a lab with prefix $P exists: scripts/lab.sh down first (LAB_PREFIX=$P)"
    mkdir -p "$RUN"
    local n
    for n in "${NAMESPACES[@]}"; do
        ip netns add "$(ns "$n")"
        nsx "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        nsx "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        ip -n "$(ns "$n")" link set lo up
    done

    # The switch: one bridge joining the source, the destination and P.
    ip -n "$(ns sw)" link add "$P-br" address 02:00:00:00:f0:00 type bridge
    nsx sw sysctl -qw "net.ipv6.conf.$P-br.disable_ipv6=1"
    ip -n "$(ns sw)" link set "$P-br" up
    veth src src0 02:00:00:00:01:01 sw swsrc 02:00:00:00:f0:01
    veth dst dst0 02:00:00:00:00:02 sw swdst 02:00:00:00:f0:02
    veth app p 02:00:00:00:00:01 sw swp 02:00:00:00:f0:03
    for n in swsrc swdst swp; do ip -n "$(ns sw)" link set "$P-$n" master "$P-br"; done

    # Kernel source and destination. The appliance answers ARP for 198.51.100.1.
    for n in 11 12 13 14; do ip -n "$(ns src)" addr add "192.0.2.$n/24" dev "$P-src0"; done
    ip -n "$(ns src)" route add 198.51.100.0/24 dev "$P-src0"
    ip -n "$(ns dst)" addr add 203.0.113.10/24 dev "$P-dst0"
    ip -n "$(ns dst)" route add 198.51.100.0/24 dev "$P-dst0"

    # Backup links: app Bk <-> emuK side a | emuK side b <-> nodeK; tap Tk mirrors Bk's egress.
    for n in 1 2; do
        veth app "b$n" "02:00:00:00:0b:0$n" "emu$n" "e${n}a" "02:00:00:00:e$n:0a"
        veth "emu$n" "e${n}b" "02:00:00:00:e$n:0b" "node$n" "n$n" "02:00:00:00:0c:0$n"
        veth app "t$n" "02:00:00:00:0d:0$n" app "t${n}m" "02:00:00:00:0d:1$n"
        nsx app tc qdisc add dev "$P-b$n" clsact
        nsx app tc filter add dev "$P-b$n" egress u32 match u32 0 0 \
            action mirred egress mirror dev "$P-t${n}m"
    done

    start_emu 1
    start_emu 2
    echo "lab $P up: namespaces ${NAMESPACES[*]/#/$P-}; run 'scripts/lab.sh status'"
}

kill_pid() { # PID
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
}

down() {
    local f pid n
    if [ -d "$RUN" ]; then
        for f in "$RUN"/*.pid; do
            [ -e "$f" ] || continue
            pid=$(cat "$f")
            [ -n "$pid" ] && kill_pid "$pid"
        done
    fi
    for n in $(our_namespaces); do
        # Anything still running inside our own namespaces was started in the lab.
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill_pid "$pid"; done
        ip netns del "$n" 2>/dev/null || true
    done
    # Nothing is created in the root namespace, but leave none behind if it ever was.
    for n in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$P-" || true); do
        ip link del "$n" 2>/dev/null || true
    done
    rm -rf "$RUN" "/var/run/dpdk/taphold-lab-$P"
    echo "lab $P down"
}

status() {
    local n f
    echo "== namespaces ($P-*)"
    our_namespaces
    for n in $(our_namespaces); do
        echo "== $n"
        ip -n "$n" -br addr show | grep -v '^lo ' || true
    done
    for n in 1 2; do
        if ip netns list | grep -q "^$(ns app) "; then
            echo "== tc egress filter on $P-b$n"
            nsx app tc filter show dev "$P-b$n" egress 2>/dev/null || true
        fi
    done
    echo "== processes"
    if [ -d "$RUN" ]; then
        for f in "$RUN"/*.pid; do
            [ -e "$f" ] || continue
            local pid
            pid=$(cat "$f")
            if kill -0 "$pid" 2>/dev/null; then
                echo "$(basename "$f" .pid) pid $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-160)"
            else
                echo "$(basename "$f" .pid) pid $pid: not running"
            fi
        done
    fi
}

appliance() {
    [ $# -ge 1 ] || die "usage: lab.sh appliance OUTDIR [taphold args...]"
    local out=$1
    shift
    mkdir -p "$out" "$RUN"
    [ -x "$BIN/taphold" ] || die "$BIN/taphold missing: cargo build -p taphold (or set LAB_BIN_DIR)"
    echo $$ >"$RUN/appliance.pid"
    # qdisc_bypass=0 on the backup links: DPDK's af_packet would otherwise
    # skip the qdisc layer, and with it the tc mirror that models the tap.
    exec ip netns exec "$(ns app)" "$BIN/taphold" \
        --no-huge -m "${LAB_MEM_MB:-256}" --no-pci -l "${LAB_LCORES:-0,1}" \
        --file-prefix "taphold-lab-$P" --log-level '*:warning' \
        --vdev "net_af_packet0,iface=$P-p,qpairs=1" \
        --vdev "net_af_packet1,iface=$P-b1,qpairs=1,qdisc_bypass=0" \
        --vdev "net_af_packet2,iface=$P-t1,qpairs=1" \
        --vdev "net_af_packet3,iface=$P-b2,qpairs=1,qdisc_bypass=0" \
        --vdev "net_af_packet4,iface=$P-t2,qpairs=1" \
        -- --config "$CONFIG" --out "$out" "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
up) up ;;
down) down ;;
status) status ;;
appliance) appliance "$@" ;;
emu)
    [ $# -ge 2 ] || die "usage: lab.sh emu 1|2 COMMAND..."
    n=$1
    shift
    exec "$BIN/taphold-linkemu" ctl "$RUN/emu$n.sock" "$@"
    ;;
src) exec ip netns exec "$(ns src)" python3 "$ROOT/scripts/lab/source.py" "$@" ;;
dst) exec ip netns exec "$(ns dst)" python3 "$ROOT/scripts/lab/dest.py" "$@" ;;
exec)
    [ $# -ge 2 ] || die "usage: lab.sh exec NS CMD..."
    n=$1
    shift
    exec ip netns exec "$(ns "$n")" "$@"
    ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

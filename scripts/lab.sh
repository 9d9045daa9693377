#!/usr/bin/env bash
# The live namespace lab (docs/lab.md).
#
#   scripts/lab.sh up                 build the namespaces, veths, bridge, taps; start the link
#                                     emulators (backup links and tap paths) and both backup nodes
#   scripts/lab.sh down               kill the lab's processes, delete everything named $LAB_PREFIX-*
#   scripts/lab.sh status             namespaces, links, tc filters, lab processes
#   scripts/lab.sh appliance OUTDIR [taphold args...]
#                                     run taphold (foreground) in the app namespace, config/lab.yaml
#   scripts/lab.sh emu 1|2|t1|t2|d COMMAND...
#                                     control a link emulator: 1|2 on backup link K (app -> node
#                                     is a2b), t1|t2 on tap path K (mirror -> tap port is a2b),
#                                     d on the destination's link (switch -> destination is a2b)
#                                     (stats, get, 'a2b delay_us=50', 'both cut=1', 'both clear')
#   scripts/lab.sh node 1|2 start|stop|kill9|reset|inspect|status|log|export [ARGS...]
#                                     the backup node on link K (taphold-backup in $LAB_PREFIX-nodeK):
#                                     start (keeps its journal), stop (SIGTERM: stats JSON written),
#                                     kill9 (SIGKILL), reset (stop, delete the journal, start),
#                                     inspect (taphold-backup journal inspect), status, log,
#                                     export (taphold-backup journal export, ARGS as its own)
#                                     takeover (replay above the delivered seq: taphold-backup
#                                     takeover --control), state (its control socket's status)
#   scripts/lab.sh arbiter OUTDIR [ARGS...]
#                                     run taphold-arbiter (foreground) in the destination namespace
#                                     (inputs A :9100, B1 :9101, B2 :9102; ordered stream to
#                                     127.0.0.1:9200; summary.json in OUTDIR)
#   scripts/lab.sh tap 1|2 cut|restore
#                                     delete | re-add the tc mirror filter on Bk (the passive tap)
#   scripts/lab.sh src|dst ARGS...    run scripts/lab/source.py | dest.py in the source | destination namespace
#   scripts/lab.sh exec NS CMD...     run CMD in namespace $LAB_PREFIX-NS (app, sw, src, dst, emu1, ...)
#   scripts/lab.sh router up|down     a plain kernel IPv4 router ($LAB_PREFIX-rtr, one-armed on the
#                                     bridge) owning the gateway addresses 10.71.1.1 and 10.71.2.1:
#                                     the baseline taphold's gateway mode replaces (LAB_GATEWAY=1)
#   scripts/lab.sh fix exchange DIR | fix engine DIR [initiator args...]
#                                     a real FIX session (tools/fix, target/fix): QuickFIX's example
#                                     executor on 10.71.2.2:9878 in the destination namespace, our
#                                     QuickFIX initiator in the source namespace; fresh DIR per run
#
# Environment: LAB_PREFIX (default th; lowercase letters and digits, at most 9)
# names every namespace and interface so several labs can coexist; LAB_BIN_DIR
# (default target/debug) holds taphold and taphold-linkemu; LAB_CONFIG (default
# config/lab.yaml); LAB_MEM_MB (256); LAB_LCORES (0,1); LAB_SEED (1) seeds the
# emulators; LAB_EMU1 / LAB_EMU2 / LAB_EMUT1 / LAB_EMUT2 initial emulator settings
# ('delay_us=20 ...'), LAB_EMUD the destination link's; LAB_NODES (default 1; 0: up starts no backup node);
# LAB_GATEWAY=1: up also gives the source and destination namespaces the gateway-mode
# addressing (docs/lab.md, "A real FIX session through a gateway"): the trading engine
# 10.71.1.2/24 via 10.71.1.1, the exchange 10.71.2.2/24 via 10.71.2.1.
# Backup node K's config, journal, log and stats are under $RUN/nodeK/
# (/run/taphold-lab-$LAB_PREFIX/nodeK/journal); they survive stop, kill9 and
# start, and go with `down`. The appliance's state directory (its epoch) is
# $RUN/app-state: it survives appliance restarts, and goes with `down`.
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
NAMESPACES=(sw src dst emud app emu1 emu2 tap1 tap2 node1 node2)

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

start_emu() { # NAME NAMESPACE IFACE_A IFACE_B SEED
    local name=$1 nsn=$2 a=$3 b=$4 seed=$5 emu=$BIN/taphold-linkemu
    local init_var="LAB_${name^^}"
    [ -x "$emu" ] || die "$emu missing: cargo build -p taphold-lab (or set LAB_BIN_DIR)"
    rm -f "$RUN/$name.sock"
    # ip netns exec execs the emulator: $! is its pid.
    # shellcheck disable=SC2086
    nohup ip netns exec "$(ns "$nsn")" "$emu" run --a "$P-$a" --b "$P-$b" \
        --ctl "$RUN/$name.sock" --seed "$seed" ${!init_var:-} \
        >"$RUN/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
    wait_for "$RUN/$name.sock" 5 || die "emulator $name did not start: $(cat "$RUN/$name.log")"
}

# The backup node on link N: its config (from $CONFIG's digest key and
# stream), journal, log and stats JSON live in $RUN/nodeN/.
node_dir() { echo "$RUN/node$1"; }

node_config() { # N
    local n=$1 d key stream
    d=$(node_dir "$n")
    key=$(sed -n 's/^digest_key: *"\{0,1\}\([0-9a-fA-F]\{32\}\)"\{0,1\}.*/\1/p' "$CONFIG" | head -1)
    stream=$(sed -n 's/^stream_id: *\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
    [ -n "$key" ] || die "no digest_key in $CONFIG"
    mkdir -p "$d"
    cat >"$d/backup.yaml" <<YAML
# Written by scripts/lab.sh for backup node $n (link index $((n - 1))).
port: net_af_packet0
mac: 02:00:00:00:0c:0$n
peer_mac: 02:00:00:00:0b:0$n
link: $((n - 1))
stream: ${stream:-1}
digest_key: "$key"
allow_demo_key: true   # a lab: the key is config/lab.yaml's
journal:
  dir: $d/journal
  segment_bytes: ${LAB_NODE_SEGMENT_BYTES:-67108864}
  fsync_every_records: 1
  trim_below: ${LAB_NODE_TRIM:-released}
heartbeat_period_us: 10000
idle: backoff
stats_interval_ms: 1000
trim_interval_ms: ${LAB_NODE_TRIM_MS:-1000}
mempool:
  mbufs: 4095
  cache: 256
  data_room: 2176
# The destination side: the arbiter in $P-dst sends target confirmations and
# resend requests to 198.51.100.1$n:9300; takeover replays go to its input B$n.
destination:
  port: net_af_packet1
  mac: 02:00:00:00:0c:1$n
  ip: 198.51.100.1$n
  udp_port: 9300
  peer_mac: 02:00:00:00:00:02
  replay_to: 203.0.113.10:910$n
takeover:
  rate_per_s: ${LAB_TAKEOVER_RATE:-20000}
  auto_after_ms: ${LAB_AUTO_TAKEOVER_MS:-null}
control_socket: $d/control.sock
YAML
    # A key rotation under way in $CONFIG (docs/security.md): the nodes get the
    # same next key and switch time.
    grep -E '^digest_key_next_(file|from):' "$CONFIG" >>"$d/backup.yaml" || true
}

# The destination's arbiter (taphold-arbiter in $P-dst): the appliance's releases
# on 203.0.113.10:9100 (input A), each node's replays and resend answers on
# :9101 / :9102 (B1, B2); the ordered stream, payloads only, to 127.0.0.1:9200
# (where `lab.sh dst --listen 127.0.0.1:9200` records it); target confirmations
# to the appliance (198.51.100.1:9001) and both nodes.
arbiter_config() { # OUTDIR
    local key stream
    key=$(sed -n 's/^digest_key: *"\{0,1\}\([0-9a-fA-F]\{32\}\)"\{0,1\}.*/\1/p' "$CONFIG" | head -1)
    stream=$(sed -n 's/^stream_id: *\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
    mkdir -p "$RUN/arbiter-state"
    cat >"$1/arbiter.yaml" <<YAML
# Written by scripts/lab.sh.
stream: ${stream:-1}
digest_key: "$key"
allow_demo_key: true   # a lab: the key is config/lab.yaml's
inputs:
  - name: A
    bind: 203.0.113.10:9100
  - name: B1
    bind: 203.0.113.10:9101
  - name: B2
    bind: 203.0.113.10:9102
deliver:
  udp: 127.0.0.1:9200
  header: false
confirm_to: [198.51.100.1:9001, 198.51.100.11:9300, 198.51.100.12:9300]
resend_to: [198.51.100.11:9300, 198.51.100.12:9300]
resend_from: B1
window: 16384
max_payload: 1500
max_epochs: 8
gap_timeout_ms: ${LAB_GAP_TIMEOUT_MS:-20}
resend_interval_ms: 50
resend_tries: 20
on_gap: wait
confirm_interval_ms: 50
confirm_idle_ms: 20
state_dir: $RUN/arbiter-state
YAML
}

arbiter() {
    [ $# -ge 1 ] || die "usage: lab.sh arbiter OUTDIR [taphold-arbiter args...]"
    local out=$1
    shift
    mkdir -p "$out" "$RUN"
    [ -x "$BIN/taphold-arbiter" ] || die "$BIN/taphold-arbiter missing: cargo build -p taphold-arbiter"
    arbiter_config "$out"
    echo $$ >"$RUN/arbiter.pid"
    exec ip netns exec "$(ns dst)" "$BIN/taphold-arbiter" --config "$out/arbiter.yaml" --out "$out" "$@"
}

node_running() { # N
    local f pid
    f=$(node_dir "$1")/node.pid
    [ -e "$f" ] && pid=$(cat "$f") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

node_start() { # N
    local n=$1 d bin=$BIN/taphold-backup i
    d=$(node_dir "$n")
    [ -x "$bin" ] || die "$bin missing: cargo build -p taphold-backup (or set LAB_BIN_DIR)"
    node_running "$n" && die "backup node $n is already running (pid $(cat "$d/node.pid"))"
    node_config "$n"
    rm -f "$d/stats.json"
    echo "== start $(date +%T.%N)" >>"$d/node.log"
    local from
    from=$(wc -c <"$d/node.log")
    nohup ip netns exec "$(ns "node$n")" "$bin" \
        --no-huge -m 256 --no-pci -l 0 --file-prefix "taphold-lab-$P-n$n" --log-level '*:warning' \
        --vdev "net_af_packet0,iface=$P-n$n,qpairs=1" \
        --vdev "net_af_packet1,iface=$P-d$n,qpairs=1" \
        -- --config "$d/backup.yaml" --stats-json "$d/stats.json" \
        >>"$d/node.log" 2>&1 </dev/null &
    echo $! >"$d/node.pid"
    # Ready once its port is started (it polls from then on).
    for ((i = 0; i < 200; i++)); do
        tail -c +"$((from + 1))" "$d/node.log" | grep -q "port net_af_packet0 .*link" && return 0
        kill -0 "$(cat "$d/node.pid")" 2>/dev/null ||
            die "backup node $n exited: $(tail -c +"$((from + 1))" "$d/node.log")"
        sleep 0.05
    done
    die "backup node $n not ready after 10 s: $(tail -c +"$((from + 1))" "$d/node.log")"
}

node_stop() { # N SIGNAL
    local n=$1 sig=$2 d pid i
    d=$(node_dir "$n")
    node_running "$n" || { rm -f "$d/node.pid"; return 0; }
    pid=$(cat "$d/node.pid")
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.025
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.1
    fi
    echo "== stopped by SIG$sig $(date +%T.%N)" >>"$d/node.log"
    rm -f "$d/node.pid"
}

node_cmd() { # N COMMAND [ARGS...]
    local n=$1 d
    [[ $n =~ ^[12]$ ]] || die "usage: lab.sh node 1|2 start|stop|kill9|reset|inspect|status|log|export"
    d=$(node_dir "$n")
    case "${2:-}" in
    start) node_start "$n" ;;
    stop) node_stop "$n" TERM ;;
    kill9) node_stop "$n" KILL ;;
    reset)
        node_stop "$n" TERM
        rm -rf "$d/journal"
        node_start "$n"
        ;;
    inspect) exec "$BIN/taphold-backup" journal inspect "$d/journal" ;;
    export) shift 2; exec "$BIN/taphold-backup" journal export "$d/journal" "$@" ;;
    status)
        if node_running "$n"; then echo "node $n: running, pid $(cat "$d/node.pid")"; else echo "node $n: stopped"; fi
        ;;
    log) exec cat "$d/node.log" ;;
    takeover | state) exec "$BIN/taphold-backup" "${2/state/status}" --control "$d/control.sock" ;;
    *) die "usage: lab.sh node 1|2 start|stop|kill9|reset|inspect|status|log|export|takeover|state" ;;
    esac
}

# The passive tap of link N is the tc mirror filter on Bk's egress.
tap_cmd() { # N cut|restore
    local n=$1
    [[ $n =~ ^[12]$ ]] || die "usage: lab.sh tap 1|2 cut|restore"
    case "${2:-}" in
    cut) nsx app tc filter del dev "$P-b$n" egress ;;
    restore)
        nsx app tc filter add dev "$P-b$n" egress u32 match u32 0 0 \
            action mirred egress mirror dev "$P-t${n}m"
        ;;
    *) die "usage: lab.sh tap 1|2 cut|restore" ;;
    esac
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
    # The destination hangs off the switch through its own link emulator
    # (emud: side a on the switch, side b toward the destination), so the
    # path from the appliance and the nodes to the destination can lose,
    # duplicate and reorder (lab.sh emu d 'a2b loss=0.03 ...').
    veth dst dst0 02:00:00:00:00:02 emud dda 02:00:00:00:ed:0b
    veth emud dsw 02:00:00:00:ed:0a sw swdst 02:00:00:00:f0:02
    veth app p 02:00:00:00:00:01 sw swp 02:00:00:00:f0:03
    # Each backup node's destination-facing port D (198.51.100.1N, answered
    # by the node itself): replays and resends to the destination's arbiter,
    # target confirmations and resend requests from it.
    veth node1 d1 02:00:00:00:0c:11 sw swn1 02:00:00:00:f0:11
    veth node2 d2 02:00:00:00:0c:12 sw swn2 02:00:00:00:f0:12
    for n in swsrc swdst swp swn1 swn2; do ip -n "$(ns sw)" link set "$P-$n" master "$P-br"; done

    # Kernel source and destination. The appliance answers ARP for 198.51.100.1.
    for n in 11 12 13 14; do ip -n "$(ns src)" addr add "192.0.2.$n/24" dev "$P-src0"; done
    ip -n "$(ns src)" route add 198.51.100.0/24 dev "$P-src0"
    ip -n "$(ns dst)" addr add 203.0.113.10/24 dev "$P-dst0"
    ip -n "$(ns dst)" route add 198.51.100.0/24 dev "$P-dst0"
    if [ "${LAB_GATEWAY:-0}" = 1 ]; then gateway_addresses; fi

    # Backup links: app Bk <-> emuK side a | emuK side b <-> nodeK. The tap:
    # Bk's egress mirrored to TkM <-> tapK side a (tKx) | tapK side b (tKy) <-> Tk.
    for n in 1 2; do
        veth app "b$n" "02:00:00:00:0b:0$n" "emu$n" "e${n}a" "02:00:00:00:e$n:0a"
        veth "emu$n" "e${n}b" "02:00:00:00:e$n:0b" "node$n" "n$n" "02:00:00:00:0c:0$n"
        veth app "t${n}m" "02:00:00:00:0d:1$n" "tap$n" "t${n}x" "02:00:00:00:0d:2$n"
        veth "tap$n" "t${n}y" "02:00:00:00:0d:3$n" app "t$n" "02:00:00:00:0d:0$n"
        nsx app tc qdisc add dev "$P-b$n" clsact
        tap_cmd "$n" restore
    done

    local seed=${LAB_SEED:-1}
    start_emu emu1 emu1 e1a e1b $((seed + 1))
    start_emu emu2 emu2 e2a e2b $((seed + 2))
    start_emu emut1 tap1 t1x t1y $((seed + 11))
    start_emu emut2 tap2 t2x t2y $((seed + 12))
    start_emu emud emud dsw dda $((seed + 21))
    if [ "${LAB_NODES:-1}" != 0 ]; then
        node_start 1
        node_start 2
    fi
    echo "lab $P up: namespaces ${NAMESPACES[*]/#/$P-}; run 'scripts/lab.sh status'"
}

# Gateway mode's addressing: the trading engine (source namespace) and the
# exchange (destination namespace) on the one bridge in two subnets, each
# with its default route via an address of the gateway on that bridge — the
# kernel router of `router up`, or taphold's P in gateway mode. No ICMP
# redirects: a one-armed router would otherwise tell each end to go direct.
# The engine's route MTU (1340, locked) keeps its TCP segments at most 1300
# payload bytes: below taphold's primary.max_payload (1400 in the lab), as a
# gateway deployment must keep the protected sessions' MSS.
gateway_addresses() {
    ip -n "$(ns src)" addr add 10.71.1.2/24 dev "$P-src0"
    ip -n "$(ns src)" route add default via 10.71.1.1 dev "$P-src0" src 10.71.1.2 mtu lock 1340
    ip -n "$(ns dst)" addr add 10.71.2.2/24 dev "$P-dst0"
    ip -n "$(ns dst)" route add default via 10.71.2.1 dev "$P-dst0" src 10.71.2.2
    local n
    for n in src dst; do
        nsx "$n" sysctl -qw net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.default.accept_redirects=0
        nsx "$n" sysctl -qw "net.ipv4.conf.$P-${n}0.accept_redirects=0"
    done
}

# The kernel router the gateway tests start from: $P-rtr, one veth on the
# bridge (rtr0, 02:00:00:00:71:01) with both gateway addresses, forwarding.
router_cmd() {
    case "${1:-}" in
    up)
        ip netns list | grep -q "^$(ns rtr) " && die "router $(ns rtr) exists: lab.sh router down first"
        ip netns add "$(ns rtr)"
        nsx rtr sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        nsx rtr sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        nsx rtr sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
        nsx rtr sysctl -qw net.ipv4.ip_forward=1
        ip -n "$(ns rtr)" link set lo up
        veth rtr rtr0 02:00:00:00:71:01 sw swrtr 02:00:00:00:f0:71
        ip -n "$(ns sw)" link set "$P-swrtr" master "$P-br"
        nsx rtr sysctl -qw "net.ipv4.conf.$P-rtr0.send_redirects=0"
        ip -n "$(ns rtr)" addr add 10.71.1.1/24 dev "$P-rtr0"
        ip -n "$(ns rtr)" addr add 10.71.2.1/24 dev "$P-rtr0"
        ;;
    down) ip netns del "$(ns rtr)" 2>/dev/null || true ;;
    *) die "usage: lab.sh router up|down" ;;
    esac
}

# A real FIX session (tools/fix): the exchange is QuickFIX's example executor,
# the trading engine our QuickFIX initiator; each writes its settings from
# tools/fix/*.cfg into DIR (fresh per run: no sequence numbers carried over).
FIX_BIN=${LAB_FIX_BIN_DIR:-$ROOT/target/fix}
fix_cfg() { # TEMPLATE DIR HOST PORT
    mkdir -p "$2"
    sed -e "s#@DIR@#$2#g" -e "s#@HOST@#$3#g" -e "s#@PORT@#$4#g" "$ROOT/tools/fix/$1.cfg" >"$2/$1.cfg"
}
fix_cmd() {
    local what=${1:-} dir=${2:-}
    [ -n "$dir" ] || die "usage: lab.sh fix exchange DIR | fix engine DIR [initiator args...]"
    shift 2
    if ! [ -x "$FIX_BIN/executor" ] || ! [ -x "$FIX_BIN/initiator" ]; then
        die "no FIX binaries in $FIX_BIN: tools/fix/build.sh"
    fi
    case "$what" in
    exchange)
        fix_cfg exchange "$dir" 10.71.2.2 9878
        exec ip netns exec "$(ns dst)" "$FIX_BIN/executor" "$dir/exchange.cfg"
        ;;
    engine)
        fix_cfg engine "$dir" 10.71.2.2 9878
        exec ip netns exec "$(ns src)" "$FIX_BIN/initiator" --config "$dir/engine.cfg" "$@"
        ;;
    *) die "usage: lab.sh fix exchange DIR | fix engine DIR [initiator args...]" ;;
    esac
}

kill_pid() { # PID...: SIGTERM to all at once, then SIGKILL to any left after 2 s
    local pid i left
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        left=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left=1; done
        [ $left = 0 ] && return 0
        sleep 0.05
    done
    kill -KILL "$@" 2>/dev/null || true
}

down() {
    local f pid n pids=()
    if [ -d "$RUN" ]; then
        for f in "$RUN"/*.pid "$RUN"/node*/node.pid; do
            [ -e "$f" ] || continue
            pid=$(cat "$f")
            [ -n "$pid" ] && pids+=("$pid")
        done
    fi
    # Anything still running inside our own namespaces was started in the lab.
    for n in $(our_namespaces); do
        for pid in $(ip netns pids "$n" 2>/dev/null); do pids+=("$pid"); done
    done
    kill_pid "${pids[@]}"
    for n in $(our_namespaces); do
        ip netns del "$n" 2>/dev/null || true
    done
    # Nothing is created in the root namespace, but leave none behind if it ever was.
    for n in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$P-" || true); do
        ip link del "$n" 2>/dev/null || true
    done
    rm -rf "$RUN" "/var/run/dpdk/taphold-lab-$P" "/var/run/dpdk/taphold-lab-$P-n1" "/var/run/dpdk/taphold-lab-$P-n2"
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
        for f in "$RUN"/*.pid "$RUN"/node*/node.pid; do
            [ -e "$f" ] || continue
            local pid name
            pid=$(cat "$f")
            name=$(basename "$f" .pid)
            [ "$name" = node ] && name=$(basename "$(dirname "$f")")
            if kill -0 "$pid" 2>/dev/null; then
                echo "$name pid $pid: $(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-160)"
            else
                echo "$name pid $pid: not running"
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
    # The lab's own state directory: epochs grow across appliance restarts in
    # this lab, and no two labs share a lock.
    local config=$RUN/appliance.yaml
    grep -v '^state_dir:' "$CONFIG" >"$config"
    echo "state_dir: $RUN/app-state" >>"$config"
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
        -- --config "$config" --out "$out" "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
up) up ;;
down) down ;;
status) status ;;
appliance) appliance "$@" ;;
arbiter) arbiter "$@" ;;
emu)
    [ $# -ge 2 ] || die "usage: lab.sh emu 1|2|t1|t2|d COMMAND..."
    n=$1
    shift
    [[ $n =~ ^(t?[12]|d)$ ]] || die "usage: lab.sh emu 1|2|t1|t2|d COMMAND..."
    exec "$BIN/taphold-linkemu" ctl "$RUN/emu$n.sock" "$@"
    ;;
node)
    [ $# -ge 2 ] || die "usage: lab.sh node 1|2 start|stop|kill9|reset|inspect|status|log|export"
    node_cmd "$@"
    ;;
tap)
    [ $# -ge 2 ] || die "usage: lab.sh tap 1|2 cut|restore"
    tap_cmd "$1" "$2"
    ;;
router) router_cmd "$@" ;;
fix) fix_cmd "$@" ;;
src) exec ip netns exec "$(ns src)" python3 "$ROOT/scripts/lab/source.py" "$@" ;;
dst) exec ip netns exec "$(ns dst)" python3 "$ROOT/scripts/lab/dest.py" "$@" ;;
exec)
    [ $# -ge 2 ] || die "usage: lab.sh exec NS CMD..."
    n=$1
    shift
    exec ip netns exec "$(ns "$n")" "$@"
    ;;
*)
    sed -n '2,52p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The Wireshark dissector (tools/wireshark/taphold.lua) against what taphold really
# sends: two replays of test-pcaps/mixed.pcap through the real binary, decoded by
# tshark and compared with the runs' events.csv and summary.json
# (tools/wireshark/check-dissector.py), plus a crafted capture of the PDUs a replay
# does not produce and of wrong ones (tools/wireshark/craft-pdus.py).
#
#   scripts/test-dissector.sh            # the test (scripts/test.sh runs it)
#   scripts/test-dissector.sh --mutants  # also: broken copies of the dissector must fail it
#
# TAPHOLD_BIN: the binary (default: target/release/taphold, built if missing).
# TAPHOLD_DISSECTOR: the dissector to test (default tools/wireshark/taphold.lua).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
lua=$(realpath "${TAPHOLD_DISSECTOR:-tools/wireshark/taphold.lua}")
command -v tshark >/dev/null || { echo "test-dissector: tshark is missing (scripts/setup.sh installs it)" >&2; exit 1; }

bin=${TAPHOLD_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -q -p taphold
    bin=$root/target/release/taphold
fi

work=$(mktemp -d /tmp/taphold-dissector.XXXXXX)
trap 'rm -rf "$work"' EXIT
key=$(sed -n 's/^digest_key: *"\([0-9a-fA-F]*\)".*/\1/p' config/default.yaml)
[ ${#key} -eq 32 ] || { echo "test-dissector: no digest_key in config/default.yaml" >&2; exit 1; }

# replay NAME SED-EDIT...: the shipped config, its state in $work, edited.
replay() {
    local name=$1
    shift
    local cfg=$work/$name.yaml
    sed -e "s#^state_dir: .*#state_dir: $work/state-$name#" "$@" config/default.yaml >"$cfg"
    if ! TAPHOLD_BIN=$bin TAPHOLD_CONFIG=$cfg TAPHOLD_IDLE_MS=400 \
        scripts/replay.sh test-pcaps/mixed.pcap "$work/$name" >"$work/$name.log" 2>&1; then
        echo "test-dissector: the $name replay failed:" >&2
        tail -20 "$work/$name.log" >&2
        exit 1
    fi
}

echo "test-dissector: replaying test-pcaps/mixed.pcap (content: full, framing: raw; content: digest, framing: taphold)"
replay full-raw
replay digest-framed -e 's/^\(  *content:\) full /\1 digest /' -e 's/^\(  *framing:\) raw /\1 taphold /'
if ! grep -q '^ *framing: taphold' "$work/digest-framed.yaml" || ! grep -q '^ *content: digest' "$work/digest-framed.yaml"; then
    echo "test-dissector: the config edit did not apply" >&2
    exit 1
fi
python3 tools/wireshark/craft-pdus.py "$work/crafted.pcap" --expect "$work/crafted.tsv"

check() {
    python3 tools/wireshark/check-dissector.py --lua "$1" --key "$key" \
        --full-raw "$work/full-raw" --digest-framed "$work/digest-framed" \
        --crafted "$work/crafted.pcap" --expect "$work/crafted.tsv"
}

check "$lua"

if [ "${1:-}" = "--mutants" ]; then
    # Each mutant is the dissector with one mistake; the check must catch every one.
    mutants=(
        's/tvb:range(24, 8):uint64()/tvb:range(32, 8):uint64()/'            # seq read at the timestamp
        's/tree:add(f.seq, tvb:range(24, 8))/tree:add(f.seq, tvb:range(16, 8))/' # seq field over the epoch
        's/F_FROM_NODE = 0x0001, 0x0002, 0x0004/F_FROM_NODE = 0x0001, 0x0004, 0x0002/' # flag bits swapped
        's/local flags = tvb:range(5, 1):uint()/local flags = tvb:range(4, 1):uint()/' # flags read at the key id
        's/return tvb:range(off + 8 + i, 1):uint() end/return tvb:range(off + i, 1):uint() end/' # digest in PDU order (v3)
        's/for _ = 1, 4 do sip_round(v) end/for _ = 1, 3 do sip_round(v) end/'      # SipHash-2-3 finalization
        's/tree:add(d.seq, tvb:range(24, 8))/tree:add(d.seq, tvb:range(32, 8))/'    # delivery seq at the release time
        's/tree:add(d.release_ns, tvb:range(32, 8))/tree:add(d.release_ns, tvb:range(24, 8))/'
        's/\[T_HEARTBEAT\] = 16, \[T_ACK\] = 8/[T_HEARTBEAT] = 16, [T_ACK] = 16/'  # wrong ack length rule
        's/v\[1\] = v\[1\]:rol(32)$/v[1] = v[1]:rol(31)/'                           # a wrong SipHash round
        's/if p > 0 and p < 65536 then/if p > 9000 and p < 65536 then/'            # confirmation port not registered
        's/if m == DELIVERY_MAGIC then return dissect_delivery/if false then return dissect_delivery/'
        's/body:add(f.backup_src_port, tvb:range(b + 4, 2))/body:add(f.backup_src_port, tvb:range(b + 6, 2))/'
        's/body:add(f.backup_tcp_seq, tvb:range(b + 16, 4))/body:add(f.backup_tcp_seq, tvb:range(b + 12, 4))/' # gateway: tcp_seq misplaced
        's/body:add(f.fa_acked, tvb:range(b + 16, 4))/body:add(f.fa_acked, tvb:range(b + 8, 4))/'               # flow ack: acked misplaced
        's/\[T_RESEND\] = 8, \[T_FLOW_ACK\] = 20/[T_RESEND] = 8, [T_FLOW_ACK] = 24/'                        # wrong flow ack length rule
    )
    caught=0
    for m in "${mutants[@]}"; do
        sed "$m" "$lua" >"$work/mutant.lua"
        if cmp -s "$lua" "$work/mutant.lua"; then
            echo "test-dissector: mutant '$m' changed nothing (the dissector moved on: update the mutant)" >&2
            exit 1
        fi
        if check "$work/mutant.lua" >"$work/mutant.log" 2>&1; then
            echo "test-dissector: mutant '$m' passed the check: the test is too weak" >&2
            exit 1
        fi
        caught=$((caught + 1))
        echo "test-dissector: mutant caught: $m ($(grep -o '[0-9]* failed' "$work/mutant.log"))"
    done
    echo "test-dissector: all $caught mutants caught"
fi

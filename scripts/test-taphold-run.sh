#!/usr/bin/env bash
# Tests the launcher (scripts/taphold-run.sh) and the systemd units (tools/systemd):
# the launcher starts the binary its env file names, with that file's EAL arguments,
# config and options, and refuses what it cannot run; both binaries warn at start-up
# on the demo key, and not on a key file, which is refused if others can read it;
# the shipped env examples parse;
# the units pass `systemd-analyze verify` without a warning and keep the restart
# policies docs/deployment.md explains.
#
#   scripts/test-taphold-run.sh [BINDIR]    (default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bindir=$(realpath "${1:-target/debug}")
run=$root/scripts/taphold-run.sh
work=$(mktemp -d /tmp/taphold-run-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0 checks=0
expect() { # expect DESCRIPTION COMMAND...
    checks=$((checks + 1))
    if ! "${@:2}" >/dev/null 2>&1; then
        echo "  FAIL $1" >&2
        failures=$((failures + 1))
    fi
}
status() { # status COMMAND...: prints the exit status
    local rc=0
    "$@" >"$work/log" 2>&1 || rc=$?
    echo "$rc"
}

sed "s#^state_dir: .*#state_dir: $work/state#" config/default.yaml >"$work/default.yaml"
cat >"$work/replay.env" <<EOF
# A replay, the way a production env file names its NICs.
TAPHOLD_BIN=$bindir/taphold
TAPHOLD_EAL="--no-huge -m 1024 --no-pci -l 0,1 --file-prefix taphold-test-run-$$ --log-level *:warning --vdev net_pcap0,rx_pcap=$root/test-pcaps/mixed.pcap,tx_pcap=$work/d.pcap,tx_pcap=$work/s.pcap --vdev net_pcap1,tx_pcap=$work/b.pcap"
TAPHOLD_CONFIG=$work/default.yaml
   TAPHOLD_ARGS='--out $work/run'
EOF

# The command line it would run.
"$run" --print taphold "$work/replay.env" --exit-when-idle-ms 500 >"$work/print"
expect "--print: binary, EAL args, --, config, options, extra args in order" \
    grep -qE "^$bindir/taphold --no-huge .* --vdev net_pcap1.* -- --config $work/default.yaml --out $work/run --exit-when-idle-ms 500 \$" "$work/print"

# It really runs it: a whole replay through the launcher.
rc=$(status "$run" taphold "$work/replay.env" --exit-when-idle-ms 500)
expect "run: exit 0, got $rc ($(tail -2 "$work/log"))" test "$rc" = 0
expect "run: the summary in --out says 500 released" python3 -c "import json,sys; sys.exit(json.load(open('$work/run/summary.json'))['messages']['released'] != 500)"

expect "run: the demo key is warned about" grep -q "WARN .*DEMO KEY IN USE" "$work/log"

# The key from a file of the owner's alone: no warning; readable by others: refused,
# naming the field and its line, before EAL starts.
od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$work/digest.key"
chmod 600 "$work/digest.key"
sed -e "s#^digest_key: .*#digest_key_file: digest.key#" -e "s#^state_dir: .*#state_dir: $work/state2#" config/default.yaml >"$work/keyfile.yaml"
sed -e "s#^TAPHOLD_CONFIG=.*#TAPHOLD_CONFIG=$work/keyfile.yaml#" -e "s#--out $work/run#--out $work/run2#" "$work/replay.env" >"$work/keyfile.env"
rc=$(status "$run" taphold "$work/keyfile.env" --exit-when-idle-ms 500)
expect "key file: exit 0, got $rc ($(tail -2 "$work/log"))" test "$rc" = 0
expect "key file: no demo warning" bash -c "! grep -q DEMO '$work/log'"
chmod 644 "$work/digest.key"
rc=$(status "$run" taphold "$work/keyfile.env" --exit-when-idle-ms 500)
line=$(grep -n '^digest_key_file:' "$work/keyfile.yaml" | cut -d: -f1)
expect "key file readable by others: exit 2, got $rc" test "$rc" = 2
expect "key file readable by others: field and line named ($(tail -1 "$work/log"))" grep -q "keyfile.yaml:$line: digest_key_file: .*mode 0644" "$work/log"

# The backup node warns about the demo key too (its example config, on what the run launched).
sed "s#^  dir: .*#  dir: $work/journal#" crates/taphold-backup/backup.example.yaml >"$work/backup.yaml"
cat >"$work/backup.env" <<EOF
TAPHOLD_BIN=$bindir/taphold-backup
TAPHOLD_EAL=--no-huge -m 256 --no-pci -l 0 --file-prefix taphold-test-run-b-$$ --vdev net_pcap0,rx_pcap=$work/b.pcap,tx_pcap=$work/answers.pcap
TAPHOLD_CONFIG=$work/backup.yaml
TAPHOLD_ARGS=--exit-when-idle-ms 300
EOF
rc=$(status "$run" taphold-backup "$work/backup.env")
expect "backup node: exit 0, got $rc ($(tail -2 "$work/log"))" test "$rc" = 0
expect "backup node: the demo key is warned about" grep -q "WARN .*DEMO KEY IN USE" "$work/log"

# Refusals, each before anything starts (exit 2, the reason named).
refuse() { # refuse DESCRIPTION WANT-TEXT ARGS...
    local rc
    rc=$(status "$run" "${@:3}")
    expect "$1: exit 2, got $rc" test "$rc" = 2
    expect "$1: says '$2'" grep -qF -- "$2" "$work/log"
}
sed "s#^TAPHOLD_BIN=.*#TAPHOLD_BIN=$work/not-installed/taphold#" "$work/replay.env" >"$work/nobin.env"
refuse "a binary not installed" "is not an installed executable" taphold "$work/nobin.env"
sed "s#^TAPHOLD_CONFIG=.*#TAPHOLD_CONFIG=$work/none.yaml#" "$work/replay.env" >"$work/noconf.env"
refuse "a missing config" "cannot read the config $work/none.yaml" taphold "$work/noconf.env"
grep -v '^TAPHOLD_CONFIG' "$work/replay.env" >"$work/unset.env"
refuse "no config named" "sets no TAPHOLD_CONFIG" taphold "$work/unset.env"
printf 'TAPHOLD_EAL=-l 1\nTAPHOLD_CORES=1\n' >"$work/key.env"
refuse "an unknown key" "key.env:2: unknown key TAPHOLD_CORES" taphold "$work/key.env"
printf 'export TAPHOLD_EAL=-l 1\n' >"$work/shell.env"
refuse "shell syntax" "shell.env:1: not KEY=VALUE" taphold "$work/shell.env"
refuse "an unknown program" "unknown program" tapholdx "$work/replay.env"
refuse "a missing env file" "cannot read" taphold "$work/none.env"
expect "the launcher never builds" bash -c "! grep -q 'cargo' '$run'"

# The shipped env examples parse (their binary and config swapped for ones that exist).
for pair in "taphold tools/systemd/taphold.env.example" "taphold-backup tools/systemd/backup.env.example"; do
    read -r program example <<<"$pair"
    sed -e "s#^TAPHOLD_BIN=.*#TAPHOLD_BIN=$bindir/$program#" -e "s#^TAPHOLD_CONFIG=.*#TAPHOLD_CONFIG=$work/default.yaml#" \
        "$example" >"$work/example.env"
    rc=$(status "$run" --print "$program" "$work/example.env")
    expect "$example parses, got $rc ($(cat "$work/log"))" test "$rc" = 0
    expect "$example: EAL args before --" grep -qE "^$bindir/$program -l [0-9].* -a [0-9a-f:.]+ -- --config " "$work/log"
done

# The systemd units.
for unit in taphold.service taphold-backup@.service; do
    f=tools/systemd/$unit
    expect "$unit starts the installed launcher" grep -qE '^ExecStart=/usr/local/lib/taphold/taphold-run.sh taphold(-backup)? /etc/taphold/' "$f"
    expect "$unit sets CPUAffinity" grep -qE '^CPUAffinity=[0-9]' "$f"
    expect "$unit sets LimitMEMLOCK=infinity" grep -qx 'LimitMEMLOCK=infinity' "$f"
    expect "$unit stops with SIGTERM" grep -qx 'KillSignal=SIGTERM' "$f"
done
expect "taphold.service never restarts by itself (a new epoch needs an operator)" grep -qx 'Restart=no' tools/systemd/taphold.service
expect "taphold-backup@ restarts only after a crash" grep -qx 'Restart=on-abnormal' 'tools/systemd/taphold-backup@.service'
if command -v systemd-analyze >/dev/null; then
    # verify checks that ExecStart exists: point it at this checkout's launcher.
    sed "s#/usr/local/lib/taphold/taphold-run.sh#$run#" tools/systemd/taphold.service >"$work/taphold.service"
    sed "s#/usr/local/lib/taphold/taphold-run.sh#$run#" 'tools/systemd/taphold-backup@.service' >"$work/taphold-backup@b1.service"
    systemd-analyze verify "$work/taphold.service" "$work/taphold-backup@b1.service" >"$work/verify" 2>&1 || true
    expect "systemd-analyze verify: no warning ($(head -3 "$work/verify"))" test ! -s "$work/verify"
fi

echo "taphold-run: $((checks - failures)) passed, $failures failed"
((failures == 0))

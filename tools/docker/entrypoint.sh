#!/usr/bin/env bash
# The taphold image's entrypoint: runs the documented examples.
#
#   replay [IN.pcap [OUTDIR [ARGS]]]  scripts/replay.sh on the shipped config (default:
#                                 test-pcaps/mixed.pcap into /out); TAPHOLD_CONFIG and
#                                 TAPHOLD_IDLE_MS as for replay.sh
#   taphold [EAL args] -- ARGS    the appliance; with nothing before `--`, the EAL
#                                 arguments of a machine without hugepages or NICs
#   taphold-backup ...            the backup node, the same way (and its `journal
#                                 inspect|export` subcommands, which need no EAL)
#   taphold-arbiter ...           the destination's arbiter, when the image has it
#   help                          this text and what the image holds
#   anything else                 run as a command (bash, dpdk-devbind.py, ...)
#
# TAPHOLD_HOME (/opt/taphold) and TAPHOLD_BIN_DIR (/usr/local/bin) say where the image
# keeps things; scripts/check-docker.sh runs this script on a checkout with them.
set -euo pipefail
home=${TAPHOLD_HOME:-/opt/taphold}
bindir=${TAPHOLD_BIN_DIR:-/usr/local/bin}
cd "$home"

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    echo
    local b
    printf 'binaries:'
    for b in "$bindir"/taphold*; do [ -f "$b" ] && [ -x "$b" ] && printf ' %s' "${b##*/}"; done
    printf '\nconfigs: '
    for b in config/*.yaml; do printf ' %s' "$b"; done
    printf '\ncaptures:'
    for b in test-pcaps/*.pcap; do printf ' %s' "$b"; done
    printf '\n'
}

# run BINARY MEGABYTES ARGS...: with nothing before `--`, EAL arguments for a machine
# without hugepages or NICs (scripts/taphold.sh's).
run() {
    local bin=$1 mem=$2
    shift 2
    [ -x "$bin" ] || { echo "entrypoint: this image has no ${bin##*/} (Dockerfile: BINARIES)" >&2; exit 2; }
    if [ "${1:-}" = "--" ]; then
        exec "$bin" --no-huge -m "$mem" --no-pci -l "${TAPHOLD_LCORES:-0,1}" \
            --file-prefix "${bin##*/}-$$" --log-level '*:warning' "$@"
    fi
    exec "$bin" "$@"
}

cmd=${1:-replay}
[ $# -eq 0 ] || shift
case "$cmd" in
    replay)
        in=${1:-$home/test-pcaps/mixed.pcap}
        out=${2:-/out}
        if [ $# -gt 2 ]; then shift 2; else set --; fi
        export TAPHOLD_BIN=${TAPHOLD_BIN:-$bindir/taphold}
        exec "$home/scripts/replay.sh" "$in" "$out" "$@"
        ;;
    taphold | taphold-backup | taphold-arbiter)
        mem=256
        [ "$cmd" = taphold ] && mem=1024
        run "$bindir/$cmd" "${TAPHOLD_MEM_MB:-$mem}" "$@"
        ;;
    help | -h | --help) usage ;;
    *) exec "$cmd" "$@" ;;
esac

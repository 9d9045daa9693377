#!/usr/bin/env bash
# Runs an installed taphold binary (never builds one) with its EAL arguments, config
# and options from a small environment file: what the systemd units start, and what
# an operator runs by hand.
#
#   taphold-run.sh [--print] taphold|taphold-backup|taphold-arbiter ENVFILE [EXTRA-ARGS...]
#
#   --print      print the command line and exit (nothing is started)
#   EXTRA-ARGS   appended to the program's own arguments (after `--`)
#
# ENVFILE: KEY=VALUE lines (systemd's EnvironmentFile syntax: # comments, optional
# quotes, no shell expansion), read by this script itself, never sourced:
#
#   TAPHOLD_BIN=/usr/local/bin/taphold          # default: /usr/local/bin/<program>
#   TAPHOLD_EAL=-l 2-6 --main-lcore 2 -n 4 --file-prefix taphold -a 0000:3b:00.0 -a 0000:3b:00.1
#   TAPHOLD_CONFIG=/etc/taphold/taphold.yaml    # required
#   TAPHOLD_ARGS=--out /var/log/taphold/run    # the program's other options
#
# TAPHOLD_EAL and TAPHOLD_ARGS are split on whitespace (devargs use commas, never
# spaces). The program replaces this script (exec): systemd sees its exit status, and
# SIGTERM reaches it directly.
set -euo pipefail

print=0
if [ "${1:-}" = "--print" ]; then
    print=1
    shift
fi
if [ $# -lt 2 ]; then
    sed -n '6,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
program=$1 envfile=$2
shift 2
case "$program" in
    taphold | taphold-backup | taphold-arbiter) ;;
    *) echo "taphold-run: unknown program $program (taphold, taphold-backup, taphold-arbiter)" >&2; exit 2 ;;
esac
[ -r "$envfile" ] || { echo "taphold-run: cannot read $envfile" >&2; exit 2; }

bin="" eal="" config="" args=""
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line=${line#"${line%%[![:space:]]*}"}
    if [ -z "$line" ] || [ "${line:0:1}" = "#" ]; then
        continue
    fi
    if [[ ! $line =~ ^([A-Z_]+)=(.*)$ ]]; then
        echo "taphold-run: $envfile:$lineno: not KEY=VALUE" >&2
        exit 2
    fi
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    value=${value%"${value##*[![:space:]]}"}
    if [[ $value =~ ^\"(.*)\"$ ]] || [[ $value =~ ^\'(.*)\'$ ]]; then
        value=${BASH_REMATCH[1]}
    fi
    case "$key" in
        TAPHOLD_BIN) bin=$value ;;
        TAPHOLD_EAL) eal=$value ;;
        TAPHOLD_CONFIG) config=$value ;;
        TAPHOLD_ARGS) args=$value ;;
        *) echo "taphold-run: $envfile:$lineno: unknown key $key (TAPHOLD_BIN, TAPHOLD_EAL, TAPHOLD_CONFIG, TAPHOLD_ARGS)" >&2; exit 2 ;;
    esac
done <"$envfile"

bin=${bin:-/usr/local/bin/$program}
[ -x "$bin" ] || { echo "taphold-run: $bin is not an installed executable (TAPHOLD_BIN in $envfile)" >&2; exit 2; }
[ -n "$config" ] || { echo "taphold-run: $envfile sets no TAPHOLD_CONFIG" >&2; exit 2; }
[ -r "$config" ] || { echo "taphold-run: cannot read the config $config (TAPHOLD_CONFIG in $envfile)" >&2; exit 2; }

read -r -a eal_args <<<"$eal"
read -r -a app_args <<<"$args"
cmd=("$bin" "${eal_args[@]}" -- --config "$config" "${app_args[@]}" "$@")
if ((print)); then
    printf '%q ' "${cmd[@]}"
    printf '\n'
    exit 0
fi
exec "${cmd[@]}"

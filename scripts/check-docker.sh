#!/usr/bin/env bash
# What the Dockerfile promises, checked without a container engine.
#
#   scripts/check-docker.sh libs [BINDIR]        the runtime stage's packages cover what
#                                                the binaries link and load
#   scripts/check-docker.sh entrypoint [BINDIR]  tools/docker/entrypoint.sh runs the
#                                                documented examples (on this checkout)
#   scripts/check-docker.sh selftest [BINDIR]    `libs` fails on copies of the Dockerfile
#                                                with a package taken out, or a stale one in
#
# BINDIR holds the binaries of the Dockerfile's BINARIES (default target/debug: the
# test suite has built them; their link line is the release build's, both made by
# dpdk-sys's build.rs from pkg-config, so ldd names the same libraries). The Docker
# build stage runs `libs` on the release binaries it ships.
#
# libs: every library `ldd` resolves for every binary is mapped to its Debian package
# with `dpkg -S`; the set must equal the runtime stage's RUNTIME_LINKED (a missing
# package is a library the image lacks; an extra one is stale). The drivers EAL
# dlopens from its plugin directory (ldd cannot see them) — the mempool's ring driver,
# net_pcap and net_af_packet for the documented examples, the NIC drivers of
# docs/deployment.md — must be in RUNTIME_DRIVERS, by the package that ships each.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-libs}
bindir=$(realpath "${2:-target/debug}")
dockerfile=${DOCKERFILE:-Dockerfile}
fail=0
problem() {
    echo "check-docker: $*" >&2
    fail=1
}

# An ARG's value in the build or runtime stage (one line: ARG NAME="...").
arg() {
    awk -v stage="$1" '/^FROM /{on = ($NF == stage)} on' "$dockerfile" |
        sed -n "s/^ARG $2=\"\(.*\)\"\$/\1/p"
}
read -r -a binaries <<<"$(arg build BINARIES)"
((${#binaries[@]})) || { echo "check-docker: no ARG BINARIES=\"...\" in the build stage of $dockerfile" >&2; exit 1; }

# Where dpkg may have recorded FILE: as given, resolved, and either side of the
# /lib -> /usr/lib merge.
candidates() {
    local f=$1 real
    real=$(realpath "$f")
    printf '%s\n' "$f" "$real" "/usr$f" "${f#/usr}" "/usr$real" "${real#/usr}"
}
# package_of FILE...: "FILE PACKAGE" per file, from one dpkg -S over every candidate.
package_of() {
    local f c
    declare -A owner=()
    while IFS= read -r line; do
        [[ $line == diversion* ]] && continue
        owner[${line#*: }]=${line%%:*}
    done < <(for f in "$@"; do candidates "$f"; done | sort -u | xargs dpkg -S 2>/dev/null || true)
    for f in "$@"; do
        for c in $(candidates "$f"); do
            if [ -n "${owner[$c]:-}" ]; then
                echo "$f ${owner[$c]}"
                continue 2
            fi
        done
        echo "$f -"
    done
}

check_libs() {
    local b lib pkg d f
    # The image carries the appliance, the backup node, and the arbiter once its crate
    # lands (crates/taphold-arbiter): each must be in BINARIES.
    for b in taphold taphold-backup taphold-arbiter; do
        [ -f "crates/$b/Cargo.toml" ] || continue
        [[ " ${binaries[*]} " == *" $b "* ]] || problem "crates/$b exists but the Dockerfile's BINARIES does not name $b"
    done
    declare -A linked=() users=()
    for b in "${binaries[@]}"; do
        [ -x "$bindir/$b" ] || { problem "$bindir/$b: missing (build it: cargo build -p $b)"; continue; }
        if ldd "$bindir/$b" | grep -q 'not found'; then
            problem "$b: ldd finds no $(ldd "$bindir/$b" | awk '/not found/ {print $1}' | tr '\n' ' ')"
        fi
        while read -r lib; do
            users[$lib]+="${users[$lib]:+, }$b"
        done < <(ldd "$bindir/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    done
    if ((${#users[@]})); then
        while read -r lib pkg; do
            if [ "$pkg" = - ]; then
                problem "${users[$lib]} link(s) $lib, which no Debian package installed"
            else
                linked[$pkg]+="${linked[$pkg]:+; }${users[$lib]}: ${lib##*/}"
            fi
        done < <(package_of "${!users[@]}")
    fi
    declare -A listed=()
    for pkg in $(arg runtime RUNTIME_LINKED); do listed[$pkg]=1; done
    ((${#listed[@]})) || problem "no ARG RUNTIME_LINKED=\"...\" in the runtime stage"
    for pkg in "${!linked[@]}"; do
        [ -n "${listed[$pkg]:-}" ] || problem "RUNTIME_LINKED lacks $pkg (${linked[$pkg]})"
    done
    for pkg in "${!listed[@]}"; do
        [ -n "${linked[$pkg]:-}" ] || problem "RUNTIME_LINKED has $pkg, which no binary links (stale, or belongs in RUNTIME_DRIVERS)"
    done

    declare -A drivers=() plugin=()
    for pkg in $(arg runtime RUNTIME_DRIVERS); do drivers[$pkg]=1; done
    for d in mempool_ring net_pcap net_af_packet net_ixgbe net_i40e net_ice net_mlx5; do
        f=$(compgen -G "/usr/lib/*/dpdk/pmds-*/librte_${d}.so.*" | head -1 || true)
        if [ -z "$f" ]; then
            problem "no DPDK plugin librte_${d} on this machine (scripts/setup.sh installs DPDK)"
        else
            plugin[$f]=$d
        fi
    done
    if ((${#plugin[@]})); then
        while read -r f pkg; do
            if [ "$pkg" = - ]; then
                problem "$f belongs to no package"
            elif [ -z "${drivers[$pkg]:-}" ]; then
                problem "RUNTIME_DRIVERS lacks $pkg (EAL loads ${plugin[$f]} from it)"
            fi
        done < <(package_of "${!plugin[@]}")
    fi
    grep -q '^ENTRYPOINT \["/opt/taphold/tools/docker/entrypoint.sh"\]' "$dockerfile" ||
        problem "the ENTRYPOINT is not tools/docker/entrypoint.sh"
    [ -x tools/docker/entrypoint.sh ] || problem "tools/docker/entrypoint.sh is missing or not executable"
    for ignored in target .git; do
        grep -qx "/\?$ignored/\?" .dockerignore 2>/dev/null || problem ".dockerignore does not keep $ignored out"
    done
    if ((fail == 0)); then
        echo "check-docker: the runtime stage covers the ${#linked[@]} packages that ${binaries[*]} link and the drivers EAL loads"
    fi
}

check_entrypoint() {
    local work out
    work=$(mktemp -d /tmp/taphold-entrypoint.XXXXXX)
    trap 'rm -rf "$work"' RETURN
    ep() { TAPHOLD_HOME=$PWD TAPHOLD_BIN_DIR=$bindir tools/docker/entrypoint.sh "$@"; }
    out=$(ep help)
    for b in "${binaries[@]}"; do
        grep -q "^binaries:.* $b\b" <<<"$out" || problem "entrypoint help does not list $b"
    done
    # The image's default command: replay mixed.pcap with the shipped config.
    sed "s#^state_dir: .*#state_dir: $work/state#" config/default.yaml >"$work/default.yaml"
    if TAPHOLD_CONFIG=$work/default.yaml TAPHOLD_IDLE_MS=500 ep replay test-pcaps/mixed.pcap "$work/out" >"$work/replay.log" 2>&1; then
        python3 - "$work/out/summary.json" <<'EOF' || problem "entrypoint replay: the summary is not a clean run"
import json, sys
m = json.load(open(sys.argv[1]))["messages"]
sys.exit(0 if m["released"] == 500 and m["unaccounted"] == 0 else 1)
EOF
    else
        problem "entrypoint replay failed: $(tail -3 "$work/replay.log")"
    fi
    # The backup node's documented offline example, on what the replay launched.
    sed "s#^  dir: .*#  dir: $work/journal#" crates/taphold-backup/backup.example.yaml >"$work/backup.yaml"
    if ep taphold-backup --no-huge -m 256 --no-pci -l 0 --file-prefix "taphold-test-ep-$$" \
        --vdev "net_pcap0,rx_pcap=$work/out/backup.pcap,tx_pcap=$work/answers.pcap" \
        -- --config "$work/backup.yaml" --exit-when-idle-ms 500 >"$work/backup.log" 2>&1; then
        grep -q '"journaled": 500' "$work/backup.log" || problem "entrypoint taphold-backup: not 500 journaled: $(grep journaled "$work/backup.log" | head -2)"
    else
        problem "entrypoint taphold-backup failed: $(tail -3 "$work/backup.log")"
    fi
    ep taphold-backup journal inspect "$work/journal" >"$work/inspect.log" 2>&1 ||
        problem "entrypoint: journal inspect of that journal failed: $(tail -3 "$work/inspect.log")"
    if ep taphold-arbiter >/dev/null 2>&1 && [ ! -x "$bindir/taphold-arbiter" ]; then
        problem "entrypoint taphold-arbiter succeeded without the binary"
    fi
    if ((fail == 0)); then
        echo "check-docker: the entrypoint runs help, replay, taphold-backup, taphold-arbiter and journal inspect"
    fi
}

# The `libs` check must fail when the Dockerfile is wrong: each edit below breaks it once.
selftest() {
    local work edit caught=0
    work=$(mktemp -d /tmp/taphold-docker-selftest.XXXXXX)
    trap 'rm -rf "$work"' RETURN
    for edit in 's/ librte-eal23 / /' 's/ libnuma1 / /' 's/ librte-net-ring23 / /' \
        's/librte-mempool-ring23 //' 's/ librte-net-pcap23 / /' 's/^ARG RUNTIME_LINKED="/&libpcap0.8 /' \
        's/^ARG BINARIES="taphold taphold-backup taphold-arbiter"/ARG BINARIES="taphold taphold-backup"/'; do
        sed "$edit" "$dockerfile" >"$work/Dockerfile"
        if cmp -s "$dockerfile" "$work/Dockerfile"; then
            problem "selftest: '$edit' changed nothing in $dockerfile (update the selftest)"
        elif DOCKERFILE=$work/Dockerfile "$0" libs "$bindir" >"$work/log" 2>&1; then
            problem "selftest: libs passed a Dockerfile edited with '$edit'"
        else
            caught=$((caught + 1))
            echo "check-docker: selftest: '$edit' is caught: $(grep -m1 'check-docker:' "$work/log" | cut -c15-)"
        fi
    done
    ((fail)) || echo "check-docker: selftest: all $caught broken Dockerfiles caught"
}

case "$mode" in
    libs) check_libs ;;
    entrypoint) check_entrypoint ;;
    selftest) selftest ;;
    *)
        echo "usage: $0 libs|entrypoint|selftest [BINDIR]" >&2
        exit 2
        ;;
esac
exit "$fail"

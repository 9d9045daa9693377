#!/usr/bin/env bash
# Prepares a server to run taphold on real NICs (docs/deployment.md), or with
# --dry-run says what it would do and changes nothing.
#
#   scripts/host-setup.sh [--dry-run] --cores LIST [--housekeeping LIST]
#                         [--hugepage-size 1G|2M] [--hugepages N] [--numa-node N]
#                         [--driver vfio-pci] [PCI-ADDRESS ...]
#
#   scripts/host-setup.sh --dry-run --cores 2-6 --hugepage-size 1G --hugepages 4 \
#       --numa-node 0 0000:3b:00.0 0000:3b:00.1 0000:5e:00.0 0000:5e:00.1 0000:5e:00.2
#
# Steps, each printed with what it found and what it does (or would do):
#   1. hugepages: N pages of SIZE reserved (on NUMA node N) and hugetlbfs mounted,
#      with dpdk-hugepages.py;
#   2. each PCI device bound to vfio-pci with dpdk-devbind.py (the vfio-pci module
#      loaded first); an mlx5 device stays on mlx5_core (bifurcated: DPDK drives it
#      through the kernel's verbs), and each device's NUMA node is compared with the
#      cores';
#   3. the kernel command line: isolcpus, nohz_full and rcu_nocbs cover --cores, and
#      the IOMMU is on for vfio-pci (checked only: these need a reboot);
#   4. IRQ affinity: every IRQ that may run on an isolated core is moved to the
#      housekeeping cores (default: every online core not in --cores), and so is the
#      default for new IRQs; irqbalance, which would move them back, is flagged;
#   5. the CPU frequency governor of each core in --cores set to performance.
# Idempotent: what is already as wanted is said so and left alone.
#
# Exit status: 0 the host is ready (or would be, for --dry-run); 1 something needs
# you (a kernel parameter, a missing device, a step that failed: each is listed at
# the end); 2 bad arguments. Needs root unless --dry-run.
#
# HOST_SETUP_ROOT prefixes every /proc and /sys path (the tests run it on a fake tree).
set -euo pipefail

root=${HOST_SETUP_ROOT:-}
dry=0
cores=""
housekeeping=""
hp_size=1G
hp_count=0
numa_node=""
driver=vfio-pci
pcis=()
changes=0
problems=()

usage() {
    sed -n '5,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# The value of option $1, or exit 2.
value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "host-setup: $1 needs a value" >&2
        exit 2
    fi
    echo "$2"
}

while (($#)); do
    case "$1" in
        --dry-run) dry=1 ;;
        --cores) cores=$(value "$@"); shift ;;
        --housekeeping) housekeeping=$(value "$@"); shift ;;
        --hugepage-size) hp_size=$(value "$@"); shift ;;
        --hugepages) hp_count=$(value "$@"); shift ;;
        --numa-node) numa_node=$(value "$@"); shift ;;
        --driver) driver=$(value "$@"); shift ;;
        -h | --help) usage ;;
        -*) echo "host-setup: unknown option $1" >&2; usage ;;
        *) pcis+=("$1") ;;
    esac
    shift
done

# A CPU list (0-3,8,10-11) as one number per line.
expand() {
    local part a b
    IFS=, read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        [ -n "$part" ] || continue
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
            seq "$a" "$b"
        elif [[ $part =~ ^[0-9]+$ ]]; then
            echo "$part"
        fi
    done
}
# Numbers (one per line, or space-separated) as a compact list: 0-3,8.
compact() {
    local out="" start="" prev="" n
    for n in $(tr ' ' '\n' | grep . | sort -n | uniq); do
        if [ -n "$prev" ] && [ "$n" -eq $((prev + 1)) ]; then
            prev=$n
            continue
        fi
        [ -z "$start" ] || out+="${out:+,}$([ "$start" = "$prev" ] && echo "$start" || echo "$start-$prev")"
        start=$n prev=$n
    done
    [ -z "$start" ] || out+="${out:+,}$([ "$start" = "$prev" ] && echo "$start" || echo "$start-$prev")"
    echo "$out"
}

[ -n "$cores" ] || { echo "host-setup: --cores is required (the cores the lcores run on)" >&2; usage; }
[[ $cores =~ ^[0-9,-]+$ ]] || { echo "host-setup: --cores $cores is not a CPU list" >&2; exit 2; }
[[ $hp_count =~ ^[0-9]+$ ]] || { echo "host-setup: --hugepages $hp_count is not a count" >&2; exit 2; }
case "$hp_size" in
    1G | 1g) hp_size=1G hp_kb=1048576 ;;
    2M | 2m) hp_size=2M hp_kb=2048 ;;
    *) echo "host-setup: --hugepage-size is 1G or 2M, not $hp_size" >&2; exit 2 ;;
esac
for p in "${pcis[@]}"; do
    [[ $p =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] ||
        { echo "host-setup: $p is not a PCI address (0000:3b:00.0)" >&2; exit 2; }
done
if ((!dry)) && [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "host-setup: needs root (or --dry-run to see what it would do)" >&2
    exit 2
fi

isolated=$(expand "$cores" | compact)
online=$(cat "$root/sys/devices/system/cpu/online" 2>/dev/null || echo "")
if [ -z "$housekeeping" ]; then
    housekeeping=$(comm -23 <(expand "$online" | sort) <(expand "$isolated" | sort) | compact)
fi
[ -n "$housekeeping" ] || { echo "host-setup: no core is left for housekeeping (online: $online, --cores $isolated)" >&2; exit 2; }
if comm -12 <(expand "$housekeeping" | sort) <(expand "$isolated" | sort) | grep -q .; then
    echo "host-setup: --housekeeping $housekeeping overlaps --cores $isolated" >&2
    exit 2
fi

say() { echo "   $*"; }
problem() {
    problems+=("$1")
    say "PROBLEM: $1"
}
# do_it DESCRIPTION CMD...: runs CMD, or with --dry-run says it would.
do_it() {
    local what=$1
    shift
    changes=$((changes + 1))
    if ((dry)); then
        say "would $what: $*"
        return 0
    fi
    say "$what: $*"
    "$@" || { problem "failed ($?): $*"; return 1; }
}
# write FILE VALUE DESCRIPTION: a sysfs/procfs write, or with --dry-run the one it would make.
write() {
    local file=$1 value=$2 what=$3
    changes=$((changes + 1))
    if ((dry)); then
        say "would $what: echo $value > ${file#"$root"}"
        return 0
    fi
    say "$what: echo $value > ${file#"$root"}"
    if ! { echo "$value" >"$file"; } 2>/dev/null; then
        say "  (the kernel refused: $(basename "$(dirname "$file")") stays as it is)"
        return 1
    fi
}

echo "host-setup: cores $isolated for taphold's lcores, housekeeping $housekeeping$( ((dry)) && echo ' (dry run: nothing is changed)')"

# 1. Hugepages.
node_txt=${numa_node:+ on NUMA node $numa_node}
echo "== 1. hugepages: $hp_count x $hp_size$node_txt, hugetlbfs mounted"
if ((hp_count == 0)); then
    say "none asked for (--hugepages N): skipped"
else
    if [ -n "$numa_node" ]; then
        nr_file=$root/sys/devices/system/node/node$numa_node/hugepages/hugepages-${hp_kb}kB/nr_hugepages
    else
        nr_file=$root/sys/kernel/mm/hugepages/hugepages-${hp_kb}kB/nr_hugepages
    fi
    if [ ! -e "$nr_file" ]; then
        problem "${nr_file#"$root"} does not exist: this kernel or CPU has no $hp_size pages${numa_node:+ (or no node $numa_node)}"
    else
        have=$(cat "$nr_file")
        if ((have >= hp_count)); then
            say "$have x $hp_size reserved$node_txt: enough"
        else
            say "$have x $hp_size reserved$node_txt"
            total=$((hp_count * hp_kb / 1024))M
            do_it "reserve" dpdk-hugepages.py -p "$hp_size" ${numa_node:+-n "$numa_node"} -r "$total" || true
            if ((!dry)); then
                have=$(cat "$nr_file")
                ((have >= hp_count)) || problem "only $have of $hp_count x $hp_size could be reserved$node_txt (memory fragmented: reserve them at boot, docs/deployment.md)"
            fi
        fi
    fi
    if grep -qs "^[^ ]* [^ ]* hugetlbfs .*pagesize=$hp_size" "$root/proc/mounts" ||
        { [ "$hp_size" = 2M ] && grep -qs '^[^ ]* [^ ]* hugetlbfs ' "$root/proc/mounts" && ! grep -qs 'hugetlbfs .*pagesize=' "$root/proc/mounts"; }; then
        say "hugetlbfs for $hp_size pages is mounted: $(awk '$3 == "hugetlbfs" {print $2}' "$root/proc/mounts" | head -1)"
    else
        do_it "mount hugetlbfs" dpdk-hugepages.py -p "$hp_size" -m || true
    fi
fi

# 2. NICs.
echo "== 2. NICs: ${pcis[*]:-none given} to $driver"
cores_nodes=$(for c in $(expand "$isolated"); do
    for n in "$root/sys/devices/system/cpu/cpu$c"/node*; do [ -e "$n" ] && echo "${n##*node}"; done
done | sort -u | tr '\n' ' ')
for pci in "${pcis[@]}"; do
    dev=$root/sys/bus/pci/devices/$pci
    if [ ! -e "$dev" ]; then
        problem "$pci: no such PCI device on this host (lspci -D lists them)"
        ((dry)) && say "would bind it: dpdk-devbind.py -b $driver $pci"
        continue
    fi
    cur=$(basename "$(readlink "$dev/driver" 2>/dev/null || echo none)")
    node=$(cat "$dev/numa_node" 2>/dev/null || echo -1)
    say "$pci: driver $cur, NUMA node $node"
    if [ "$node" != -1 ] && [ -n "$cores_nodes" ] && [[ " $cores_nodes " != *" $node "* ]]; then
        problem "$pci is on NUMA node $node but cores $isolated are on node(s) ${cores_nodes% }: every packet would cross the socket interconnect; pick cores of node $node"
    fi
    if [ "$cur" = "$driver" ]; then
        say "$pci: already bound to $driver"
    elif [ "$cur" = mlx5_core ]; then
        say "$pci: mlx5 stays on mlx5_core (bifurcated: DPDK's mlx5 driver works through the kernel's verbs; pass it to EAL as -a $pci, devargs in docs/deployment.md)"
    else
        if [ "$driver" = vfio-pci ] && [ ! -e "$root/sys/bus/pci/drivers/vfio-pci" ]; then
            do_it "load the vfio-pci module" modprobe vfio-pci || true
        fi
        do_it "bind $pci to $driver" dpdk-devbind.py -b "$driver" "$pci" || true
    fi
done

# 3. The kernel command line (a reboot to change).
echo "== 3. kernel command line: isolcpus, nohz_full, rcu_nocbs cover $isolated; the IOMMU"
cmdline=$(cat "$root/proc/cmdline" 2>/dev/null || echo "")
param() { tr ' ' '\n' <<<"$cmdline" | sed -n "s/^$1=//p" | tail -1; }
missing_params=()
for p in isolcpus nohz_full rcu_nocbs; do
    v=$(param "$p")
    # isolcpus may lead with flags: isolcpus=managed_irq,domain,2-6.
    list=$(expand "$(tr ',' '\n' <<<"$v" | grep -E '^[0-9]' | paste -sd, -)" | sort)
    lacking=$(comm -23 <(expand "$isolated" | sort) <(echo "$list") | compact)
    if [ -z "$v" ]; then
        problem "$p is not set"
        missing_params+=("$p")
    elif [ -n "$lacking" ]; then
        problem "$p=$v does not cover core(s) $lacking"
        missing_params+=("$p")
    else
        say "$p=$v: covers $isolated"
    fi
done
if ((${#pcis[@]})) && [ "$driver" = vfio-pci ]; then
    if compgen -G "$root/sys/kernel/iommu_groups/*" >/dev/null; then
        say "the IOMMU is on ($(find "$root/sys/kernel/iommu_groups" -mindepth 1 -maxdepth 1 | wc -l) groups)"
    else
        problem "no IOMMU groups: vfio-pci needs intel_iommu=on iommu=pt (AMD: amd_iommu=on) and VT-d in the BIOS"
        missing_params+=(iommu)
    fi
fi
if ((${#missing_params[@]})); then
    say "add to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot:"
    say "  isolcpus=managed_irq,domain,$isolated nohz_full=$isolated rcu_nocbs=$isolated intel_iommu=on iommu=pt default_hugepagesz=$hp_size hugepagesz=$hp_size hugepages=$hp_count"
fi

# 4. IRQ affinity.
echo "== 4. IRQ affinity: off the isolated cores, onto $housekeeping"
# The hex mask of a CPU list, in /proc/irq's comma-separated 32-bit groups.
mask_of() {
    local -a words=() c i out=""
    for c in $(expand "$1"); do
        i=$((c / 32))
        words[i]=$(((${words[i]:-0}) | (1 << (c % 32))))
    done
    for ((i = ${#words[@]} - 1; i >= 0; i--)); do
        out+="${out:+,}$(printf '%08x' "${words[i]:-0}")"
    done
    echo "$out"
}
moved=0 stuck=0 fine=0
for f in "$root"/proc/irq/[0-9]*/smp_affinity_list; do
    [ -e "$f" ] || continue
    now=$(cat "$f" 2>/dev/null || echo "")
    if [ -n "$now" ] && comm -12 <(expand "$now" | sort) <(expand "$isolated" | sort) | grep -q .; then
        if write "$f" "$housekeeping" "move IRQ $(basename "$(dirname "$f")") (now $now)"; then
            moved=$((moved + 1))
        else
            stuck=$((stuck + 1))
        fi
    else
        fine=$((fine + 1))
    fi
done
say "$fine IRQ(s) already off the isolated cores, $moved $( ((dry)) && echo 'to move' || echo moved), $stuck the kernel would not move (per-CPU or managed: isolcpus=managed_irq keeps those off)"
want_mask=$(mask_of "$housekeeping")
default=$root/proc/irq/default_smp_affinity
if [ -e "$default" ]; then
    now=$(cat "$default")
    if [ "$((16#${now//,/}))" -eq "$((16#${want_mask//,/}))" ]; then
        say "new IRQs default to the housekeeping cores ($now)"
    else
        write "$default" "$want_mask" "send new IRQs to the housekeeping cores (now $now)" || true
    fi
fi
if pgrep -x irqbalance >/dev/null 2>&1 && [ -z "$root" ]; then
    problem "irqbalance is running and will move IRQs back onto $isolated: set IRQBALANCE_BANNED_CPULIST=$isolated in /etc/default/irqbalance and restart it, or stop it"
fi

# 5. CPU governor.
echo "== 5. CPU frequency governor: performance on $isolated"
for c in $(expand "$isolated"); do
    g=$root/sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor
    if [ ! -e "$root/sys/devices/system/cpu/cpu$c" ]; then
        problem "cpu$c does not exist (online: $online)"
    elif [ ! -e "$g" ]; then
        say "cpu$c: no cpufreq (a VM, or the frequency is the BIOS's): nothing to set"
    elif [ "$(cat "$g")" = performance ]; then
        say "cpu$c: performance already"
    else
        write "$g" performance "set cpu$c to performance (now $(cat "$g"))" || problem "cpu$c: the governor could not be set"
    fi
done

echo "== summary"
if ((dry)); then
    say "$changes change(s) would be made"
else
    say "$changes change(s) made"
fi
if ((${#problems[@]})); then
    say "${#problems[@]} thing(s) need you:"
    for p in "${problems[@]}"; do say "  - $p"; done
    exit 1
fi
say "the host is ready for taphold$( ((dry)) && echo ' once these changes are made')"

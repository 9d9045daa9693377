#!/usr/bin/env bash
# Tests scripts/host-setup.sh without a NIC and without changing this machine:
#   1. --dry-run on this machine: it says what it would do at every step, and
#      nothing in /proc/irq or the hugepage counts changes;
#   2. on a fake /proc and /sys (HOST_SETUP_ROOT) with stub dpdk-hugepages.py,
#      dpdk-devbind.py and modprobe: a real run makes exactly the changes wanted
#      (and reports what needs a reboot), a second run changes nothing, and a dry
#      run changes nothing either.
set -euo pipefail
cd "$(dirname "$0")/.."
script=${HOST_SETUP_SCRIPT:-$PWD/scripts/host-setup.sh}
work=$(mktemp -d /tmp/taphold-host-setup.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
failures=0
checks=0
expect() { # expect DESCRIPTION COMMAND...: the command must succeed
    checks=$((checks + 1))
    if ! "${@:2}" >/dev/null 2>&1; then
        echo "  FAIL $1" >&2
        failures=$((failures + 1))
    fi
}
has() { grep -qF -- "$2" "$1"; }
hasnt() { ! grep -qF -- "$2" "$1"; }

# --- 1. A dry run on this machine --------------------------------------------------
state() { # what host-setup could change here
    for f in /proc/irq/*/smp_affinity_list /proc/irq/default_smp_affinity \
        /sys/kernel/mm/hugepages/hugepages-*/nr_hugepages \
        /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do
        [ -e "$f" ] && echo "$f $(cat "$f" 2>/dev/null)"
    done
    grep hugetlbfs /proc/mounts || true
}
state >"$work/before"
rc=0
"$script" --dry-run --cores 1 --hugepage-size 2M --hugepages 64 0000:3b:00.0 >"$work/dry.out" 2>&1 || rc=$?
state >"$work/after"
out=$work/dry.out
expect "dry run: exit 1 (no such device, no isolcpus here), got $rc" test "$rc" -eq 1
expect "dry run: says it changes nothing" has "$out" "(dry run: nothing is changed)"
expect "dry run: every step is printed" bash -c "for s in '1. hugepages' '2. NICs' '3. kernel command line' '4. IRQ affinity' '5. CPU frequency governor' summary; do grep -qF \"== \$s\" '$out' || exit 1; done"
if [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages 2>/dev/null || echo 0)" -lt 64 ]; then
    expect "dry run: the hugepage reservation it would make" has "$out" "would reserve: dpdk-hugepages.py -p 2M -r 128M"
fi
expect "dry run: the missing device is named" has "$out" "PROBLEM: 0000:3b:00.0: no such PCI device"
expect "dry run: the bind it would make" has "$out" "would bind it: dpdk-devbind.py -b vfio-pci 0000:3b:00.0"
expect "dry run: the kernel parameters to add" has "$out" "isolcpus=managed_irq,domain,1 nohz_full=1 rcu_nocbs=1"
expect "dry run: the governor step" grep -qE "cpu1: (no cpufreq|performance already)|would set cpu1 to performance" "$out"
expect "dry run: a summary of what would change" grep -qE "[0-9]+ change\(s\) would be made" "$out"
expect "dry run: nothing changed on this machine" cmp -s "$work/before" "$work/after"

# --- 2. A fake host ---------------------------------------------------------------
fake=$work/root
mkfile() { mkdir -p "$(dirname "$fake/$1")" && printf '%s\n' "$2" >"$fake/$1"; }
# 40 cores: the IRQ masks span two 32-bit words.
mkfile sys/devices/system/cpu/online 0-39
for c in 0 1 2 3 4 5 6 7; do
    mkfile "sys/devices/system/cpu/cpu$c/cpufreq/scaling_governor" powersave
    mkdir -p "$fake/sys/devices/system/cpu/cpu$c/node$((c / 4 == 0 ? 0 : 1))"
done
mkdir -p "$fake/sys/devices/system/cpu/cpu2/node0"
rm -rf "$fake"/sys/devices/system/cpu/cpu{4,5,6}/node1 && mkdir -p "$fake"/sys/devices/system/cpu/cpu{4,5,6}/node0
mkfile sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages 0
mkfile sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages 0
mkdir -p "$fake"/sys/bus/pci/drivers/{ixgbe,i40e,mlx5_core} "$fake/sys/kernel/iommu_groups/0" "$fake/sys/kernel/iommu_groups/1"
dev() { # dev PCI DRIVER NODE
    mkfile "sys/bus/pci/devices/$1/numa_node" "$3"
    ln -s "../../drivers/$2" "$fake/sys/bus/pci/devices/$1/driver"
}
dev 0000:3b:00.0 ixgbe 0
dev 0000:3b:00.1 ixgbe 0
dev 0000:5e:00.0 mlx5_core 0
dev 0000:af:00.0 i40e 1
mkfile proc/cmdline "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=managed_irq,domain,2-6 nohz_full=2-6 rcu_nocbs=2-5 intel_iommu=on iommu=pt"
mkfile proc/irq/10/smp_affinity_list 0-39
mkfile proc/irq/11/smp_affinity_list 0-1
mkfile proc/irq/12/smp_affinity_list 3
mkfile proc/irq/default_smp_affinity ff,ffffffff
mkfile proc/mounts "sysfs /sys sysfs rw 0 0"

# Stubs: they log their arguments and do to the fake tree what the real ones would.
bin=$work/bin
mkdir -p "$bin"
cat >"$bin/dpdk-hugepages.py" <<EOF
#!/usr/bin/env bash
echo "dpdk-hugepages.py \$*" >>"$work/calls"
node="" size="" reserve=""
while ((\$#)); do case "\$1" in -p) size=\$2; shift ;; -n) node=\$2; shift ;; -r) reserve=\$2; shift ;; -m) echo "nodev /dev/hugepages hugetlbfs rw,pagesize=\$size 0 0" >>"$fake/proc/mounts" ;; esac; shift; done
if [ -n "\$reserve" ]; then
    n=\$(( \${reserve%M} / 1024 ))
    echo "\$n" >"$fake/sys/devices/system/node/node\$node/hugepages/hugepages-1048576kB/nr_hugepages"
fi
EOF
cat >"$bin/dpdk-devbind.py" <<EOF
#!/usr/bin/env bash
echo "dpdk-devbind.py \$*" >>"$work/calls"
ln -sfn "../../drivers/\$2" "$fake/sys/bus/pci/devices/\$3/driver"
EOF
cat >"$bin/modprobe" <<EOF
#!/usr/bin/env bash
echo "modprobe \$*" >>"$work/calls"
mkdir -p "$fake/sys/bus/pci/drivers/\$1"
EOF
chmod +x "$bin"/*
: >"$work/calls"
run() { HOST_SETUP_ROOT=$fake PATH="$bin:$PATH" "$script" "$@" --cores 2-6 --hugepage-size 1G --hugepages 4 --numa-node 0 \
    0000:3b:00.0 0000:3b:00.1 0000:5e:00.0 0000:af:00.0; }
tree() { (cd "$fake" && find . -type f -exec md5sum {} + | sort && find . -type l -printf '%p -> %l\n' | sort); }

tree >"$work/t0"
rc=0
run --dry-run >"$work/fake-dry.out" 2>&1 || rc=$?
tree >"$work/t1"
expect "fake dry run: changes nothing" cmp -s "$work/t0" "$work/t1"
expect "fake dry run: calls nothing" test ! -s "$work/calls"
expect "fake dry run: would bind the ixgbe port" has "$work/fake-dry.out" "would bind 0000:3b:00.0 to vfio-pci: dpdk-devbind.py -b vfio-pci 0000:3b:00.0"

rc=0
run >"$work/run1.out" 2>&1 || rc=$?
out=$work/run1.out
g() { cat "$fake/sys/devices/system/cpu/cpu$1/cpufreq/scaling_governor"; }
expect "run: exit 1 (rcu_nocbs misses core 6; 0000:af:00.0 on node 1), got $rc" test "$rc" -eq 1
expect "run: hugepages reserved on node 0" grep -qx "dpdk-hugepages.py -p 1G -n 0 -r 4096M" "$work/calls"
expect "run: hugetlbfs mounted" grep -qx "dpdk-hugepages.py -p 1G -m" "$work/calls"
expect "run: vfio-pci loaded before binding" grep -qx "modprobe vfio-pci" "$work/calls"
expect "run: both ixgbe ports bound" bash -c "grep -qx 'dpdk-devbind.py -b vfio-pci 0000:3b:00.0' '$work/calls' && grep -qx 'dpdk-devbind.py -b vfio-pci 0000:3b:00.1' '$work/calls'"
expect "run: mlx5 left on mlx5_core" hasnt "$work/calls" "0000:5e:00.0"
expect "run: mlx5 explained" has "$out" "0000:5e:00.0: mlx5 stays on mlx5_core (bifurcated"
expect "run: the NUMA mismatch named" has "$out" "PROBLEM: 0000:af:00.0 is on NUMA node 1 but cores 2-6 are on node(s) 0"
expect "run: rcu_nocbs short of core 6" has "$out" "PROBLEM: rcu_nocbs=2-5 does not cover core(s) 6"
expect "run: isolcpus with its flags accepted" has "$out" "isolcpus=managed_irq,domain,2-6: covers 2-6"
expect "run: IRQ 10 moved to the housekeeping cores" test "$(cat "$fake/proc/irq/10/smp_affinity_list")" = "0-1,7-39"
expect "run: IRQ 11 (housekeeping already) left" test "$(cat "$fake/proc/irq/11/smp_affinity_list")" = "0-1"
expect "run: IRQ 12 moved" test "$(cat "$fake/proc/irq/12/smp_affinity_list")" = "0-1,7-39"
expect "run: default IRQ affinity = cores 0, 1, 7-39" test "$(cat "$fake/proc/irq/default_smp_affinity")" = "000000ff,ffffff83"
expect "run: governors of the isolated cores" bash -c "for c in 2 3 4 5 6; do [ \"\$(cat '$fake'/sys/devices/system/cpu/cpu\$c/cpufreq/scaling_governor)\" = performance ] || exit 1; done"
expect "run: housekeeping cores' governors untouched" test "$(g 0)$(g 1)$(g 7)" = powersavepowersavepowersave

calls=$(wc -l <"$work/calls")
tree >"$work/t2"
rc=0
run >"$work/run2.out" 2>&1 || rc=$?
tree >"$work/t3"
out=$work/run2.out
expect "second run: still exit 1 (the reboot-only problems remain), got $rc" test "$rc" -eq 1
expect "second run: no command run again" test "$(wc -l <"$work/calls")" -eq "$calls"
expect "second run: nothing changed" cmp -s "$work/t2" "$work/t3"
expect "second run: 0 changes" has "$out" "0 change(s) made"
expect "second run: says what is in place" bash -c "grep -qF '4 x 1G reserved on NUMA node 0: enough' '$out' && grep -qF '0000:3b:00.0: already bound to vfio-pci' '$out' && grep -qF 'cpu2: performance already' '$out'"

# Bad arguments are refused before anything is done.
for bad in "--cores" "--cores x" "--cores 2 --hugepage-size 4K" "--cores 2 3b:00.0" "--cores 0-39" "--cores 2-6 --housekeeping 6-7"; do
    rc=0
    # shellcheck disable=SC2086 # the arguments are split on purpose
    HOST_SETUP_ROOT=$fake "$script" --dry-run $bad >/dev/null 2>&1 || rc=$?
    expect "refuses '$bad' with exit 2, got $rc" test "$rc" -eq 2
done

echo "host-setup: $((checks - failures)) passed, $failures failed"
((failures == 0))

/* The DPDK API surface taphold binds. Keep this list short: every header here
 * adds to bindgen's work and to the static-inline wrapper file. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_telemetry.h>

/* rte_errno is a per-lcore (thread-local) macro; bindgen cannot see through it. */
int taphold_rte_errno(void);

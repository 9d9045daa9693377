/* The one hand-written C function dpdk-sys needs: rte_errno is a macro over a
 * thread-local variable, so Rust reads it through this getter. */
#include "wrapper.h"

int taphold_rte_errno(void) { return rte_errno; }

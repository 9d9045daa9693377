//! The TSC clock every role stamps events with.
//!
//! Reading the TSC is one instruction; converting cycles to nanoseconds must
//! not be a division on the hot path, so the conversion is a fixed-point
//! multiply precomputed from the TSC frequency DPDK measured at EAL init.
//!
//! What an operator reads must line up with a capture, the events file and
//! the backup node's journal, so [`Clock::now_ns`] is UNIX-epoch nanoseconds:
//! the TSC anchored once to CLOCK_REALTIME when the clock is made. After that
//! it follows the TSC alone (no syscall, no NTP step): it is a monotonic
//! clock that reads as wall-clock time, drifting from CLOCK_REALTIME only by
//! the TSC's frequency error over the life of the process.

/// Cycles and nanoseconds from the invariant TSC. `Copy`, so each lcore role
/// keeps its own copy and never touches shared state to read the time. Make
/// it once per process and hand out copies: copies share one anchor, so their
/// readings compare.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    hz: u64,
    /// Nanoseconds per cycle in 32.32 fixed point.
    ns_per_cycle_fp32: u64,
    /// Added to the TSC's nanoseconds to give UNIX-epoch nanoseconds.
    offset_ns: u64,
}

impl Clock {
    /// The clock at the frequency DPDK measured, anchored to the wall clock
    /// now. Needs an initialised EAL, which `&Eal` proves.
    pub fn new(_eal: &crate::Eal) -> Clock {
        // SAFETY: EAL is initialised (we hold an Eal), so the TSC frequency is set.
        let hz = unsafe { dpdk_sys::rte_get_tsc_hz() };
        Clock::with_hz(hz).anchored(realtime_ns())
    }

    /// A clock for a given frequency, reading TSC nanoseconds unanchored
    /// (tests, and tools that read recorded cycles).
    pub fn with_hz(hz: u64) -> Clock {
        let hz = hz.max(1);
        Clock {
            hz,
            ns_per_cycle_fp32: ((1_000_000_000u128 << 32) / hz as u128) as u64,
            offset_ns: 0,
        }
    }

    /// This clock, reading `wall_ns` now (UNIX-epoch nanoseconds).
    pub fn anchored(self, wall_ns: u64) -> Clock {
        let tsc_ns = self.cycles_to_ns(read_tsc());
        Clock {
            offset_ns: wall_ns.saturating_sub(tsc_ns),
            ..self
        }
    }

    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// The current TSC value.
    #[inline(always)]
    pub fn cycles(&self) -> u64 {
        read_tsc()
    }

    /// Cycles to nanoseconds, without division.
    #[inline(always)]
    pub fn cycles_to_ns(&self, cycles: u64) -> u64 {
        ((cycles as u128 * self.ns_per_cycle_fp32 as u128) >> 32) as u64
    }

    /// UNIX-epoch nanoseconds (TSC nanoseconds on an unanchored clock).
    #[inline(always)]
    pub fn now_ns(&self) -> u64 {
        self.cycles_to_ns(read_tsc()).wrapping_add(self.offset_ns)
    }

    pub fn ns_to_cycles(&self, ns: u64) -> u64 {
        (ns as u128 * self.hz as u128 / 1_000_000_000) as u64
    }
}

/// CLOCK_REALTIME in nanoseconds (0 before 1970).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[inline(always)]
fn read_tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects and is available on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: rte_rdtsc only reads the platform's cycle counter.
        unsafe { dpdk_sys::rte_rdtsc() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_cycles_to_ns_at_common_frequencies() {
        for hz in [
            1_000_000_000u64,
            2_100_000_000,
            2_999_999_999,
            3_700_000_000,
        ] {
            let c = Clock::with_hz(hz);
            for cycles in [0u64, 1, hz, 10 * hz + 12345, u32::MAX as u64 * 7] {
                let exact = (cycles as u128 * 1_000_000_000 / hz as u128) as u64;
                let got = c.cycles_to_ns(cycles);
                // 32.32 fixed point: relative error below 2^-32 plus one ns of truncation.
                let tol = exact / (1 << 30) + 1;
                assert!(
                    got.abs_diff(exact) <= tol,
                    "hz {hz} cycles {cycles}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn an_anchored_clock_reads_wall_clock_time() {
        let c = Clock::with_hz(2_000_000_000);
        let wall = realtime_ns();
        let a = c.anchored(wall);
        let now = a.now_ns();
        // The anchor holds (the TSC rate here is assumed, so allow a wide margin for
        // the few microseconds between the two readings).
        assert!(now >= wall && now - wall < 1_000_000_000, "{now} vs {wall}");
        assert!(a.now_ns() >= now, "monotonic");
        assert!(c.now_ns() < wall, "the unanchored clock reads TSC time");
    }

    #[test]
    fn ns_to_cycles_inverts() {
        let c = Clock::with_hz(2_500_000_000);
        assert_eq!(c.ns_to_cycles(1_000), 2_500);
        // Round trip through the fixed-point conversion stays within a few cycles.
        assert!(
            c.ns_to_cycles(c.cycles_to_ns(2_500_000))
                .abs_diff(2_500_000)
                <= 4
        );
    }
}

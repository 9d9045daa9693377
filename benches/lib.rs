//! taphold's benchmarks. Nothing here is a test of timing: every figure is measured by
//! `benches/run.sh` and recorded, with its command and machine, in `benches/RESULTS.md`.
//!
//! | figure | how |
//! |---|---|
//! | 1 throughput vs testpmd | `run.sh throughput`: `gen_pcap.py`, then testpmd and taphold in turn, `parse_throughput.py` |
//! | 2 hold ring vs rte_ring | `run.sh ring`: the criterion bench `hold_ring.rs`, `parse_ring.py` |
//! | 3 tap vs ack latency | `run.sh latency`: finite replays with `release.gate` and `fibre_delay_us`, `parse_latency.py` |
//! | 4 instructions by role | `run.sh callgrind`: valgrind, `callgrind_roles.py` |
//! | 5 hot-path allocations | read from every run's summary |
//! | 6 hold-time plot | `run.sh plot`: `plot.py` writes `hold-time-cdf.svg` |
//! | 7 paced load, added latency | `run.sh paced`: the `taphold-paced` program (`paced.rs`: generator and plain forwarder over memif), `paced_report.py`, `plot_paced.py` writes `added-latency.svg` |

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The scripts `run.sh` calls are where it expects them.
    #[test]
    fn run_sh_helpers_exist() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in [
            "run.sh",
            "gen_pcap.py",
            "parse_throughput.py",
            "parse_ring.py",
            "parse_latency.py",
            "callgrind_roles.py",
            "plot.py",
            "report.py",
            "hold_ring.rs",
            "paced.rs",
            "paced_report.py",
            "plot_paced.py",
        ] {
            assert!(dir.join(f).is_file(), "benches/{f} is missing");
        }
    }
}

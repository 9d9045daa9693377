//! The latency monitor: one fixed histogram per measured latency (tap round trip, ack round
//! trip, hold time), closed every window, with an alert when a window's percentile departs
//! from the baseline.
//!
//! The control lcore feeds it samples with [`LatencyMonitor::record`] as it drains the event
//! ring, and calls [`LatencyMonitor::poll`] every ~100 µs; `poll` returns an [`Alert`] when a
//! window has closed whose quantile is more than `factor` times the baseline
//! ([`Direction::Slower`]) or less than the baseline divided by `factor`
//! ([`Direction::Faster`]: a tap round trip that suddenly drops by 4× is as suspicious as one
//! that grows, e.g. frames no longer going through the fibre we think they are).
//!
//! # Windows
//!
//! Windows are `[start, start + window_ns)` on the caller's clock, the first starting at
//! [`LatencyMonitor::new`]. Both `record` and `poll` close a window that is due, so a sample
//! lands in the window its `now_ns` belongs to however late the next `poll` comes. Windows
//! stay on the grid `start + k * window_ns`: after a gap, the skipped windows are empty and
//! produce nothing. A window with fewer than `min_samples` samples is shown by
//! [`LatencyMonitor::last_window`] but neither forms the baseline nor raises an alert: a
//! quiet link's p99 is noise. A `now_ns` earlier than one already seen is taken as that one
//! (the clock never runs backwards here).
//!
//! # Baseline
//!
//! The first `baseline_windows` windows that have enough samples form the baseline: the
//! **median** of their quantiles (for an even count, the mean of the two middle ones). The
//! median rather than the mean so that one odd window during start-up (the market opening, a
//! hiccup on the backup host) does not move it. It is then fixed: the monitor compares against
//! the conditions it was started in, and does not drift along with a slow degradation. After
//! an intended change (new fibre, new backup node), operators restart the appliance or call
//! [`LatencyMonitor::rebaseline`]. No alert is raised while the baseline forms.
//!
//! # The histogram
//!
//! Log-linear buckets in the manner of HdrHistogram (no dependency): values below 32 ns each
//! have their own bucket; above, each power of two `[2^e, 2^(e+1))` is split into 32 equal
//! buckets, indexed by the five bits after the leading one. That covers every `u64` (1 ns to 584
//! years, nothing clamps) in [`BUCKETS`] = 1920 counters, with buckets at most 1/32 (3.1 %) of
//! their value wide. A quantile is reported as its bucket's midpoint, so it is within 1/64
//! (1.6 %) of the true sample value, and exactly the window's minimum or maximum when the
//! quantile is the first or last sample.
//!
//! # Cost
//!
//! [`LatencyMonitor::new`] makes the monitor's only allocation (the counters and the baseline
//! slots, about 24 KiB). `record` is a few instructions; closing a window walks only the
//! buckets between the window's minimum and maximum, once to find the quantile and once to
//! clear them; forming the baseline sorts its slots in place. Nothing allocates, locks or
//! panics after construction, whatever the inputs.

use core::fmt;

/// Values below this each have their own bucket; above, each power of two has this many.
const SUB_BUCKETS: u64 = 32;
/// `log2(SUB_BUCKETS)`.
const SUB_BITS: u32 = 5;

/// The number of histogram buckets: 32 exact ones below 32 ns, then 32 per power of two for
/// the 59 powers from 2^5 to 2^63.
pub const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB_BUCKETS as usize;

/// The most windows a baseline can be formed from.
pub const MAX_BASELINE_WINDOWS: u32 = 1024;

/// The bucket of `v`: `v` itself below 32; above, 32 per power of two by the five bits after
/// the leading one.
#[inline]
fn bucket(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // 5..=63
    let sub = (v >> (e - SUB_BITS)) & (SUB_BUCKETS - 1);
    ((u64::from(e - SUB_BITS) + 1) * SUB_BUCKETS + sub) as usize
}

/// The smallest value in bucket `i` and the bucket's width.
#[inline]
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return (i, 1);
    }
    let shift = i / SUB_BUCKETS - 1; // e - SUB_BITS
    let sub = i % SUB_BUCKETS;
    ((SUB_BUCKETS + sub) << shift, 1 << shift)
}

/// The value a quantile falling in bucket `i` is reported as: its midpoint.
#[inline]
fn bucket_mid(i: usize) -> u64 {
    let (low, width) = bucket_range(i);
    low + (width - 1) / 2
}

/// When a latency monitor closes windows, what it measures in them and when it alerts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonitorConfig {
    /// Window length in nanoseconds (at least 1).
    pub window_ns: u64,
    /// The quantile compared, in `[0, 1]` (e.g. 0.99 for p99).
    pub quantile: f64,
    /// How far a window's quantile may depart from the baseline, either way, before an alert:
    /// `> baseline * factor` or `< baseline / factor`. At least 1.
    pub factor: f64,
    /// The first this many qualifying windows form the baseline (1..=[`MAX_BASELINE_WINDOWS`]).
    pub baseline_windows: u32,
    /// Windows with fewer samples are ignored (at least 1).
    pub min_samples: u32,
}

impl Default for MonitorConfig {
    /// One-second windows, p99, a factor of 4, a baseline from the first 10 windows of at
    /// least 100 samples.
    fn default() -> Self {
        MonitorConfig {
            window_ns: 1_000_000_000,
            quantile: 0.99,
            factor: 4.0,
            baseline_windows: 10,
            min_samples: 100,
        }
    }
}

impl MonitorConfig {
    /// Checks the configuration, for refusing a bad one at start-up.
    /// [`LatencyMonitor::new`] does not need it (it clamps, see there).
    pub fn validate(&self) -> Result<(), MonitorConfigError> {
        if self.window_ns == 0 {
            return Err(MonitorConfigError::ZeroWindow);
        }
        if !(0.0..=1.0).contains(&self.quantile) {
            return Err(MonitorConfigError::Quantile(self.quantile));
        }
        if self.factor.is_nan() || self.factor < 1.0 {
            return Err(MonitorConfigError::Factor(self.factor));
        }
        if self.baseline_windows == 0 || self.baseline_windows > MAX_BASELINE_WINDOWS {
            return Err(MonitorConfigError::BaselineWindows(self.baseline_windows));
        }
        if self.min_samples == 0 {
            return Err(MonitorConfigError::ZeroMinSamples);
        }
        Ok(())
    }

    /// The configuration as the monitor uses it: every field clamped into its valid range;
    /// a NaN quantile becomes 1 (the maximum), a NaN factor infinity (never alert).
    fn sanitized(mut self) -> Self {
        self.window_ns = self.window_ns.max(1);
        self.quantile = if self.quantile.is_nan() {
            1.0
        } else {
            self.quantile.clamp(0.0, 1.0)
        };
        self.factor = if self.factor.is_nan() {
            f64::INFINITY
        } else {
            self.factor.max(1.0)
        };
        self.baseline_windows = self.baseline_windows.clamp(1, MAX_BASELINE_WINDOWS);
        self.min_samples = self.min_samples.max(1);
        self
    }
}

/// Why a monitor configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MonitorConfigError {
    /// A window of 0 ns.
    ZeroWindow,
    /// The quantile is not in `[0, 1]`.
    Quantile(f64),
    /// The factor is below 1 (every window would alert) or NaN.
    Factor(f64),
    /// The baseline needs 1..=[`MAX_BASELINE_WINDOWS`] windows.
    BaselineWindows(u32),
    /// `min_samples` of 0: an empty window has no quantile.
    ZeroMinSamples,
}

impl fmt::Display for MonitorConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MonitorConfigError::ZeroWindow => f.write_str("latency window must be at least 1 ns"),
            MonitorConfigError::Quantile(q) => write!(f, "quantile {q} is not between 0 and 1"),
            MonitorConfigError::Factor(x) => write!(f, "alert factor {x} must be at least 1"),
            MonitorConfigError::BaselineWindows(n) => write!(
                f,
                "baseline of {n} windows: must be between 1 and {MAX_BASELINE_WINDOWS}"
            ),
            MonitorConfigError::ZeroMinSamples => {
                f.write_str("min_samples must be at least 1: an empty window has no quantile")
            }
        }
    }
}

impl std::error::Error for MonitorConfigError {}

/// Which way a window departed from the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The window's quantile is above `baseline * factor`.
    Slower,
    /// The window's quantile is below `baseline / factor`.
    Faster,
}

impl Direction {
    /// The name used in telemetry and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Slower => "slower",
            Direction::Faster => "faster",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A closed window whose quantile departed from the baseline by more than the factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alert {
    /// End of the window (exclusive), on the caller's clock.
    pub window_end_ns: u64,
    /// The window's quantile.
    pub quantile_ns: u64,
    /// The baseline it was compared with.
    pub baseline_ns: u64,
    /// `quantile_ns / baseline_ns` (a baseline of 0 counts as 1 ns).
    pub ratio: f64,
    /// Which way it departed.
    pub direction: Direction,
}

/// What one closed window held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowSummary {
    /// End of the window (exclusive), on the caller's clock.
    pub end_ns: u64,
    /// Samples recorded in it.
    pub count: u64,
    /// Its quantile (0 when empty).
    pub quantile_ns: u64,
    /// Its largest sample (0 when empty).
    pub max_ns: u64,
}

/// The preallocated part: histogram counters and the baseline's slots.
struct Buffers {
    counts: [u64; BUCKETS],
    baseline: [u64; MAX_BASELINE_WINDOWS as usize],
}

/// A windowed latency histogram with a fixed baseline; see the [module docs](self).
pub struct LatencyMonitor {
    cfg: MonitorConfig,
    buf: Box<Buffers>,
    /// Start of the open window.
    window_start_ns: u64,
    /// The latest `now` seen; an earlier one is taken as this.
    last_now_ns: u64,
    /// Samples in the open window, and their extremes (valid when `count > 0`).
    count: u64,
    min_ns: u64,
    max_ns: u64,
    /// Qualifying windows collected into `buf.baseline` while the baseline forms.
    collected: u32,
    baseline_ns: Option<u64>,
    last_window: Option<WindowSummary>,
    /// The latest alert not yet handed out by `poll`.
    pending: Option<Alert>,
}

impl fmt::Debug for LatencyMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyMonitor")
            .field("cfg", &self.cfg)
            .field("window_start_ns", &self.window_start_ns)
            .field("count", &self.count)
            .field("baseline_ns", &self.baseline_ns)
            .field("collected", &self.collected)
            .field("last_window", &self.last_window)
            .finish_non_exhaustive()
    }
}

impl LatencyMonitor {
    /// A monitor whose first window opens at `now_ns`. This is its only allocation.
    ///
    /// Out-of-range settings are clamped rather than refused (check them at start-up with
    /// [`MonitorConfig::validate`]): window at least 1 ns, quantile into `[0, 1]` (NaN: 1),
    /// factor at least 1 (NaN: never alert), baseline windows into
    /// `1..=`[`MAX_BASELINE_WINDOWS`], min samples at least 1.
    pub fn new(cfg: MonitorConfig, now_ns: u64) -> Self {
        LatencyMonitor {
            cfg: cfg.sanitized(),
            buf: Box::new(Buffers {
                counts: [0; BUCKETS],
                baseline: [0; MAX_BASELINE_WINDOWS as usize],
            }),
            window_start_ns: now_ns,
            last_now_ns: now_ns,
            count: 0,
            min_ns: 0,
            max_ns: 0,
            collected: 0,
            baseline_ns: None,
            last_window: None,
            pending: None,
        }
    }

    /// Records one latency sample taken at `now_ns`, first closing the open window if it is
    /// due (the closed window's alert, if any, waits for the next [`poll`](Self::poll)).
    #[inline]
    pub fn record(&mut self, now_ns: u64, value_ns: u64) {
        self.roll(now_ns);
        let b = &mut self.buf.counts[bucket(value_ns)];
        *b = b.saturating_add(1);
        if self.count == 0 {
            self.min_ns = value_ns;
            self.max_ns = value_ns;
        } else {
            self.min_ns = self.min_ns.min(value_ns);
            self.max_ns = self.max_ns.max(value_ns);
        }
        self.count = self.count.saturating_add(1);
    }

    /// Closes the open window if it is due, and returns the alert of the latest closed
    /// window not yet returned, if it departed from the baseline. Polled at least once per
    /// window, no alert is ever superseded.
    pub fn poll(&mut self, now_ns: u64) -> Option<Alert> {
        self.roll(now_ns);
        self.pending.take()
    }

    /// The baseline quantile, once the baseline windows have been seen.
    #[inline]
    pub fn baseline(&self) -> Option<u64> {
        self.baseline_ns
    }

    /// The most recently closed window (including one with too few samples to count).
    #[inline]
    pub fn last_window(&self) -> Option<WindowSummary> {
        self.last_window
    }

    /// Forgets the baseline: the next `baseline_windows` qualifying windows form a new one,
    /// and nothing alerts meanwhile. The open window and any pending alert are kept.
    pub fn rebaseline(&mut self) {
        self.baseline_ns = None;
        self.collected = 0;
    }

    /// The configuration in use, after clamping.
    #[inline]
    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// Closes the open window if `now_ns` is at or past its end, and opens the one on the
    /// grid that contains `now_ns`.
    #[inline]
    fn roll(&mut self, now_ns: u64) {
        let now = now_ns.max(self.last_now_ns);
        self.last_now_ns = now;
        // Saturating: a window that would end past the clock's end never closes.
        let end = self.window_start_ns.saturating_add(self.cfg.window_ns);
        if now < end {
            return;
        }
        self.close(end);
        // `now >= end`, so this neither underflows nor passes `now`.
        let skipped = (now - end) / self.cfg.window_ns;
        self.window_start_ns = end + skipped * self.cfg.window_ns;
    }

    /// Summarises the open window, feeds the baseline or checks it against the baseline, and
    /// clears the histogram.
    fn close(&mut self, end_ns: u64) {
        let summary = WindowSummary {
            end_ns,
            count: self.count,
            quantile_ns: self.quantile(),
            max_ns: if self.count == 0 { 0 } else { self.max_ns },
        };
        self.last_window = Some(summary);
        if self.count >= u64::from(self.cfg.min_samples) {
            match self.baseline_ns {
                Some(baseline) => {
                    if let Some(alert) = self.compare(summary, baseline) {
                        self.pending = Some(alert);
                    }
                }
                None => self.collect(summary.quantile_ns),
            }
        }
        if self.count > 0 {
            // Only the buckets between the extremes can be non-zero.
            self.buf.counts[bucket(self.min_ns)..=bucket(self.max_ns)].fill(0);
        }
        self.count = 0;
    }

    /// The open window's quantile by nearest rank: the smallest bucket holding at least
    /// `ceil(q * count)` of the samples, reported as its midpoint clamped into the window's
    /// extremes (so the first and last ranks are exact).
    fn quantile(&self) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // `as` saturates, and the clamp keeps the rank a real one.
        let rank = ((self.cfg.quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return self.max_ns;
        }
        if rank == 1 {
            return self.min_ns;
        }
        let (lo, hi) = (bucket(self.min_ns), bucket(self.max_ns));
        let mut seen = 0u64;
        for (i, &n) in self.buf.counts[lo..=hi].iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return bucket_mid(lo + i).clamp(self.min_ns, self.max_ns);
            }
        }
        // Unreachable while the counters add up to `count`; the maximum is the safe answer.
        self.max_ns
    }

    /// The alert for a qualifying window, if its quantile departs from `baseline` by more
    /// than the factor either way.
    fn compare(&self, w: WindowSummary, baseline: u64) -> Option<Alert> {
        // A baseline of 0 ns (possible only for sub-nanosecond latencies) counts as 1, so the
        // ratio stays finite and a 0 ns window is not "faster" than it.
        let base = baseline.max(1) as f64;
        let q = w.quantile_ns as f64;
        let direction = if q > base * self.cfg.factor {
            Direction::Slower
        } else if q < base / self.cfg.factor {
            Direction::Faster
        } else {
            return None;
        };
        Some(Alert {
            window_end_ns: w.end_ns,
            quantile_ns: w.quantile_ns,
            baseline_ns: baseline,
            ratio: q / base,
            direction,
        })
    }

    /// Adds a qualifying window's quantile to the forming baseline; the last one fixes it.
    fn collect(&mut self, quantile_ns: u64) {
        let slots = &mut self.buf.baseline;
        slots[self.collected as usize] = quantile_ns;
        self.collected += 1;
        if self.collected < self.cfg.baseline_windows {
            return;
        }
        let formed = &mut slots[..self.collected as usize];
        // In place: `sort_unstable` never allocates.
        formed.sort_unstable();
        let mid = formed.len() / 2;
        let median = if formed.len() % 2 == 1 {
            formed[mid]
        } else {
            ((u128::from(formed[mid - 1]) + u128::from(formed[mid])) / 2) as u64
        };
        self.baseline_ns = Some(median);
        self.collected = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const W: u64 = 1_000;
    const T0: u64 = 5_000_000;

    const CFG: MonitorConfig = MonitorConfig {
        window_ns: W,
        quantile: 0.99,
        factor: 4.0,
        baseline_windows: 5,
        min_samples: 50,
    };

    /// A deterministic generator (SplitMix64), so the distributions are the same every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in `[0, 1)`.
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The nearest-rank quantile of `samples`, the slow way.
    fn exact_quantile(samples: &[u64], q: f64) -> u64 {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let n = s.len() as u64;
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        s[rank as usize - 1]
    }

    /// Records `values` in window `k` (spread over it) and closes it; returns the alert.
    fn window(m: &mut LatencyMonitor, k: u64, values: &[u64]) -> Option<Alert> {
        let start = T0 + k * W;
        for (i, &v) in values.iter().enumerate() {
            m.record(start + (i as u64 * W) / values.len() as u64, v);
        }
        let alert = m.poll(start + W);
        let w = m.last_window().unwrap();
        assert_eq!((w.end_ns, w.count), (start + W, values.len() as u64));
        alert
    }

    /// `n` samples of a tap round trip: mostly around `median`, with a tail to ~3×.
    fn typical(rng: &mut Rng, n: usize, median: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let u = rng.unit();
                let tail = if u > 0.98 {
                    2.0 + 10.0 * (u - 0.98)
                } else {
                    0.8 + 0.4 * u
                };
                (median as f64 * tail) as u64
            })
            .collect()
    }

    #[test]
    fn buckets_cover_every_value_within_precision() {
        let mut values: Vec<u64> = (0..200_000).collect();
        for e in 0..64 {
            let p = 1u64 << e;
            values.extend([p - 1, p, p + 1, p | (p >> 1), p.wrapping_mul(3) / 2]);
        }
        values.extend([u64::MAX - 1, u64::MAX, 100_000_000_000]);
        let mut rng = Rng(1);
        values.extend((0..100_000).map(|_| rng.next() >> (rng.next() % 64)));
        for v in values {
            let i = bucket(v);
            assert!(i < BUCKETS, "{v}");
            let (low, width) = bucket_range(i);
            assert!(
                low <= v && v - low < width,
                "{v} not in bucket {i} [{low}, +{width})"
            );
            // Width at most 1/32 of the value; the midpoint within 1/64.
            assert!(
                width == 1 || width as f64 <= low as f64 / 32.0,
                "{v}: width {width}"
            );
            let mid = bucket_mid(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 1.0 / 64.0, "{v}: midpoint {mid} off by {err}");
        }
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut next = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bucket_range(i);
            assert_eq!(low, next, "bucket {i} does not start where {} ended", i - 1);
            assert_eq!(bucket(low), i);
            assert_eq!(bucket(low + (width - 1)), i);
            assert_eq!(bucket(bucket_mid(i)), i);
            next = low.wrapping_add(width);
        }
        assert_eq!(next, 0, "the last bucket must end at u64::MAX");
    }

    /// The quantile of known distributions, over every quantile an operator would pick,
    /// within 3 % of the exact one (the design bound is 1/64).
    #[test]
    fn quantiles_of_known_distributions_within_3_percent() {
        let mut rng = Rng(7);
        let uniform: Vec<u64> = (0..20_000).map(|_| 1 + rng.next() % 100_000).collect();
        // Exponential, mean 20 µs.
        let exponential: Vec<u64> = (0..20_000)
            .map(|_| (-(1.0 - rng.unit()).ln() * 20_000.0) as u64)
            .collect();
        // Bimodal: 1 µs fast path, 50 µs slow path 5 % of the time.
        let bimodal: Vec<u64> = (0..20_000)
            .map(|_| {
                if rng.unit() < 0.05 {
                    50_000 + rng.next() % 5_000
                } else {
                    1_000 + rng.next() % 100
                }
            })
            .collect();
        // Log-uniform across 1 ns .. 100 s.
        let wide: Vec<u64> = (0..20_000)
            .map(|_| 10f64.powf(rng.unit() * 11.0) as u64)
            .collect();
        let small: Vec<u64> = (0..1_000).map(|i| i % 40).collect();
        let one = vec![123_456_789u64];
        for (name, samples) in [
            ("uniform", &uniform),
            ("exponential", &exponential),
            ("bimodal", &bimodal),
            ("wide", &wide),
            ("small", &small),
            ("one", &one),
        ] {
            for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
                let cfg = MonitorConfig {
                    quantile: q,
                    min_samples: 1,
                    ..CFG
                };
                let mut m = LatencyMonitor::new(cfg, T0);
                for &v in samples.iter() {
                    m.record(T0, v);
                }
                assert_eq!(m.poll(T0 + W), None);
                let w = m.last_window().unwrap();
                let exact = exact_quantile(samples, q);
                let err = (w.quantile_ns as f64 - exact as f64).abs() / (exact.max(1) as f64);
                assert!(
                    err <= 0.03,
                    "{name} q={q}: {} vs exact {exact} ({:.2} %)",
                    w.quantile_ns,
                    err * 100.0
                );
                assert!(err <= 1.0 / 64.0, "{name} q={q}: beyond the design bound");
                assert_eq!(w.max_ns, *samples.iter().max().unwrap());
                assert_eq!(w.count, samples.len() as u64);
                if q == 0.0 {
                    assert_eq!(w.quantile_ns, *samples.iter().min().unwrap(), "{name}");
                }
                if q == 1.0 {
                    assert_eq!(w.quantile_ns, w.max_ns, "{name}");
                }
            }
        }
    }

    #[test]
    fn stable_distribution_never_alerts() {
        let mut rng = Rng(3);
        let mut m = LatencyMonitor::new(CFG, T0);
        for k in 0..200 {
            let n = 50 + (rng.next() % 500) as usize;
            assert_eq!(
                window(&mut m, k, &typical(&mut rng, n, 10_000)),
                None,
                "window {k}"
            );
            if k < 4 {
                assert_eq!(m.baseline(), None);
            }
        }
        let b = m.baseline().unwrap();
        assert!((20_000..=30_000).contains(&b), "baseline {b}");
    }

    /// Constant windows have exact quantiles, so the factor's boundary is tested exactly:
    /// 4× the baseline is not an alert, one nanosecond more is; likewise a quarter.
    #[test]
    fn alert_exactly_past_the_factor_both_ways() {
        let base = 1_000u64;
        let mut m = LatencyMonitor::new(CFG, T0);
        for k in 0..5 {
            assert_eq!(window(&mut m, k, &[base; 100]), None);
        }
        assert_eq!(m.baseline(), Some(base));
        let cases = [
            (4_000, None),
            (4_001, Some(Direction::Slower)),
            (1_000_000, Some(Direction::Slower)),
            (3_999, None),
            (250, None),
            (249, Some(Direction::Faster)),
            (0, Some(Direction::Faster)),
            (1_000, None),
        ];
        for (k, (value, expect)) in (5..).zip(cases) {
            let alert = window(&mut m, k, &[value; 100]);
            assert_eq!(alert.map(|a| a.direction), expect, "{value}");
            if let Some(a) = alert {
                assert_eq!(a.window_end_ns, T0 + (k + 1) * W);
                assert_eq!(a.quantile_ns, value);
                assert_eq!(a.baseline_ns, base);
                assert_eq!(a.ratio, value as f64 / base as f64);
            }
            // The baseline never moves.
            assert_eq!(m.baseline(), Some(base));
        }
    }

    /// A realistic distribution whose tail grows: p99 up by more than the factor alerts,
    /// p99 up by less (or only the median moving) does not.
    #[test]
    fn p99_jump_alerts_only_beyond_factor() {
        let mut rng = Rng(11);
        let mut m = LatencyMonitor::new(CFG, T0);
        for k in 0..5 {
            assert_eq!(window(&mut m, k, &typical(&mut rng, 1_000, 10_000)), None);
        }
        let base = m.baseline().unwrap();
        let mut k = 5;
        // 3% of samples now take 5× the baseline p99: the p99 lands among them.
        let mut slow = typical(&mut rng, 1_000, 10_000);
        for v in slow.iter_mut().take(30) {
            *v = base * 5;
        }
        let a = window(&mut m, k, &slow).expect("p99 ×5 must alert");
        assert_eq!(a.direction, Direction::Slower);
        assert!((4.9..=5.1).contains(&a.ratio), "ratio {}", a.ratio);
        assert_eq!(a.baseline_ns, base);
        // Only 0.5 % slow: p99 unchanged, no alert.
        k += 1;
        let mut blip = typical(&mut rng, 1_000, 10_000);
        for v in blip.iter_mut().take(5) {
            *v = base * 50;
        }
        assert_eq!(window(&mut m, k, &blip), None);
        // Tail at 3.5×: below the factor.
        k += 1;
        let mut some = typical(&mut rng, 1_000, 10_000);
        for v in some.iter_mut().take(30) {
            *v = base * 7 / 2;
        }
        assert_eq!(window(&mut m, k, &some), None);
    }

    /// Windows below `min_samples` neither form the baseline nor alert, but are summarised.
    #[test]
    fn sparse_windows_are_ignored() {
        let mut m = LatencyMonitor::new(CFG, T0);
        let mut k = 0;
        // Interleave sparse outliers with the baseline windows.
        for _ in 0..5 {
            assert_eq!(window(&mut m, k, &[1_000; 50]), None);
            assert_eq!(window(&mut m, k + 1, &[1_000_000; 49]), None);
            k += 2;
        }
        assert_eq!(m.baseline(), Some(1_000));
        assert_eq!(window(&mut m, k, &[1_000_000; 49]), None);
        assert_eq!(m.last_window().unwrap().quantile_ns, 1_000_000);
        assert_eq!(window(&mut m, k + 1, &[]), None);
        assert_eq!(
            m.last_window().unwrap(),
            WindowSummary {
                end_ns: T0 + (k + 2) * W,
                count: 0,
                quantile_ns: 0,
                max_ns: 0
            }
        );
        assert_eq!(
            window(&mut m, k + 2, &[1_000_000; 50]).unwrap().ratio,
            1_000.0
        );
    }

    /// The baseline is the median of the baseline windows' quantiles.
    #[test]
    fn baseline_is_the_median() {
        for (quantiles, median) in [
            (&[100u64][..], 100),
            (&[100, 100, 10_000][..], 100),
            (&[300, 100, 200, 1_000][..], 250),
            (&[5, 1, 4, 2, 3][..], 3),
            (&[u64::MAX, u64::MAX - 2][..], u64::MAX - 1),
        ] {
            let cfg = MonitorConfig {
                baseline_windows: quantiles.len() as u32,
                min_samples: 1,
                ..CFG
            };
            let mut m = LatencyMonitor::new(cfg, T0);
            for (k, &q) in (0..).zip(quantiles) {
                assert_eq!(m.baseline(), None);
                assert_eq!(window(&mut m, k, &[q; 10]), None);
            }
            assert_eq!(m.baseline(), Some(median), "{quantiles:?}");
        }
    }

    #[test]
    fn rebaseline_forms_a_new_baseline() {
        let mut m = LatencyMonitor::new(CFG, T0);
        for k in 0..5 {
            window(&mut m, k, &[1_000; 100]);
        }
        assert_eq!(m.baseline(), Some(1_000));
        // New fibre route: everything 10× slower, alerting until re-baselined.
        assert!(window(&mut m, 5, &[10_000; 100]).is_some());
        m.rebaseline();
        assert_eq!(m.baseline(), None);
        for k in 6..11 {
            assert_eq!(window(&mut m, k, &[10_000; 100]), None);
        }
        assert_eq!(m.baseline(), Some(10_000));
        assert_eq!(window(&mut m, 11, &[10_000; 100]), None);
        let a = window(&mut m, 12, &[1_000; 100]).unwrap();
        assert_eq!((a.direction, a.ratio), (Direction::Faster, 0.1));
        // Re-baselining mid-formation restarts it.
        m.rebaseline();
        for k in 13..16 {
            window(&mut m, k, &[7; 100]);
        }
        m.rebaseline();
        for k in 16..20 {
            window(&mut m, k, &[9; 100]);
        }
        assert_eq!(m.baseline(), None);
        window(&mut m, 20, &[9; 100]);
        assert_eq!(m.baseline(), Some(9));
    }

    /// Samples land in the window their time belongs to, whoever closes it; a late poll still
    /// gets the alert; windows stay on their grid across gaps.
    #[test]
    fn windows_follow_the_clock() {
        let cfg = MonitorConfig {
            baseline_windows: 1,
            min_samples: 1,
            ..CFG
        };
        let mut m = LatencyMonitor::new(cfg, T0);
        m.record(T0, 100);
        m.record(T0 + W - 1, 100);
        assert_eq!(m.last_window(), None);
        // This sample is past the end: `record` closes the first window before counting it.
        m.record(T0 + W, 1_000);
        let w = m.last_window().unwrap();
        assert_eq!((w.end_ns, w.count, w.quantile_ns), (T0 + W, 2, 100));
        assert_eq!(m.baseline(), Some(100));
        // The second window closes on a later record; its alert waits for the poll.
        m.record(T0 + 2 * W + 5, 100);
        let w = m.last_window().unwrap();
        assert_eq!((w.end_ns, w.count, w.max_ns), (T0 + 2 * W, 1, 1_000));
        let a = m.poll(T0 + 2 * W + 6).unwrap();
        assert_eq!(
            (a.window_end_ns, a.direction),
            (T0 + 2 * W, Direction::Slower)
        );
        assert_eq!(m.poll(T0 + 2 * W + 7), None, "an alert is returned once");
        // A gap of several windows: the open window closes at its own end, the next one
        // opens on the grid.
        m.record(T0 + 2 * W + 8, 100);
        assert_eq!(m.poll(T0 + 7 * W + 500), None);
        let w = m.last_window().unwrap();
        assert_eq!((w.end_ns, w.count), (T0 + 3 * W, 2));
        m.record(T0 + 8 * W - 1, 5_000);
        assert_eq!(m.poll(T0 + 8 * W - 1), None);
        let a = m.poll(T0 + 8 * W).unwrap();
        assert_eq!((a.window_end_ns, a.quantile_ns), (T0 + 8 * W, 5_000));
        // Two windows closed by records before a poll: the latest alert is the one returned.
        m.record(T0 + 8 * W, 9_000);
        m.record(T0 + 9 * W, 8_000);
        m.record(T0 + 10 * W, 1);
        let a = m.poll(T0 + 10 * W).unwrap();
        assert_eq!((a.window_end_ns, a.quantile_ns), (T0 + 10 * W, 8_000));
    }

    /// A clock stepping back never closes a window, never panics; samples then count in the
    /// open window.
    #[test]
    fn time_going_backwards() {
        let cfg = MonitorConfig {
            baseline_windows: 1,
            min_samples: 1,
            ..CFG
        };
        let mut m = LatencyMonitor::new(cfg, T0);
        m.record(T0 + 10, 100);
        for now in [T0 + 5, T0, 1, 0] {
            m.record(now, 100);
            assert_eq!(m.poll(now), None);
            assert_eq!(m.last_window(), None);
        }
        // Before the monitor's own start, too.
        let mut m2 = LatencyMonitor::new(cfg, T0);
        m2.record(0, 7);
        assert_eq!(m2.poll(0), None);
        assert_eq!(m2.last_window(), None);
        m.poll(T0 + W);
        assert_eq!(m.last_window().unwrap().count, 5);
        // Once time has reached T0 + 5 W, a reading of T0 + 2 W closes nothing.
        m.poll(T0 + 5 * W);
        let before = m.last_window();
        m.record(T0 + 2 * W, 1);
        assert_eq!(m.poll(T0 + 2 * W), None);
        assert_eq!(m.last_window(), before);
        m.poll(T0 + 6 * W);
        assert_eq!(m.last_window().unwrap().count, 1);
    }

    #[test]
    fn extremes_never_panic() {
        let weird = [
            MonitorConfig {
                window_ns: 0,
                quantile: f64::NAN,
                factor: f64::NAN,
                baseline_windows: 0,
                min_samples: 0,
            },
            MonitorConfig {
                window_ns: u64::MAX,
                quantile: -1.0,
                factor: 0.5,
                baseline_windows: u32::MAX,
                min_samples: u32::MAX,
            },
            MonitorConfig {
                window_ns: 1,
                quantile: 2.0,
                factor: f64::INFINITY,
                baseline_windows: 1,
                min_samples: 1,
            },
            MonitorConfig {
                quantile: f64::INFINITY,
                factor: 1.0,
                ..CFG
            },
            CFG,
        ];
        let times = [0, 1, T0, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        let values = [0, 1, 31, 32, 1_000, u64::MAX / 3, u64::MAX];
        for cfg in weird {
            for start in times {
                let mut m = LatencyMonitor::new(cfg, start);
                for &now in times.iter().chain(times.iter().rev()) {
                    for &v in &values {
                        m.record(now, v);
                        m.poll(now);
                    }
                    m.rebaseline();
                    if let Some(w) = m.last_window() {
                        assert!(w.quantile_ns <= w.max_ns);
                    }
                }
            }
        }
        // The clamped configurations.
        let c = *LatencyMonitor::new(weird[0], 0).config();
        assert_eq!(
            (c.window_ns, c.quantile, c.baseline_windows, c.min_samples),
            (1, 1.0, 1, 1)
        );
        assert_eq!(c.factor, f64::INFINITY);
        let c = *LatencyMonitor::new(weird[1], 0).config();
        assert_eq!((c.quantile, c.factor), (0.0, 1.0));
        assert_eq!(c.baseline_windows, MAX_BASELINE_WINDOWS);
        // A window of 1 ns polled every nanosecond, with the maximum baseline length.
        let cfg = MonitorConfig {
            window_ns: 1,
            baseline_windows: MAX_BASELINE_WINDOWS,
            min_samples: 1,
            ..CFG
        };
        let mut m = LatencyMonitor::new(cfg, 0);
        for t in 0..3 * u64::from(MAX_BASELINE_WINDOWS) {
            m.record(t, 500 + t % 7);
            assert_eq!(m.poll(t + 1), None);
        }
        assert_eq!(m.baseline(), Some(503));
    }

    #[test]
    fn validate() {
        assert_eq!(CFG.validate(), Ok(()));
        assert_eq!(MonitorConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut MonitorConfig)| {
            let mut c = CFG;
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.window_ns = 0), MonitorConfigError::ZeroWindow);
        assert_eq!(bad(|c| c.quantile = 1.5), MonitorConfigError::Quantile(1.5));
        assert!(
            matches!(bad(|c| c.quantile = f64::NAN), MonitorConfigError::Quantile(q) if q.is_nan())
        );
        assert_eq!(bad(|c| c.factor = 0.9), MonitorConfigError::Factor(0.9));
        assert!(
            matches!(bad(|c| c.factor = f64::NAN), MonitorConfigError::Factor(x) if x.is_nan())
        );
        assert_eq!(
            bad(|c| c.baseline_windows = 0),
            MonitorConfigError::BaselineWindows(0)
        );
        assert_eq!(
            bad(|c| c.baseline_windows = MAX_BASELINE_WINDOWS + 1),
            MonitorConfigError::BaselineWindows(MAX_BASELINE_WINDOWS + 1)
        );
        assert_eq!(
            bad(|c| c.min_samples = 0),
            MonitorConfigError::ZeroMinSamples
        );
        let msg = bad(|c| c.factor = 0.5).to_string();
        assert!(msg.contains("0.5") && msg.contains("at least 1"), "{msg}");
        assert_eq!(Direction::Slower.to_string(), "slower");
        assert_eq!(Direction::Faster.as_str(), "faster");
    }

    // ---------------------------------------------------------------------------------------
    // Property: random sample streams against a slow model of the windows and the baseline.

    /// What one step of the property does.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Record(u64),
        Poll,
        Rebaseline,
    }

    fn op_strategy() -> impl Strategy<Value = (i64, Op)> {
        let op = prop_oneof![
            6 => (0u64..1_000_000).prop_map(Op::Record),
            3 => Just(Op::Poll),
            1 => Just(Op::Rebaseline),
        ];
        // Mostly forward, sometimes back.
        (-50i64..200, op)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Windows, summaries, the baseline and alerts against a model kept the slow way: the
        /// samples of the open window in a `Vec`, exact quantiles (the histogram's must be
        /// within 1/64), the median by sorting, the alert rule from the definition.
        #[test]
        fn matches_windowed_model(
            window_ns in 1u64..500,
            quantile in 0.0f64..=1.0,
            factor in 1.0f64..8.0,
            baseline_windows in 1u32..5,
            min_samples in 1u32..6,
            ops in prop::collection::vec(op_strategy(), 1..400),
        ) {
            let cfg = MonitorConfig { window_ns, quantile, factor, baseline_windows, min_samples };
            let mut m = LatencyMonitor::new(cfg, 0);
            let (mut clock, mut last_now, mut start) = (0u64, 0u64, 0u64);
            let mut open: Vec<u64> = Vec::new();
            let mut forming: Vec<u64> = Vec::new();
            let mut baseline: Option<u64> = None;
            let mut pending: Option<Alert> = None;
            for (dt, op) in ops {
                clock = clock.saturating_add_signed(dt);
                // `rebaseline` takes no time: it neither sees the clock nor closes anything.
                let timed = !matches!(op, Op::Rebaseline);
                let now = if timed { clock.max(last_now) } else { last_now };
                last_now = now;
                let closing = timed && now >= start + window_ns;
                let before = m.last_window();
                let polled = match op {
                    Op::Record(v) => {
                        m.record(clock, v);
                        None
                    }
                    Op::Poll => Some(m.poll(clock)),
                    Op::Rebaseline => {
                        m.rebaseline();
                        None
                    }
                };
                if closing {
                    let end = start + window_ns;
                    let w = m.last_window().unwrap();
                    prop_assert_eq!(w.end_ns, end);
                    prop_assert_eq!(w.count, open.len() as u64);
                    prop_assert_eq!(w.max_ns, open.iter().copied().max().unwrap_or(0));
                    if open.is_empty() {
                        prop_assert_eq!(w.quantile_ns, 0);
                    } else {
                        let exact = exact_quantile(&open, quantile);
                        let err = (w.quantile_ns as f64 - exact as f64).abs();
                        prop_assert!(err <= exact as f64 / 64.0, "{} vs {}", w.quantile_ns, exact);
                    }
                    if w.count >= u64::from(min_samples) {
                        match baseline {
                            Some(b) => {
                                let (q, base) = (w.quantile_ns as f64, b.max(1) as f64);
                                let direction = if q > base * factor {
                                    Some(Direction::Slower)
                                } else if q < base / factor {
                                    Some(Direction::Faster)
                                } else {
                                    None
                                };
                                if let Some(direction) = direction {
                                    pending = Some(Alert {
                                        window_end_ns: end,
                                        quantile_ns: w.quantile_ns,
                                        baseline_ns: b,
                                        ratio: q / base,
                                        direction,
                                    });
                                }
                            }
                            None => {
                                forming.push(w.quantile_ns);
                                if forming.len() == baseline_windows as usize {
                                    forming.sort_unstable();
                                    let n = forming.len();
                                    baseline = Some(if n % 2 == 1 {
                                        forming[n / 2]
                                    } else {
                                        (forming[n / 2 - 1] + forming[n / 2]) / 2
                                    });
                                    forming.clear();
                                }
                            }
                        }
                    }
                    start = end + (now - end) / window_ns * window_ns;
                    open.clear();
                } else {
                    prop_assert_eq!(m.last_window(), before);
                }
                match op {
                    Op::Record(v) => open.push(v),
                    Op::Poll => prop_assert_eq!(polled.unwrap(), pending.take()),
                    Op::Rebaseline => {
                        baseline = None;
                        forming.clear();
                    }
                }
                prop_assert_eq!(m.baseline(), baseline);
            }
        }
    }
}

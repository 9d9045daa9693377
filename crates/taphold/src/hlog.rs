//! HdrHistogram interval logs (`latency.hlog` in the output directory, with
//! `--hlog`): the hold time and tap round trip of every stats interval, tagged
//! `hold` and `tap_rtt`, readable by HdrHistogram's own tools
//! (HistogramLogAnalyzer, `hdrhistogram` crates' interval log readers).
//!
//! Compressing and writing a histogram is not the main lcore's work: a thread
//! of its own, placed on the main lcore's CPU (never a worker's), takes each
//! interval's histograms over a channel and writes them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

/// One interval: its start (UNIX time), its length, and the histograms.
struct Interval {
    start: Duration,
    length: Duration,
    hold: Histogram<u64>,
    tap_rtt: Histogram<u64>,
}

/// The main lcore's end: hands intervals over, and at the end waits for the
/// file to be complete.
pub struct Hlog {
    tx: Option<Sender<Interval>>,
    writer: Option<JoinHandle<std::io::Result<u64>>>,
}

impl Hlog {
    /// Starts the writer of `dir/latency.hlog`, pinned to `cpu`.
    pub fn start(dir: &Path, cpu: Option<usize>) -> std::io::Result<Hlog> {
        let file = File::create(dir.join("latency.hlog"))?;
        let (tx, rx) = channel::<Interval>();
        let writer = std::thread::Builder::new()
            .name("taphold-hlog".into())
            .spawn(move || {
                if let Some(id) = cpu {
                    let _ = core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                let mut out = BufWriter::new(file);
                let mut ser = V2DeflateSerializer::new();
                let mut w = IntervalLogWriterBuilder::new()
                    .add_comment("taphold latency intervals: tags hold and tap_rtt, values in ns")
                    .with_start_time(SystemTime::now())
                    .with_max_value_divisor(1e6)
                    .begin_log_with(&mut out, &mut ser)?;
                let mut written = 0u64;
                let err = |e| std::io::Error::other(format!("latency.hlog: {e:?}"));
                for i in rx {
                    for (tag, h) in [("hold", &i.hold), ("tap_rtt", &i.tap_rtt)] {
                        w.write_histogram(h, i.start, i.length, Tag::new(tag))
                            .map_err(err)?;
                        written += 1;
                    }
                }
                drop(w);
                out.flush()?;
                Ok(written)
            })?;
        Ok(Hlog {
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// Hands over one interval (copies of the histograms; the caller resets
    /// its own).
    pub fn interval(
        &self,
        start: Duration,
        length: Duration,
        hold: &Histogram<u64>,
        tap_rtt: &Histogram<u64>,
    ) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Interval {
                start,
                length,
                hold: hold.clone(),
                tap_rtt: tap_rtt.clone(),
            });
        }
    }

    /// Closes the log; returns how many histograms it holds.
    pub fn finish(mut self) -> std::io::Result<u64> {
        drop(self.tx.take());
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("latency.hlog writer panicked")),
            None => Ok(0),
        }
    }
}

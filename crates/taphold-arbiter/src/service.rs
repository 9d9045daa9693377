//! The binary's loop around the pure core: kernel UDP sockets in, the ordered stream out,
//! resend requests and target confirmations sent, the checkpoint persisted before each
//! round of confirmations, a summary at the end.
//!
//! One thread. It blocks in `poll(2)` on the input sockets until a datagram comes or the
//! core's next deadline (capped at `MAX_WAIT_MS`), so an idle arbiter costs nothing; a
//! ready socket is drained a batch at a time, then the core's timers run once.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use taphold_arbiter::{
    Arbiter, Checkpoint, Counters, Delivery, EpochStatus, Event, InputCounters, InputId, StateFile,
    TransmitKind,
};
use taphold_wire::delivery;

use crate::config::{Config, Deliver};

/// Longest single wait in `poll`: how soon a signal, the duration or idleness is noticed.
const MAX_WAIT_MS: u64 = 50;
/// Datagrams taken from one socket before the others get their turn.
const BATCH: usize = 64;

/// What `run` was told, besides the config.
#[derive(Debug, Default, Clone)]
pub struct RunOpts {
    pub duration_ms: Option<u64>,
    pub exit_when_idle_ms: Option<u64>,
}

/// Exit codes (docs/arbiter.md).
pub mod exit {
    /// Stopped; everything seen was delivered.
    pub const CLEAN: i32 = 0;
    /// Stopped; seqs were skipped, or a gap was still open.
    pub const INCOMPLETE: i32 = 1;
    /// Bad options or config: nothing started.
    pub const USAGE: i32 = 2;
    /// Could not start: state file damaged or locked, a socket not bound.
    pub const START: i32 = 3;
    /// Stopped on a failure while running: the state file could not be written, or the
    /// delivery output failed.
    pub const FAILED: i32 = 4;
}

/// The socket side's own counters.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct IoCounters {
    pub deliver_sent: u64,
    pub deliver_errors: u64,
    pub resend_datagrams_sent: u64,
    pub resend_send_errors: u64,
    pub confirm_datagrams_sent: u64,
    pub confirm_send_errors: u64,
    pub recv_errors: u64,
    pub state_writes: u64,
}

#[derive(Serialize)]
struct Range {
    epoch: u64,
    first: u64,
    last: u64,
}

/// summary.json.
#[derive(Serialize)]
struct Summary<'a> {
    stream: u32,
    stopped: &'a str,
    exit_code: i32,
    run_ms: u64,
    inputs: serde_json::Map<String, serde_json::Value>,
    counters: Counters,
    io: IoCounters,
    epochs: Vec<EpochStatus>,
    floor: u64,
    gaps_reported: Vec<Event>,
    skipped_ranges: Vec<Range>,
    state_file: String,
}

/// UNIX nanoseconds that never go back: the wall clock read once, then a monotonic clock.
struct Clock {
    base_ns: u64,
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        let base_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock {
            base_ns,
            start: Instant::now(),
        }
    }
    fn now(&self) -> u64 {
        self.base_ns + self.start.elapsed().as_nanos() as u64
    }
}

/// Where delivered messages go.
enum Output {
    Udp {
        sock: UdpSocket,
        to: SocketAddr,
        header: bool,
        buf: Vec<u8>,
    },
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    /// Hands one message on; an error is returned for the caller to count (UDP) or stop
    /// on (stdout gone).
    fn deliver(&mut self, m: &Delivery<'_>, input_name: &str) -> io::Result<()> {
        match self {
            Output::Udp {
                sock,
                to,
                header,
                buf,
            } => {
                let bytes: &[u8] = if *header {
                    buf.clear();
                    buf.extend_from_slice(&m.header().to_bytes());
                    buf.extend_from_slice(m.payload);
                    buf
                } else {
                    m.payload
                };
                sock.send_to(bytes, *to).map(|_| ())
            }
            Output::Stdout(w) => {
                write!(
                    w,
                    "{{\"stream\":{},\"epoch\":{},\"seq\":{},\"flags\":{},\"input\":\"{}\",\"payload\":\"",
                    m.stream,
                    m.epoch,
                    m.seq,
                    m.flags.bits(),
                    input_name
                )?;
                for b in m.payload {
                    write!(w, "{b:02x}")?;
                }
                w.write_all(b"\"}\n")
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::Udp { .. } => Ok(()),
        }
    }
}

/// Everything a run holds, opened before the loop starts.
pub struct Service {
    cfg: Config,
    arb: Arbiter,
    inputs: Vec<(InputId, UdpSocket)>,
    names: Vec<String>,
    output: Output,
    state: StateFile,
    io: IoCounters,
    events: Vec<Event>,
    clock: Clock,
}

impl Service {
    /// Opens the state file (resuming from it), binds every socket. Errors are start-up
    /// failures, named.
    pub fn open(cfg: Config) -> Result<Service, String> {
        let names: Vec<&str> = cfg.inputs.iter().map(|i| i.name.as_str()).collect();
        let mut arb = Arbiter::new(cfg.arbiter(), &names).map_err(|e| e.to_string())?;
        let (state, cp) = StateFile::open(&cfg.state_dir, cfg.stream).map_err(|e| e.to_string())?;
        if let Some(cp) = &cp {
            arb.restore(cp)
                .map_err(|e| format!("{}: {e}", state.path().display()))?;
            for m in &cp.epochs {
                log::info!(
                    "resuming epoch {} at seq {} ({} skipped before), from {}",
                    m.epoch,
                    m.delivered + 1,
                    m.skipped,
                    state.path().display()
                );
            }
        }
        let mut inputs = Vec::new();
        for (input, (id, _)) in cfg.inputs.iter().zip(arb.inputs()) {
            let sock = UdpSocket::bind(input.bind.0)
                .map_err(|e| format!("input {}: cannot bind {}: {e}", input.name, input.bind.0))?;
            sock.set_nonblocking(true)
                .map_err(|e| format!("input {}: {e}", input.name))?;
            inputs.push((id, sock));
        }
        let output = match &cfg.deliver {
            Deliver::Udp { to, header } => {
                let any: SocketAddr = if to.0.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let sock = UdpSocket::bind(any).map_err(|e| format!("deliver: {e}"))?;
                Output::Udp {
                    sock,
                    to: to.0,
                    header: *header,
                    buf: Vec::with_capacity(delivery::HEADER_LEN + cfg.max_payload),
                }
            }
            Deliver::Stdout => Output::Stdout(BufWriter::new(io::stdout())),
        };
        for (input, (_, sock)) in cfg.inputs.iter().zip(&inputs) {
            let at = sock
                .local_addr()
                .map_err(|e| format!("input {}: {e}", input.name))?;
            log::info!("listening: input {} on {at}", input.name);
        }
        let names = cfg.inputs.iter().map(|i| i.name.clone()).collect();
        Ok(Service {
            cfg,
            arb,
            inputs,
            names,
            output,
            state,
            io: IoCounters::default(),
            events: Vec::new(),
            clock: Clock::new(),
        })
    }

    /// Runs until a signal, the duration, idleness or a failure. Returns the exit code and
    /// writes the summary (to `out/summary.json` and stdout, or stderr when stdout carries
    /// the delivered stream).
    pub fn run(mut self, opts: &RunOpts, out: Option<&Path>, quit: &AtomicBool) -> i32 {
        let started = Instant::now();
        let mut last_rx = Instant::now();
        let mut failure: Option<String> = None;
        let control = self.cfg.control_input();
        let mut fds: Vec<libc::pollfd> = self
            .inputs
            .iter()
            .map(|(_, s)| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = vec![0u8; 65_536];
        let stopped = loop {
            if quit.load(Ordering::SeqCst) {
                break "signal";
            }
            if let Some(f) = &failure {
                log::error!("{f}");
                break "failure";
            }
            let elapsed = started.elapsed();
            if opts
                .duration_ms
                .is_some_and(|ms| elapsed >= Duration::from_millis(ms))
            {
                break "duration";
            }
            if opts
                .exit_when_idle_ms
                .is_some_and(|ms| last_rx.elapsed() >= Duration::from_millis(ms))
            {
                break "idle";
            }
            let now = self.clock.now();
            let wait_ms = match self.arb.next_deadline() {
                Some(at) if at <= now => 0,
                Some(at) => (at - now).div_ceil(1_000_000).min(MAX_WAIT_MS),
                None => MAX_WAIT_MS,
            };
            // SAFETY: `fds` is a live, correctly sized array of pollfd for the duration of
            // the call; poll only writes their `revents`.
            let ready =
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms as i32) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    failure = Some(format!("poll: {e}"));
                }
                continue;
            }
            let now = self.clock.now();
            let Service {
                arb,
                inputs,
                names,
                output,
                io: ioc,
                ..
            } = &mut self;
            let mut deliver = |m: &Delivery<'_>| match output.deliver(m, &names[m.input.index()]) {
                Ok(()) => ioc.deliver_sent += 1,
                Err(e) => {
                    if ioc.deliver_errors == 0 {
                        log::error!("delivery of {}/{}: {e}", m.epoch, m.seq);
                    }
                    ioc.deliver_errors += 1;
                }
            };
            for (k, pfd) in fds.iter().enumerate() {
                if pfd.revents == 0 {
                    continue;
                }
                let (id, sock) = &inputs[k];
                for _ in 0..BATCH {
                    match sock.recv_from(&mut buf) {
                        Ok((n, _from)) => {
                            last_rx = Instant::now();
                            arb.on_datagram(*id, &buf[..n], now, &mut deliver);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // ICMP errors of our own sends (port unreachable) land here.
                            ioc.recv_errors += 1;
                            log::debug!("input {}: {e}", names[k]);
                            break;
                        }
                    }
                }
            }
            arb.on_tick(now, &mut deliver);
            if let Err(e) = self.output.flush() {
                failure = Some(format!("delivery output: {e}"));
            }
            if self.output_failed() {
                failure = Some("delivery output failed: stdout is gone".into());
            }
            if let Err(e) = self.send_pending(control) {
                failure = Some(e);
            }
        };
        // Final round: a confirmation of where each epoch stands, persisted first.
        let now = self.clock.now();
        {
            let Service {
                arb,
                names,
                output,
                io: ioc,
                ..
            } = &mut self;
            arb.on_tick(now, &mut |m: &Delivery<'_>| match output
                .deliver(m, &names[m.input.index()])
            {
                Ok(()) => ioc.deliver_sent += 1,
                Err(_) => ioc.deliver_errors += 1,
            });
        }
        let _ = self.output.flush();
        if failure.is_none() {
            self.arb.confirm_all(now);
            if let Err(e) = self.send_pending(control) {
                log::error!("{e}");
                failure = Some(e);
            }
        } else {
            // Nothing more is confirmed after a failure: the state file may be behind.
            self.arb.drain_transmits(|_, _| {});
        }
        self.collect_events();
        let epochs = self.arb.epochs();
        let incomplete =
            self.arb.counters().skipped > 0 || epochs.iter().any(|e| e.gap.is_some() || e.held > 0);
        let code = if failure.is_some() {
            exit::FAILED
        } else if incomplete {
            exit::INCOMPLETE
        } else {
            exit::CLEAN
        };
        self.summary(stopped, code, started.elapsed(), epochs, out);
        code
    }

    fn output_failed(&self) -> bool {
        matches!(self.output, Output::Stdout(_)) && self.io.deliver_errors > 0
    }

    /// Persists the checkpoint if confirmations are pending (before they go), then sends
    /// everything the core emitted from the control input's socket.
    fn send_pending(&mut self, control: usize) -> Result<(), String> {
        self.collect_events();
        if self.arb.pending_confirms() > 0 {
            let cp: Checkpoint = self.arb.checkpoint();
            if let Err(e) = self.state.write(&cp) {
                // The confirmations are not sent: a node must not trim below what a
                // restarted arbiter would resume from.
                self.arb.drain_transmits(|_, _| {});
                return Err(e.to_string());
            }
            self.io.state_writes += 1;
        }
        let sock = &self.inputs[control].1;
        let (resend_to, confirm_to) = (&self.cfg.resend_to, &self.cfg.confirm_to);
        let ioc = &mut self.io;
        self.arb.drain_transmits(|kind, pdu| {
            let (to, sent, errors) = match kind {
                TransmitKind::Resend => (
                    resend_to,
                    &mut ioc.resend_datagrams_sent,
                    &mut ioc.resend_send_errors,
                ),
                TransmitKind::TargetConfirm => (
                    confirm_to,
                    &mut ioc.confirm_datagrams_sent,
                    &mut ioc.confirm_send_errors,
                ),
            };
            for a in to {
                match sock.send_to(pdu, a.0) {
                    Ok(_) => *sent += 1,
                    Err(e) => {
                        if *errors == 0 {
                            log::warn!("{kind:?} to {}: {e}", a.0);
                        }
                        *errors += 1;
                    }
                }
            }
        });
        Ok(())
    }

    /// Logs the core's events and keeps the gaps and skips for the summary.
    fn collect_events(&mut self) {
        while let Some(e) = self.arb.next_event() {
            match e {
                Event::GapExhausted { epoch, first, last, asks, .. } => log::warn!(
                    "gap: stream {} epoch {epoch} seqs {first}..={last} still missing after {asks} resend requests ({:?})",
                    self.cfg.stream, self.cfg.on_gap
                ),
                Event::Skipped { epoch, first, last } => log::warn!(
                    "skipped: stream {} epoch {epoch} seqs {first}..={last}, never delivered",
                    self.cfg.stream
                ),
                Event::StillWaiting { epoch, first, last, asks, .. } => log::warn!(
                    "still waiting: stream {} epoch {epoch} seqs {first}..={last} ({asks} requests)",
                    self.cfg.stream
                ),
                Event::EpochOpened { epoch, first_expected } => log::info!(
                    "epoch {epoch}: expecting seq {first_expected}"
                ),
                Event::EpochForgotten { epoch, delivered } => log::info!(
                    "epoch {epoch} finished at seq {delivered}, forgotten: older epochs are now refused"
                ),
            }
            // Kept for the summary: what was given up on or reported missing (the periodic
            // still-waiting reports are only logged, so a long wait does not grow this).
            if matches!(e, Event::GapExhausted { .. } | Event::Skipped { .. }) {
                self.events.push(e);
            }
        }
    }

    fn summary(
        &self,
        stopped: &str,
        code: i32,
        ran: Duration,
        epochs: Vec<EpochStatus>,
        out: Option<&Path>,
    ) {
        let mut inputs = serde_json::Map::new();
        for (id, name) in self.arb.inputs() {
            let c: &InputCounters = self.arb.input_counters(id);
            inputs.insert(
                name.to_string(),
                serde_json::to_value(c).unwrap_or_default(),
            );
        }
        let s = Summary {
            stream: self.cfg.stream,
            stopped,
            exit_code: code,
            run_ms: ran.as_millis() as u64,
            inputs,
            counters: *self.arb.counters(),
            io: self.io,
            epochs,
            floor: self.arb.floor(),
            gaps_reported: self
                .events
                .iter()
                .filter(|e| matches!(e, Event::GapExhausted { .. }))
                .copied()
                .collect(),
            skipped_ranges: self
                .events
                .iter()
                .filter_map(|e| match *e {
                    Event::Skipped { epoch, first, last } => Some(Range { epoch, first, last }),
                    _ => None,
                })
                .collect(),
            state_file: self.state.path().display().to_string(),
        };
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        if let Some(dir) = out {
            let write =
                fs::create_dir_all(dir).and_then(|_| fs::write(dir.join("summary.json"), &text));
            if let Err(e) = write {
                log::error!("{}: {e}", dir.join("summary.json").display());
            }
        }
        if matches!(self.cfg.deliver, Deliver::Stdout) {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

//! Start-up and shutdown: turns a config into ports, a hold ring and roles on
//! lcores; then the main lcore's watch loop; then a clean stop that accounts
//! for every held message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::{lcore, Burst, Clock, Eal, EthRingPair, Mempool, Port, PortConfig, SpscRing};
use taphold_core::event::{MessageEvent, MessageStatus};
use taphold_core::hold_ring::HoldRing;
use taphold_core::spsc::{Spsc, SpscConsumer};
use taphold_wire::classify::PrimaryAddr;
use taphold_wire::emit::Endpoint;
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::taphold::ContentMode;

use crate::config::{Config, ContentText, RoleName};
use crate::report::{Ending, Report};
use crate::roles::egress::Egress;
use crate::roles::ingress::{Ingress, LinkTx};
use crate::roles::link_rx::{LinkRx, LinkRxLink};
use crate::roles::relaunch::Relaunch;
use crate::roles::tap_model::{ModelLink, TapModel};
use crate::roles::tap_rx::{TapLink, TapRx};
use crate::roles::{Role, BURST};
use crate::{worker, Opts, Shared};
use taphold_runtime::epoch::EpochLease;

pub struct Appliance {
    eal: Eal,
    pool: Mempool,
    /// Every port by config name, for stats and an orderly stop.
    ports: BTreeMap<String, Arc<Port>>,
    shared: &'static Shared,
    /// Roles per worker lcore, ready to launch.
    lcores: Vec<(u32, Vec<Role>)>,
    events: SpscConsumer<MessageEvent>,
    clock: Clock,
    cfg: Config,
    local_journal: Option<LocalJournal>,
    /// This run's epoch, persisted, and the lock on the stream it holds.
    lease: EpochLease,
    /// Fault injection for the tests: the watch loop panics at this time.
    watch_panic_at: Option<Instant>,
}

/// The main lcore's side of the journal secondary mode.
pub struct LocalJournal {
    journal: taphold_journal::Journal,
    rx: dpdk::ring::Consumer<dpdk::Mbuf>,
}

impl LocalJournal {
    /// Writes every backup frame egress handed over, syncs, and publishes
    /// the highest seq now on disk. An I/O error is returned: the caller
    /// fails closed.
    fn service(&mut self, s: &Shared) -> std::io::Result<usize> {
        let mut last = 0;
        let mut n = 0;
        while let Some(m) = self.rx.pop() {
            let f = m.data();
            let Some(p) = f
                .get(taphold_wire::ethernet::HEADER_LEN..)
                .and_then(|b| taphold_wire::taphold::Packet::new_checked(b).ok())
            else {
                continue; // built by egress: cannot happen
            };
            let pdu = &f[taphold_wire::ethernet::HEADER_LEN..][..p.total_len()];
            if self.journal.append(p.seq(), 0, p.timestamp_ns(), pdu)?
                == taphold_journal::Appended::Duplicate
            {
                return Err(std::io::Error::other(format!(
                    "seq {} is already in the local journal",
                    p.seq()
                )));
            }
            last = p.seq();
            n += 1;
        }
        if n > 0 {
            self.journal.sync()?;
            // Release: pairs with egress's Acquire; the records are on disk.
            s.control
                .journaled_seq
                .store(last, std::sync::atomic::Ordering::Release);
        }
        Ok(n)
    }
}

fn err(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl Appliance {
    pub fn build(
        eal: &Eal,
        cfg: &Config,
        _opts: &Opts,
        lease: EpochLease,
    ) -> Result<Appliance, String> {
        let epoch = lease.epoch;
        let workers = eal.worker_lcores();
        for l in &cfg.lcores {
            if !workers.contains(&l.lcore) {
                return Err(format!(
                    "config lcores: lcore {} is not a worker lcore of this EAL (workers {:?}; the main lcore {} only watches) — adjust -l",
                    l.lcore,
                    workers,
                    eal.main_lcore()
                ));
            }
        }
        let pool = Mempool::new(
            eal,
            "taphold",
            cfg.mempool.mbufs,
            cfg.mempool.cache,
            cfg.mempool.data_room,
            -1,
        )
        .map_err(err)?;
        // Lives as long as the process: every role and the main lcore read it.
        let shared: &'static Shared =
            Box::leak(Box::new(Shared::new(crate::control::initial_active(cfg))));
        crate::on_panic_quit(shared);
        let clock = Clock::new(eal);

        // Ports. The harness's ring ports are created first, so that the
        // backup link and tap names resolve to them like any device.
        let mut ports: BTreeMap<String, Arc<Port>> = BTreeMap::new();
        let mut model_links = Vec::new();
        let mut sinks: Vec<Arc<Port>> = Vec::new();
        let mut sink_index: BTreeMap<String, usize> = BTreeMap::new();
        let port_cfg = |rx: u16, tx: u16| PortConfig {
            rx_queues: rx,
            tx_queues: tx,
            ..PortConfig::default()
        };
        let start = |mut p: Port, pc: PortConfig| -> Result<Port, String> {
            p.configure(&pc, &pool).map_err(err)?;
            p.start().map_err(err)?;
            Ok(p)
        };
        if let Some(h) = &cfg.harness {
            for hl in &h.links {
                let link = cfg
                    .backup_links
                    .iter()
                    .find(|l| l.name == hl.link)
                    .expect("validated");
                let (b, fibre) = EthRingPair::ports(
                    eal,
                    &link.port,
                    &format!("{}_fibre", link.port),
                    h.ring_size,
                )
                .map_err(err)?;
                let (t, tap_feed) =
                    EthRingPair::ports(eal, &link.tap, &format!("{}_feed", link.tap), h.ring_size)
                        .map_err(err)?;
                ports.insert(link.port.clone(), Arc::new(start(b, port_cfg(1, 1))?));
                ports.insert(link.tap.clone(), Arc::new(start(t, port_cfg(1, 1))?));
                let sink = match &hl.sink {
                    Some(name) => Some(match sink_index.get(name) {
                        Some(&i) => i,
                        None => {
                            let p = Arc::new(start(
                                Port::by_name(eal, name).map_err(err)?,
                                port_cfg(0, 1),
                            )?);
                            sinks.push(p.clone());
                            ports.insert(name.clone(), p);
                            sink_index.insert(name.clone(), sinks.len() - 1);
                            sinks.len() - 1
                        }
                    }),
                    None => None,
                };
                let k = cfg
                    .backup_links
                    .iter()
                    .position(|l| l.name == hl.link)
                    .expect("validated");
                model_links.push(ModelLink {
                    link: k,
                    fibre: start(fibre, port_cfg(1, 1))?,
                    tap_feed: start(tap_feed, port_cfg(1, 1))?,
                    mode: hl.tap,
                    lose: hl.lose_tap_copies.clone(),
                    cut_window_ns: hl.tap_cut_ms.map(|[from, to]| {
                        (from.saturating_mul(1_000_000), to.saturating_mul(1_000_000))
                    }),
                    started_ns: 0,
                    sink,
                    tap_out: Burst::new(),
                    // Filled in once the link's MAC is known (below).
                    appliance_mac: EthernetAddress([0; 6]),
                    node_mac: link.peer_mac.0,
                    backup_node: hl.backup_node,
                    node_acks: hl.node_acks,
                    ack_delay_ns: hl.ack_delay_ns(),
                    acks: vec![(0, 0); 1 << 16],
                    acks_head: 0,
                    acks_len: 0,
                    records: 0,
                    node_hb_seq: 0,
                    next_node_hb_ns: 0,
                    echo: (0, 0),
                    epoch: 0,
                    node_out: Burst::new(),
                });
            }
        }
        let primary = Arc::new(start(
            Port::by_name(eal, &cfg.primary.port).map_err(err)?,
            port_cfg(1, cfg.primary.tx_queues),
        )?);
        ports.insert(cfg.primary.port.clone(), primary.clone());
        for l in &cfg.backup_links {
            for name in [&l.port, &l.tap] {
                if !ports.contains_key(name) {
                    let p = start(Port::by_name(eal, name).map_err(err)?, port_cfg(1, 1))?;
                    ports.insert(name.clone(), Arc::new(p));
                }
            }
        }

        // The hold ring and the hand-off rings.
        let (producer, confirmer, consumer) = HoldRing::new(cfg.hold_ring.capacity as usize)
            .map_err(|e| format!("hold ring: {e:?}"))?;
        let (events_tx, events_rx) =
            Spsc::new(cfg.events.ring as usize).map_err(|e| format!("event ring: {e:?}"))?;
        let (arp_tx, arp_rx) = SpscRing::new(eal, "taphold_arp", 1024).map_err(err)?;
        // The journal secondary mode's hand-off to the main lcore, and the
        // journal itself (opened, and recovered, now: a bad directory is a
        // start-up error, not a surprise during an outage).
        let (journal_out, local_journal) = match &cfg.local_journal {
            Some(j) => {
                let (tx, rx) =
                    SpscRing::new(eal, "taphold_journal", (2 * cfg.hold_ring.capacity).max(64))
                        .map_err(err)?;
                // This run's records go to a run of their own (stream, epoch):
                // earlier runs' records stay where they are, untouched.
                let run = taphold_journal::RunId {
                    stream: cfg.stream_id,
                    epoch,
                };
                let jc = taphold_journal::JournalConfig {
                    segment_bytes: j.segment_bytes,
                    ..taphold_journal::JournalConfig::for_run(std::path::Path::new(&j.dir), run)
                };
                let (journal, recovery) = taphold_journal::Journal::open(jc)
                    .map_err(|e| format!("local_journal.dir {}: {e}", j.dir))?;
                // A new epoch's run is new: records in it mean the epoch was reused.
                if recovery.records > 0 {
                    return Err(format!(
                        "local_journal.dir {}: the run of {run} already holds {} records: epoch reused?",
                        j.dir, recovery.records
                    ));
                }
                (Some(tx), Some(LocalJournal { journal, rx }))
            }
            None => (None, None),
        };
        // One ring per link for egress's re-launches: a re-send round hands
        // over every held message at most once per link.
        let mut resend_tx = Vec::new();
        let mut resend_rx = Vec::new();
        for (k, _) in cfg.backup_links.iter().enumerate() {
            let (tx, rx) = SpscRing::new(
                eal,
                &format!("taphold_relaunch{k}"),
                (2 * cfg.hold_ring.capacity).max(64),
            )
            .map_err(err)?;
            resend_tx.push(tx);
            resend_rx.push(rx);
        }

        let key = cfg.digest_key.0;
        let link_mac = |i: usize| -> Result<EthernetAddress, String> {
            let l = &cfg.backup_links[i];
            Ok(match l.mac {
                Some(m) => m.0,
                None => EthernetAddress(ports[&l.port].mac().map_err(err)?),
            })
        };
        let mut links_tx = Vec::new();
        let mut relaunch_links = Vec::new();
        let mut taps = Vec::new();
        let mut link_rx = Vec::new();
        for (i, l) in cfg.backup_links.iter().enumerate() {
            let mac = link_mac(i)?;
            let tx = || LinkTx {
                port: ports[&l.port].clone(),
                mac,
                peer_mac: l.peer_mac.0,
                pending: Burst::new(),
                hb_seq: 0,
                next_hb_ns: 0,
            };
            links_tx.push(tx());
            relaunch_links.push(crate::roles::relaunch::LinkAddr {
                mac,
                peer_mac: l.peer_mac.0,
            });
            for m in model_links.iter_mut().filter(|m| m.link == i) {
                m.appliance_mac = mac;
            }
            let id = crate::frames::LinkIdentity {
                link: i,
                ours: mac,
                peer: l.peer_mac.0,
                stream: cfg.stream_id,
                epoch,
            };
            taps.push(TapLink {
                id,
                port: ports[&l.tap].clone(),
            });
            link_rx.push(LinkRxLink {
                id,
                port: ports[&l.port].clone(),
            });
        }
        let ours = Endpoint {
            mac: cfg.primary.mac.0,
            ip: cfg.primary.ip.octets(),
            port: cfg.primary.udp_port,
        };
        let policy = cfg
            .release_check()
            .map_err(|e| format!("release.policy: {e}"))?;

        let content = match cfg.release.content {
            ContentText::Full => ContentMode::Full,
            ContentText::Digest => ContentMode::Digest,
        };
        let mut ingress = Some(Role::Ingress(Ingress {
            primary: primary.clone(),
            addr: PrimaryAddr {
                mac: cfg.primary.mac.0,
                ip: cfg.primary.ip.octets(),
                udp_port: cfg.primary.udp_port,
                max_payload: cfg.primary.max_payload,
            },
            links: links_tx,
            hold: producer,
            pool: pool.clone(),
            key,
            content,
            stream: cfg.stream_id,
            epoch,
            arp_out: arp_tx,
            resend_in: resend_rx,
            clock,
            shared,
            rx: Burst::new(),
            hb_interval_ns: cfg.health.heartbeat_interval_ns(),
            failover_seen: 0,
            paused: false,
            launched: [0; BURST],
        }));
        let mut tap_rx = Some(Role::TapRx(TapRx {
            taps,
            hold: confirmer,
            key,
            clock,
            shared,
            rx: Burst::new(),
        }));
        let mut egress = Some(Role::Egress(Egress {
            primary: primary.clone(),
            release_q: 0,
            confirm_q: cfg.primary.tx_queues - 1,
            hold: consumer,
            policy,
            pool: pool.clone(),
            key,
            stream: cfg.stream_id,
            epoch,
            framing: cfg.destination.framing,
            ours,
            destination: Endpoint {
                mac: cfg.destination.mac.0,
                ip: cfg.destination.ip.octets(),
                port: cfg.destination.udp_port,
            },
            arp_in: arp_rx,
            events: events_tx,
            clock,
            shared,
            confirm_timeout_ns: cfg.hold_ring.confirm_timeout_ns(),
            release_tx: Burst::new(),
            confirm_tx: Burst::new(),
            last_overdue: 0,
            gate: cfg.release.gate,
            relaunch: Relaunch::new(
                relaunch_links,
                resend_tx,
                pool.clone(),
                key,
                cfg.stream_id,
                epoch,
                content,
                cfg.release.gate,
                match cfg.release.gate {
                    crate::config::Gate::Tap => cfg.health.tap_timeout_us,
                    crate::config::Gate::Ack => cfg.health.ack_timeout_us,
                }
                .saturating_mul(1000),
                u8::try_from(cfg.health.tap_retransmits).unwrap_or(u8::MAX),
                cfg.hold_ring.capacity as usize,
            ),
            journal_out,
            journal_next: 0,
        }));
        let mut link_rx = Some(Role::LinkRx(LinkRx {
            links: link_rx,
            key,
            clock,
            shared,
            rx: Burst::new(),
        }));
        let mut tap_model = Some(Role::TapModel(TapModel {
            links: model_links,
            sinks,
            pool: pool.clone(),
            key,
            stream: cfg.stream_id,
            clock,
            shared,
            rx: Burst::new(),
            sink_out: Burst::new(),
        }));

        let mut lcores: Vec<(u32, Vec<Role>)> = Vec::new();
        // Fault injection for the tests (never set in production): a role
        // that panics after N ms, on the first worker lcore.
        if let Some(ms) = crate::failpoint("worker-panic-after-ms") {
            if let Some(first) = cfg.lcores.first() {
                lcores.push((
                    first.lcore,
                    vec![Role::Failpoint(crate::roles::Failpoint {
                        clock,
                        panic_at_ns: clock.now_ns().saturating_add(ms.saturating_mul(1_000_000)),
                    })],
                ));
            }
        }
        for l in &cfg.lcores {
            let mut roles = Vec::new();
            for r in &l.roles {
                let slot = match r {
                    RoleName::Ingress => &mut ingress,
                    RoleName::TapRx => &mut tap_rx,
                    RoleName::Egress => &mut egress,
                    RoleName::LinkRx => &mut link_rx,
                    RoleName::TapModel => &mut tap_model,
                };
                roles.push(
                    slot.take()
                        .ok_or_else(|| format!("role {r} mapped twice"))?,
                );
            }
            match lcores.iter_mut().find(|(id, _)| *id == l.lcore) {
                Some((_, rs)) => rs.extend(roles),
                None => lcores.push((l.lcore, roles)),
            }
        }
        // Unmapped optional roles (link-rx, tap-model without a harness) are dropped here.

        for (name, p) in &ports {
            if let Ok(link) = p.link() {
                log::info!(
                    "port {name} (id {}): link {}",
                    p.id(),
                    if link.up { "up" } else { "down" }
                );
            }
        }
        Ok(Appliance {
            eal: eal.clone(),
            pool,
            ports,
            shared,
            lcores,
            events: events_rx,
            clock,
            cfg: cfg.clone(),
            local_journal,
            lease,
            watch_panic_at: None,
        })
    }

    pub fn run(mut self, opts: &Opts, signalled: &AtomicBool) -> Result<i32, String> {
        let monitors = crate::report::Monitors::new(&self.cfg.latency_monitor, self.clock.now_ns());
        let mut report = Report::new(opts.out.as_deref(), self.clock, monitors).map_err(err)?;
        let mut console = crate::report::Console::default();
        let mut panicked = false;
        let mut handles = Vec::new();
        for (lcore_id, roles) in std::mem::take(&mut self.lcores) {
            let names: Vec<String> = self
                .cfg
                .roles_on(lcore_id)
                .iter()
                .map(|r| r.to_string())
                .collect();
            log::info!("lcore {lcore_id}: {}", names.join(", "));
            let shared = self.shared;
            let idle = self.cfg.idle;
            handles.push(
                lcore::launch(&self.eal, lcore_id, move || {
                    worker::run(roles, idle, shared)
                })
                .map_err(err)?,
            );
        }

        let started_ns = self.clock.now_ns();
        let mut control = crate::control::ControlLoop::new(&self.cfg, started_ns);
        // The watch loop must not leave the workers running if it panics (a
        // bug, or anything unforeseen): catch it, and go on to stop them and
        // account for every held message as on any other ending. The panic
        // hook (main.rs) has already told the workers to quit.
        let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.watch(opts, signalled, &mut control, &mut report, &mut console)
        }));
        let why = match watched {
            Ok(why) => why,
            Err(_) => {
                log::error!("the watch loop panicked; stopping the workers");
                panicked = true;
                "panic"
            }
        };
        log::info!("stopping ({why})");

        self.shared.quit.store(true, Ordering::SeqCst);
        let mut egress: Option<Egress> = None;
        let mut failed = false;
        for h in handles {
            let id = h.lcore();
            match h.join() {
                Ok(f) => {
                    if let Some(msg) = f.panic {
                        log::error!("lcore {id} panicked: {msg}");
                        failed = true;
                    }
                    if f.egress.is_some() {
                        egress = f.egress;
                    }
                }
                Err(msg) => {
                    log::error!("lcore {id} failed: {msg}");
                    failed = true;
                }
            }
        }
        report.drain_events(&mut self.events);

        // Every message still held is accounted: an event line, a frame in
        // held.pcap, a count in the summary. Then its mbuf is freed (once).
        let mut held = 0u64;
        if let Some(mut e) = egress {
            let stream = self.cfg.stream_id;
            e.drain_held(|r| {
                held += 1;
                report.held_at_shutdown(
                    MessageEvent {
                        seq: r.seq,
                        stream,
                        epoch: self.lease.epoch,
                        rx_ns: r.rx_ns,
                        backup_tx_ns: r.backup_tx_ns,
                        tap_ns: r.tap_ns.iter().copied().max().unwrap_or(0),
                        release_ns: 0,
                        status: MessageStatus::HeldAtShutdown,
                    },
                    r.item.mbuf.data(),
                );
            });
            drop(e);
        } else if failed {
            log::error!("the egress lcore failed: held messages cannot be accounted individually");
        }
        // Port counters are final now; then close every port (the ring ports
        // free what they still queue) so the pool's in-use count is the truth.
        let port_stats = Report::port_stats(&self.ports);
        self.ports.clear();
        let in_use = self.pool.in_use();
        let summary = report
            .finish(
                self.shared,
                &self.cfg,
                &control,
                Ending {
                    port_stats,
                    held_at_shutdown: held,
                    stopped_by: why,
                    mbufs_in_use: in_use,
                    lease: &self.lease,
                    started_ns,
                },
            )
            .map_err(err)?;
        console.line(&summary);
        Ok(if failed || panicked || why == "panic" {
            1
        } else {
            0
        })
    }

    /// The main lcore's watch loop, until something ends the run: control
    /// ticks, the local journal, events, the stats line. Returns why it ended.
    fn watch(
        &mut self,
        opts: &Opts,
        signalled: &AtomicBool,
        control: &mut crate::control::ControlLoop,
        report: &mut Report,
        console: &mut crate::report::Console,
    ) -> &'static str {
        let mut acked_seen = [0u64; crate::config::MAX_LINKS];
        let started = Instant::now();
        self.watch_panic_at =
            crate::failpoint("watch-panic-after-ms").map(|ms| started + Duration::from_millis(ms));
        let stats_every = Duration::from_millis(self.cfg.stats_interval_ms.max(1));
        let mut next_stats = started + stats_every;
        let mut last_progress = (0u64, Instant::now());
        loop {
            // The control tick: finer than any health threshold we enforce.
            std::thread::sleep(Duration::from_micros(100));
            let now_ns = self.clock.now_ns();
            control.tick(self.shared, now_ns);
            // Ack round trips: each time a link's cumulative ack moves, the
            // newest acked message's launch-to-ack time.
            for (k, seen) in acked_seen
                .iter_mut()
                .enumerate()
                .take(self.cfg.backup_links.len())
            {
                let l = &self.shared.control.links[k];
                let acked = crate::links::get(&l.acked_seq);
                if acked > *seen {
                    *seen = acked;
                    let launched = self.shared.control.launch_of(acked);
                    let at = crate::links::get(&l.last_ack_ns);
                    if launched != 0 && at >= launched {
                        report.monitors.record_ack(at, at - launched);
                    }
                }
            }
            report.monitors.poll(now_ns);
            if let Some(j) = &mut self.local_journal {
                if let Err(e) = j.service(self.shared) {
                    // Every mode change goes through the control loop, which
                    // keeps the appliance halted from now on.
                    control.journal_failed(self.shared, now_ns, format!("local journal: {e}"));
                    self.local_journal = None;
                }
            }
            report.drain_events(&mut self.events);
            let now = Instant::now();
            if signalled.load(Ordering::SeqCst) {
                return "signal";
            }
            // Set by nobody but the panic hook while we run: a worker panicked.
            if self.shared.quit.load(Ordering::SeqCst) {
                return "panic";
            }
            if let Some(ms) = opts.duration_ms {
                if now.duration_since(started) >= Duration::from_millis(ms) {
                    return "duration";
                }
            }
            if let Some(ms) = opts.exit_when_idle_ms {
                let p = progress(self.shared);
                if p != last_progress.0 {
                    last_progress = (p, now);
                } else if now.duration_since(last_progress.1) >= Duration::from_millis(ms) {
                    return "idle";
                }
            }
            if self.watch_panic_at.is_some_and(|t| now >= t) {
                panic!("failpoint: watch loop panic (TAPHOLD_FAILPOINT)");
            }
            if now >= next_stats {
                next_stats += stats_every;
                console.line(&report.stats_line(
                    self.shared,
                    control,
                    &self.ports[&self.cfg.primary.port],
                    now.duration_since(started),
                ));
            }
        }
    }
}

/// Messages moving: frames in from P, tap confirmations, releases. Not
/// heartbeats, which flow for as long as the links are alive.
fn progress(s: &Shared) -> u64 {
    let c = &s.counters;
    c.ingress.rx_frames.get()
        + c.egress.released.get()
        + c.tap.iter().map(|t| t.confirmed.get()).sum::<u64>()
}

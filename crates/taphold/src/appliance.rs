//! Start-up and shutdown: a plan turned into ports, a hold ring and roles on
//! lcores; then the main lcore's watch loop; then a clean stop that accounts
//! for every held message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::{lcore, Clock, Eal, EthRingPair, Mbuf, Mempool, Port, PortConfig, SpscRing};
use taphold_core::event::{MessageEvent, MessageStatus};
use taphold_core::hold_ring::{Confirmer, Consumer, HoldRing, Producer};
use taphold_core::spsc::{Spsc, SpscConsumer, SpscProducer};
use taphold_runtime::epoch::EpochLease;
use taphold_wire::ethernet::EthernetAddress;

use crate::config::{Config, RoleName};
use crate::control::ControlLoop;
use crate::frames::LinkIdentity;
use crate::plan::Plan;
use crate::plane::{Mode, Plane, Writers};
use crate::report::{Console, Ending, Monitors, Report};
use crate::roles::egress::relaunch::{LinkAddr, Relaunch};
use crate::roles::egress::{Egress, EgressParts};
use crate::roles::ingress::{Ingress, IngressParts};
use crate::roles::link_rx::{LinkRx, LinkRxLink};
use crate::roles::tap_model::{ModelLink, TapModel};
use crate::roles::tap_rx::{TapLink, TapRx};
use crate::roles::{Failpoint, HeldMessage, Role};
use crate::{worker, Opts};

pub struct Appliance {
    eal: Eal,
    pool: Mempool,
    /// Every port by config name, for stats and an orderly stop.
    ports: BTreeMap<String, Arc<Port>>,
    plane: &'static Plane,
    control: ControlLoop,
    /// Roles per worker lcore, ready to launch.
    lcores: Vec<(u32, Vec<Role>)>,
    events: SpscConsumer<MessageEvent>,
    clock: Clock,
    cfg: Config,
    plan: Plan,
    local_journal: Option<LocalJournal>,
    /// This run's epoch, persisted, and the lock on the stream it holds.
    lease: EpochLease,
    /// Fault injection for the tests: the watch loop panics at this time.
    watch_panic_at: Option<Instant>,
}

/// The main lcore's side of the journal secondary mode.
pub struct LocalJournal {
    /// None once it has failed: the run stays halted, and what egress still
    /// hands over is discarded (each frame is a copy; the message stays held).
    journal: Option<taphold_journal::Journal>,
    rx: dpdk::ring::Consumer<Mbuf>,
}

impl LocalJournal {
    /// Writes every backup frame egress handed over, syncs, and returns the
    /// highest seq now on disk (if any was written). An I/O error is
    /// returned, once: the caller fails closed, and from then on every frame
    /// handed over is freed unwritten.
    fn service(&mut self) -> std::io::Result<Option<u64>> {
        let Some(journal) = self.journal.as_mut() else {
            while self.rx.pop().is_some() {}
            return Ok(None);
        };
        let written = Self::write(journal, &mut self.rx);
        if written.is_err() {
            self.journal = None;
        }
        written
    }

    /// Deletes what the destination confirmed delivered (seed 004): sealed
    /// segments wholly at or below `delivered`. Nothing after a failure.
    fn trim(&mut self, delivered: u64) -> std::io::Result<usize> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(0);
        };
        // Seqs the destination has are covered even if this journal never
        // held them (it holds only what arrived in journal mode).
        journal.note_released(delivered);
        journal.trim_below(delivered.saturating_add(1))
    }

    fn write(
        journal: &mut taphold_journal::Journal,
        rx: &mut dpdk::ring::Consumer<Mbuf>,
    ) -> std::io::Result<Option<u64>> {
        let mut last = None;
        while let Some(m) = rx.pop() {
            let Some(bytes) = taphold_wire::link::pdu(m.data()) else {
                continue; // built by egress: cannot happen
            };
            let Ok(p) = taphold_wire::taphold::Packet::new_checked(bytes) else {
                continue; // as above
            };
            let pdu = &bytes[..p.total_len()];
            if journal.append(p.seq(), 0, p.timestamp_ns(), pdu)?
                == taphold_journal::Appended::Duplicate
            {
                return Err(std::io::Error::other(format!(
                    "seq {} is already in the local journal",
                    p.seq()
                )));
            }
            last = Some(p.seq());
        }
        if last.is_some() {
            journal.sync()?;
        }
        Ok(last)
    }
}

/// How often the main lcore trims the local journal below the delivered seq.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// How often it publishes latency percentiles for telemetry.
const LATENCY_PUBLISH_EVERY: Duration = Duration::from_millis(100);

fn err(what: impl std::fmt::Display) -> String {
    what.to_string()
}

/// Configures and starts a port with `rx` and `tx` queues.
/// Configures and starts a port with `rx` and `tx` queues, and `mtu` if the
/// device has one to set.
fn start_port(p: Port, rx: u16, tx: u16, pool: &Mempool, mtu: Option<u16>) -> Result<Port, String> {
    start_port_with(p, rx, tx, pool, mtu, false)
}

/// [`start_port`], asking the device to verify IPv4 and UDP checksums on receive where it
/// can (P: ingress then skips its software checksums for frames the device vouched for).
fn start_port_with(
    mut p: Port,
    rx: u16,
    tx: u16,
    pool: &Mempool,
    mtu: Option<u16>,
    rx_checksum_offload: bool,
) -> Result<Port, String> {
    let pc = PortConfig {
        rx_queues: rx,
        tx_queues: tx,
        mtu,
        rx_checksum_offload,
        ..PortConfig::default()
    };
    p.configure(&pc, pool).map_err(err)?;
    p.start().map_err(err)?;
    Ok(p)
}

impl Appliance {
    /// The appliance, ready to run: the plan, the pool and the control
    /// plane, the ports, the rings between the roles, the roles, and their
    /// placement on lcores.
    pub fn build(eal: &Eal, cfg: &Config, lease: EpochLease) -> Result<Appliance, String> {
        let plan = Plan::of(cfg)?;
        check_lcores(eal, &plan)?;
        let m = &cfg.mempool;
        // The pool on P's NUMA socket: every message's mbuf is P's.
        let socket = Port::socket_of_name(&plan.primary.port);
        warn_numa(eal, &plan, socket);
        let on = socket.map_or(-1, |s| s as i32);
        let pool = Mempool::new(eal, "taphold", m.mbufs, m.cache, m.data_room, on).map_err(err)?;
        let (plane, writers) = Plane::new(plan.primary_set, plan.links.len());
        crate::on_panic_quit(plane);
        let clock = Clock::new(eal);
        let mut ports = Ports::open(eal, cfg, &plan, &pool)?;
        let harness = ports.harness.take();
        let rings = Rings::new(eal, &plan)?;
        let (journal_out, local_journal) = open_local_journal(eal, cfg, &plan, lease.epoch)?;
        let parts = Parts {
            plan: &plan,
            epoch: lease.epoch,
            pool: &pool,
            clock,
            plane,
            ports: &ports,
        };
        let (roles, events, control) = parts.roles(rings, writers, journal_out, harness);
        let lcores = place(&plan, clock, roles)?;
        ports.log_links();
        Ok(Appliance {
            eal: eal.clone(),
            pool,
            ports: ports.all,
            plane,
            control,
            lcores,
            events,
            clock,
            cfg: cfg.clone(),
            plan,
            local_journal,
            lease,
            watch_panic_at: None,
        })
    }

    pub fn run(mut self, opts: &Opts, signalled: &AtomicBool) -> Result<i32, String> {
        let monitors = Monitors::new(&self.cfg.latency_monitor, self.clock.now_ns());
        // Threads outside EAL (the interval log's writer, the metrics
        // server) go on the main lcore's CPU: it only watches.
        let main_cpu = self
            .eal
            .lcore_cpu(self.eal.main_lcore())
            .map(|c| c as usize);
        let mut report = Report::new(
            opts.out.as_deref(),
            &self.cfg,
            &self.lease,
            self.clock,
            monitors,
            opts.hlog.then_some(main_cpu),
        )
        .map_err(err)?;
        let mut console = Console::default();
        self.start_telemetry(opts)?;
        let mut handles = Vec::new();
        for (lcore_id, roles) in std::mem::take(&mut self.lcores) {
            let names: Vec<String> = self
                .plan
                .roles_on(lcore_id)
                .iter()
                .map(|r| r.to_string())
                .collect();
            log::info!("lcore {lcore_id}: {}", names.join(", "));
            let (plane, idle) = (self.plane, self.plan.idle);
            handles.push(
                lcore::launch(&self.eal, lcore_id, move || worker::run(roles, idle, plane))
                    .map_err(err)?,
            );
        }

        let started_ns = self.clock.now_ns();
        // The watch loop must not leave the workers running if it panics (a
        // bug, or anything unforeseen): catch it, and go on to stop them and
        // account for every held message as on any other ending. The panic
        // hook (main.rs) has already told the workers to quit.
        let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.watch(opts, signalled, &mut report, &mut console)
        }));
        let why = watched.unwrap_or_else(|_| {
            log::error!("the watch loop panicked; stopping the workers");
            "panic"
        });
        log::info!("stopping ({why})");

        self.plane.quit.store(true, Ordering::SeqCst);
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
        // Frames still on their way to the local journal are copies of held
        // messages (accounted next): free them before the pool is counted.
        self.local_journal = None;
        let held = self.account_held(egress, &mut report, failed);
        // Port counters are final now; then close every port (the ring ports
        // free what they still queue) so the pool's in-use count is the truth.
        let port_stats = Report::port_stats(&self.ports);
        self.ports.clear();
        let in_use = self.pool.in_use();
        let summary = report
            .finish(
                self.plane,
                &self.cfg,
                &self.control,
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
        if opts.json {
            console.line(&summary);
        } else {
            match serde_json::from_str(&summary) {
                Ok(v) => console.line(&crate::report::human(&v)),
                Err(_) => console.line(&summary),
            }
        }
        if failed || why == "panic" {
            return Ok(1);
        }
        // Failing closed is not a clean run: whoever started us must know.
        if self.plane.control.mode() == Mode::Halt {
            log::error!(
                "the run ended failed closed (mode halt): {}",
                self.control
                    .alerts
                    .last_of(&["mode_halt", "local_journal_failed", "failover_no_standby"])
                    .unwrap_or("see the alerts in the summary")
            );
            return Ok(3);
        }
        Ok(0)
    }

    /// The telemetry commands, and the metrics server if asked for.
    fn start_telemetry(&self, opts: &Opts) -> Result<(), String> {
        let info = std::sync::Arc::new(crate::telemetry::Info {
            stream: self.plan.stream,
            epoch: self.lease.epoch,
            links: self
                .cfg
                .backup_links
                .iter()
                .map(|l| l.name.clone())
                .collect(),
        });
        crate::telemetry::register(self.plane, info.clone()).map_err(err)?;
        if let Some(addr) = opts.metrics_listen {
            let cpu = self
                .eal
                .lcore_cpu(self.eal.main_lcore())
                .map(|c| c as usize);
            let bound = crate::telemetry::serve_metrics(addr, self.plane, info, cpu)
                .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
            log::info!("metrics on http://{bound}/metrics (CPU {cpu:?}, the main lcore's)");
        }
        Ok(())
    }

    /// Every message still held is accounted: an event line, a frame in
    /// held.pcap, a count in the summary. Then its mbuf is freed (once).
    fn account_held(&self, egress: Option<Egress>, report: &mut Report, failed: bool) -> u64 {
        let Some(mut e) = egress else {
            if failed {
                log::error!(
                    "the egress lcore failed: held messages cannot be accounted individually"
                );
            }
            return 0;
        };
        let mut held = 0u64;
        let (stream, epoch) = (self.plan.stream, self.lease.epoch);
        e.drain_held(|r| {
            held += 1;
            report.held_at_shutdown(
                MessageEvent {
                    seq: r.seq,
                    stream,
                    epoch,
                    rx_ns: r.rx_ns,
                    backup_tx_ns: r.backup_tx_ns,
                    tap_ns: r.tap_ns.iter().copied().max().unwrap_or(0),
                    release_ns: 0,
                    status: MessageStatus::HeldAtShutdown,
                },
                r.item.mbuf.data(),
            );
        });
        held
    }

    /// The main lcore's watch loop, until something ends the run: control
    /// ticks, the local journal, events, the stats line. Returns why it ended.
    fn watch(
        &mut self,
        opts: &Opts,
        signalled: &AtomicBool,
        report: &mut Report,
        console: &mut Console,
    ) -> &'static str {
        let mut acked_seen = [0u64; crate::config::MAX_LINKS];
        let started = Instant::now();
        self.watch_panic_at =
            crate::failpoint("watch-panic-after-ms").map(|ms| started + Duration::from_millis(ms));
        let mut next_stats = started + self.plan.stats_every;
        let mut next_trim = started + HOUSEKEEPING_EVERY;
        let mut next_latency = started;
        let mut last_progress = (0u64, Instant::now());
        loop {
            // The control tick: finer than any health threshold we enforce.
            std::thread::sleep(Duration::from_micros(100));
            let now_ns = self.clock.now_ns();
            self.control.tick(now_ns);
            self.ack_round_trips(&mut acked_seen, report);
            report.monitors.poll(now_ns);
            if let Some(j) = &mut self.local_journal {
                match j.service() {
                    Ok(Some(seq)) => self.control.journaled(seq),
                    Ok(None) => {}
                    Err(e) => {
                        // Every mode change goes through the control loop,
                        // which keeps the appliance halted from now on.
                        self.control
                            .journal_failed(now_ns, format!("local journal: {e}"));
                    }
                }
            }
            report.drain_events(&mut self.events);
            let now = Instant::now();
            if now >= next_trim {
                next_trim = now + HOUSEKEEPING_EVERY;
                self.trim_local_journal();
            }
            if now >= next_latency {
                next_latency = now + LATENCY_PUBLISH_EVERY;
                self.control.publish_latency(report.latency_now());
            }
            if signalled.load(Ordering::SeqCst) {
                return "signal";
            }
            // Set by nobody but the panic hook while we run: a worker panicked.
            if self.plane.quit.load(Ordering::SeqCst) {
                return "panic";
            }
            if opts
                .duration_ms
                .is_some_and(|ms| now.duration_since(started) >= Duration::from_millis(ms))
            {
                return "duration";
            }
            if let Some(ms) = opts.exit_when_idle_ms {
                let p = progress(self.plane);
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
                next_stats += self.plan.stats_every;
                console.line(&report.stats_line(
                    self.plane,
                    &self.control,
                    &self.ports[&self.plan.primary.port],
                    now.duration_since(started),
                ));
            }
        }
    }

    /// With target confirmations, the local journal keeps only what the
    /// destination has not confirmed. A failed trim deletes nothing more and
    /// is logged; the journal itself stays valid.
    fn trim_local_journal(&mut self) {
        if self.plan.primary.target_confirm_port == 0 {
            return;
        }
        let delivered = self.plane.ingress.delivered_seq();
        if let Some(j) = &mut self.local_journal {
            if let Err(e) = j.trim(delivered) {
                log::error!("local journal: trimming below {delivered}: {e}");
            }
        }
    }

    /// Ack round trips: each time a link's cumulative ack moves, the newest
    /// acked message's launch-to-ack time.
    fn ack_round_trips(&self, acked_seen: &mut [u64], report: &mut Report) {
        for (k, seen) in acked_seen
            .iter_mut()
            .enumerate()
            .take(self.plan.links.len())
        {
            let l = &self.plane.link_rx[k];
            let acked = l.acked_seq();
            if acked > *seen {
                *seen = acked;
                let launched = self.plane.ingress.launch_of(acked);
                let at = l.last_ack_ns();
                if launched != 0 && at >= launched {
                    report.monitors.record_ack(at, at - launched);
                }
            }
        }
    }
}

/// Every port, started: the harness's in-process fibre and tap first, so
/// that the link and tap names resolve to them like any device.
struct Ports {
    all: BTreeMap<String, Arc<Port>>,
    primary: Arc<Port>,
    /// A two-port gateway's Q.
    q: Option<Arc<Port>>,
    /// Our MAC on each backup link.
    macs: Vec<EthernetAddress>,
    harness: Option<Harness>,
}

impl Ports {
    fn open(eal: &Eal, cfg: &Config, plan: &Plan, pool: &Mempool) -> Result<Ports, String> {
        let mut all: BTreeMap<String, Arc<Port>> = BTreeMap::new();
        let harness = Harness::build(eal, cfg, pool, &mut all)?;
        let primary = Port::by_name(eal, &plan.primary.port).map_err(err)?;
        let mtu = Some(plan.primary.mtu);
        let primary = Arc::new(start_port_with(
            primary,
            1,
            plan.primary.tx_queues,
            pool,
            mtu,
            true,
        )?);
        if primary.rx_checksum_offload() {
            log::info!(
                "{}: IPv4/UDP checksums verified by the device on receive",
                plan.primary.port
            );
        }
        all.insert(plan.primary.port.clone(), primary.clone());
        // Q as P: one receive queue (ingress's), one transmit queue (egress's), P's MTU.
        let q = match plan.gateway.as_ref().and_then(|g| g.port2.as_ref()) {
            Some(q2) => {
                let q = Port::by_name(eal, &q2.port).map_err(err)?;
                let q = Arc::new(start_port(q, 1, 1, pool, mtu)?);
                all.insert(q2.port.clone(), q.clone());
                Some(q)
            }
            None => None,
        };
        for l in &plan.links {
            for name in [&l.port, &l.tap] {
                if !all.contains_key(name) {
                    let p = Port::by_name(eal, name).map_err(err)?;
                    let p = start_port(p, 1, 1, pool, Some(plan.link_mtu))?;
                    all.insert(name.clone(), Arc::new(p));
                }
            }
        }
        let macs = plan
            .links
            .iter()
            .map(|l| match l.mac {
                Some(m) => Ok(m),
                None => all[&l.port].mac().map(EthernetAddress).map_err(err),
            })
            .collect::<Result<_, String>>()?;
        Ok(Ports {
            all,
            primary,
            q,
            macs,
            harness,
        })
    }

    fn log_links(&self) {
        for (name, p) in &self.all {
            if let Ok(link) = p.link() {
                let state = if link.up { "up" } else { "down" };
                log::info!("port {name} (id {}): link {state}", p.id());
            }
        }
    }
}

/// The rings between the roles: the hold ring's three sides, the event ring
/// to the main lcore, ingress's ARP replies to egress, and per link egress's
/// re-launches to ingress.
struct Rings {
    hold: (
        Producer<HeldMessage>,
        Confirmer<HeldMessage>,
        Consumer<HeldMessage>,
    ),
    events: (SpscProducer<MessageEvent>, SpscConsumer<MessageEvent>),
    arp: (dpdk::ring::Producer<Mbuf>, dpdk::ring::Consumer<Mbuf>),
    /// A two-port gateway's hand-off of what ingress sends on Q.
    q: Option<(dpdk::ring::Producer<Mbuf>, dpdk::ring::Consumer<Mbuf>)>,
    relaunch: Vec<(dpdk::ring::Producer<Mbuf>, dpdk::ring::Consumer<Mbuf>)>,
}

impl Rings {
    fn new(eal: &Eal, plan: &Plan) -> Result<Rings, String> {
        let relaunch = plan
            .links
            .iter()
            .map(|l| {
                let name = format!("taphold_relaunch{}", l.index);
                SpscRing::new(eal, &name, plan.handoff_ring).map_err(err)
            })
            .collect::<Result<_, String>>()?;
        Ok(Rings {
            hold: HoldRing::new(plan.hold_capacity).map_err(|e| format!("hold ring: {e:?}"))?,
            events: Spsc::new(plan.events_ring).map_err(|e| format!("event ring: {e:?}"))?,
            arp: SpscRing::new(eal, "taphold_arp", 1024).map_err(err)?,
            q: match plan.gateway.as_ref().and_then(|g| g.port2.as_ref()) {
                Some(_) => Some(SpscRing::new(eal, "taphold_fwd_q", 1024).map_err(err)?),
                None => None,
            },
            relaunch,
        })
    }
}

/// What every role is built from.
struct Parts<'a> {
    plan: &'a Plan,
    epoch: u64,
    pool: &'a Mempool,
    clock: Clock,
    plane: &'static Plane,
    ports: &'a Ports,
}

impl Parts<'_> {
    /// Every role (the tap model only with a `harness`), the main lcore's end
    /// of the event ring, and the control loop; each writer handle goes to
    /// the one role that writes its block.
    #[allow(clippy::type_complexity)]
    fn roles(
        &self,
        rings: Rings,
        w: Writers,
        journal_out: Option<dpdk::ring::Producer<Mbuf>>,
        harness: Option<Harness>,
    ) -> (
        [(RoleName, Option<Role>); 5],
        SpscConsumer<MessageEvent>,
        ControlLoop,
    ) {
        let (plan, ports) = (self.plan, self.ports);
        let (producer, confirmer, consumer) = rings.hold;
        let (relaunch_tx, relaunch_rx): (Vec<_>, Vec<_>) = rings.relaunch.into_iter().unzip();
        let (q_out, q_in) = rings.q.map_or((None, None), |(p, c)| (Some(p), Some(c)));
        let ingress = Ingress::new(
            plan,
            self.epoch,
            IngressParts {
                primary: ports.primary.clone(),
                links: (plan.links.iter().zip(relaunch_rx))
                    .map(|(l, rx)| (ports.all[&l.port].clone(), ports.macs[l.index], rx))
                    .collect(),
                hold: producer,
                pool: self.pool.clone(),
                arp_out: rings.arp.0,
                q: ports.q.clone().zip(q_out),
                clock: self.clock,
                plane: self.plane,
                mine: w.ingress,
                round: w.round_ingress,
            },
        );
        let taps = (plan.links.iter().zip(w.tap))
            .map(|(l, mine)| TapLink {
                id: self.identity(l.index),
                port: ports.all[&l.tap].clone(),
                mine,
            })
            .collect();
        let tap_rx = TapRx::new(taps, confirmer, plan.key, self.clock, self.plane);
        let relaunch_links = (plan.links.iter().zip(relaunch_tx))
            .map(|(l, tx)| {
                let mac = ports.macs[l.index];
                let peer_mac = l.peer_mac;
                (LinkAddr { mac, peer_mac }, tx)
            })
            .collect();
        let relaunch = Relaunch::new(
            plan,
            self.epoch,
            relaunch_links,
            self.pool.clone(),
            w.round_egress,
        );
        let egress = Egress::new(
            plan,
            self.epoch,
            EgressParts {
                primary: ports.primary.clone(),
                hold: consumer,
                pool: self.pool.clone(),
                arp_in: rings.arp.1,
                q: ports.q.clone().zip(q_in),
                events: rings.events.0,
                clock: self.clock,
                plane: self.plane,
                mine: w.egress,
                relaunch,
                journal_out,
            },
        );
        let link_rx_links = (plan.links.iter().zip(w.link_rx))
            .map(|(l, mine)| LinkRxLink {
                id: self.identity(l.index),
                port: ports.all[&l.port].clone(),
                mine,
            })
            .collect();
        let link_rx = LinkRx::new(link_rx_links, plan.key, self.clock, self.plane);
        let tap_model =
            harness.map(|h| h.into_role(&ports.macs, self.pool, plan, self.clock, self.plane));
        let control = ControlLoop::new(
            plan,
            self.plane,
            w.control,
            w.round_main,
            self.clock.now_ns(),
        );
        let roles = [
            (RoleName::Ingress, Some(Role::Ingress(ingress))),
            (RoleName::TapRx, Some(Role::TapRx(tap_rx))),
            (RoleName::Egress, Some(Role::Egress(egress))),
            (RoleName::LinkRx, Some(Role::LinkRx(link_rx))),
            (RoleName::TapModel, tap_model.map(Role::TapModel)),
        ];
        (roles, rings.events.1, control)
    }

    /// Who we are on link `k`.
    fn identity(&self, k: usize) -> LinkIdentity {
        LinkIdentity {
            link: k,
            ours: self.ports.macs[k],
            peer: self.plan.links[k].peer_mac,
            stream: self.plan.stream,
            epoch: self.epoch,
        }
    }
}

/// Crossing sockets costs every packet an interconnect hop: say so when a
/// worker lcore or a backup link's device is not on P's socket.
fn warn_numa(eal: &Eal, plan: &Plan, p_socket: Option<u32>) {
    let Some(p) = p_socket else { return };
    for (lcore, _) in &plan.lcores {
        let s = eal.socket_of(*lcore);
        if s != p {
            log::warn!(
                "NUMA: lcore {lcore} is on socket {s}, P ({}) and its mempool on socket {p}: every packet crosses sockets",
                plan.primary.port
            );
        }
    }
    let q = plan.gateway.iter().filter_map(|g| g.port2.as_ref());
    let devices = plan
        .links
        .iter()
        .flat_map(|l| [&l.port, &l.tap])
        .chain(q.map(|q| &q.port));
    for dev in devices {
        if let Some(s) = Port::socket_of_name(dev).filter(|&s| s != p) {
            log::warn!("NUMA: {dev} is on socket {s}, the mempool (P's) on socket {p}");
        }
    }
}

/// Every lcore the plan maps roles onto is a worker lcore of this EAL.
fn check_lcores(eal: &Eal, plan: &Plan) -> Result<(), String> {
    let workers = eal.worker_lcores();
    for (l, _) in &plan.lcores {
        if !workers.contains(l) {
            return Err(format!(
                "config lcores: lcore {l} is not a worker lcore of this EAL (workers {workers:?}; the main lcore {} only watches) — adjust -l",
                eal.main_lcore()
            ));
        }
    }
    Ok(())
}

/// The roles onto the lcores the plan maps them to (each role once; an
/// optional role nobody maps is dropped). A failpoint role first, if the tests
/// asked for one.
fn place(
    plan: &Plan,
    clock: Clock,
    roles: [(RoleName, Option<Role>); 5],
) -> Result<Vec<(u32, Vec<Role>)>, String> {
    let mut roles: BTreeMap<RoleName, Role> = roles
        .into_iter()
        .filter_map(|(n, r)| r.map(|r| (n, r)))
        .collect();
    let mut lcores: Vec<(u32, Vec<Role>)> = Vec::new();
    // Fault injection for the tests (never set in production): a role
    // that panics after N ms, on the first worker lcore.
    if let (Some(ms), Some((first, _))) = (
        crate::failpoint("worker-panic-after-ms"),
        plan.lcores.first(),
    ) {
        lcores.push((
            *first,
            vec![Role::Failpoint(Failpoint {
                clock,
                panic_at_ns: clock.now_ns().saturating_add(ms.saturating_mul(1_000_000)),
            })],
        ));
    }
    for (lcore, names) in &plan.lcores {
        let mut here = Vec::new();
        for r in names {
            here.push(
                roles
                    .remove(r)
                    .ok_or_else(|| format!("role {r} mapped twice"))?,
            );
        }
        match lcores.iter_mut().find(|(id, _)| id == lcore) {
            Some((_, rs)) => rs.extend(here),
            None => lcores.push((*lcore, here)),
        }
    }
    Ok(lcores)
}

/// The journal secondary mode's hand-off ring and the journal itself,
/// opened (and recovered) now: a bad directory is a start-up error, not a
/// surprise during an outage.
fn open_local_journal(
    eal: &Eal,
    cfg: &Config,
    plan: &Plan,
    epoch: u64,
) -> Result<(Option<dpdk::ring::Producer<Mbuf>>, Option<LocalJournal>), String> {
    let Some(j) = &cfg.local_journal else {
        return Ok((None, None));
    };
    let (tx, rx) = SpscRing::new(eal, "taphold_journal", plan.handoff_ring).map_err(err)?;
    // This run's records go to a run of their own (stream, epoch): earlier
    // runs' records stay where they are, untouched.
    let run = taphold_journal::RunId {
        stream: plan.stream,
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
    Ok((
        Some(tx),
        Some(LocalJournal {
            journal: Some(journal),
            rx,
        }),
    ))
}

/// The replay harness: the in-process fibre and tap of each modelled link.
struct Harness {
    links: Vec<ModelLink>,
    sinks: Vec<Arc<Port>>,
}

impl Harness {
    /// Creates the ring ports of each modelled link (inserting the link's
    /// port and tap into `ports`) and its sink; None without a harness.
    fn build(
        eal: &Eal,
        cfg: &Config,
        pool: &Mempool,
        ports: &mut BTreeMap<String, Arc<Port>>,
    ) -> Result<Option<Harness>, String> {
        let Some(h) = &cfg.harness else {
            return Ok(None);
        };
        let mut links = Vec::new();
        let mut sinks: Vec<Arc<Port>> = Vec::new();
        let mut sink_index: BTreeMap<String, usize> = BTreeMap::new();
        for hl in &h.links {
            let (k, link) = cfg
                .backup_links
                .iter()
                .enumerate()
                .find(|(_, l)| l.name == hl.link)
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
            ports.insert(
                link.port.clone(),
                Arc::new(start_port(b, 1, 1, pool, None)?),
            );
            ports.insert(link.tap.clone(), Arc::new(start_port(t, 1, 1, pool, None)?));
            let sink = match &hl.sink {
                Some(name) => Some(match sink_index.get(name) {
                    Some(&i) => i,
                    None => {
                        let p = Arc::new(start_port(
                            Port::by_name(eal, name).map_err(err)?,
                            0,
                            1,
                            pool,
                            None,
                        )?);
                        sinks.push(p.clone());
                        ports.insert(name.clone(), p);
                        sink_index.insert(name.clone(), sinks.len() - 1);
                        sinks.len() - 1
                    }
                }),
                None => None,
            };
            let mut m = ModelLink::new(
                k,
                hl,
                start_port(fibre, 1, 1, pool, None)?,
                start_port(tap_feed, 1, 1, pool, None)?,
                sink,
                link.peer_mac.0,
            );
            m.inject_from = hl
                .tap_injects_from
                .as_ref()
                .and_then(|n| cfg.backup_links.iter().position(|b| b.name == *n));
            links.push(m);
        }
        Ok(Some(Harness { links, sinks }))
    }

    fn into_role(
        self,
        macs: &[EthernetAddress],
        pool: &Mempool,
        plan: &Plan,
        clock: Clock,
        plane: &'static Plane,
    ) -> TapModel {
        TapModel::new(
            self.links,
            self.sinks,
            macs,
            plan,
            pool.clone(),
            clock,
            plane,
        )
    }
}

/// Messages moving: frames in from P, tap confirmations, releases. Not
/// heartbeats, which flow for as long as the links are alive.
fn progress(p: &Plane) -> u64 {
    let c = &p.counters;
    c.ingress.rx_frames.get()
        + c.egress.released.get()
        + c.tap.iter().map(|t| t.confirmed.get()).sum::<u64>()
}

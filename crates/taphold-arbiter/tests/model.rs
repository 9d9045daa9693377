//! Property tests against a model: random streams of seqs through one or two inputs with
//! loss, duplication and reordering, a simulated backup node that answers resend requests
//! from a full copy (sometimes losing answers), in simulated time.
//!
//! Whatever the traffic, the arbiter must deliver each (epoch, seq) it can exactly once, in
//! seq order per epoch; with `on_gap: skip` and seqs nobody can give it, it must skip exactly
//! those, say so, and deliver everything else. Every copy of a seq must get the verdict
//! first-copy-wins gives it: refused while beyond the window, then one winner, then
//! duplicates.

mod common;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use common::*;
use proptest::prelude::*;
use taphold_arbiter::{Arbiter, ArbiterConfig, Checkpoint, Event, InputId, OnGap, Verdict};
use taphold_wire::Flags;

const E: u64 = 1_764_460_800;
const US: u64 = 1_000;

/// SplitMix64: the simulation's randomness, from one proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// How one input mangles what it carries.
#[derive(Debug, Clone, Copy)]
struct Link {
    loss_pct: u64,
    dup_pct: u64,
    /// How far (in positions) a datagram may be moved later.
    reorder: u64,
}

/// The datagrams one input carries for `seqs` of `epoch`: lost, duplicated and reordered
/// as `link` says; those in `keep` are never lost.
fn carry(
    rng: &mut Rng,
    epoch: u64,
    seqs: &[u64],
    link: Link,
    keep: &BTreeSet<u64>,
) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, (u64, u64))> = Vec::new();
    for (i, &s) in seqs.iter().enumerate() {
        if !keep.contains(&s) && rng.pct(link.loss_pct) {
            continue;
        }
        let copies = if rng.pct(link.dup_pct) { 2 } else { 1 };
        for _ in 0..copies {
            let pos = i as u64 * 16 + rng.below(link.reorder * 16 + 1);
            v.push((pos, (epoch, s)));
        }
    }
    v.sort_by_key(|x| x.0);
    v.into_iter().map(|x| x.1).collect()
}

/// Interleaves several inputs' datagrams at random, keeping each input's own order.
fn interleave(rng: &mut Rng, lanes: Vec<(usize, Vec<(u64, u64)>)>) -> Vec<(usize, u64, u64)> {
    let mut idx = vec![0usize; lanes.len()];
    let mut out = Vec::new();
    loop {
        let live: Vec<usize> = (0..lanes.len())
            .filter(|&l| idx[l] < lanes[l].1.len())
            .collect();
        if live.is_empty() {
            return out;
        }
        let l = live[rng.below(live.len() as u64) as usize];
        let (epoch, seq) = lanes[l].1[idx[l]];
        out.push((lanes[l].0, epoch, seq));
        idx[l] += 1;
    }
}

/// A datagram due: (time, order of scheduling, input, epoch, seq, flag bits).
type Scheduled = (u64, u64, usize, u64, u64, u16);

/// The simulated world around one arbiter: scheduled datagrams, a backup node with a full
/// copy (less `node_lacks`), what the application received, every verdict.
struct Sim {
    arb: Arbiter,
    rng: Rng,
    t: u64,
    order: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    node_lacks: BTreeSet<(u64, u64)>,
    answer_loss_pct: u64,
    sink: Sink,
    /// Per (epoch, seq), the verdict of each copy, in arrival order.
    verdicts: HashMap<(u64, u64), Vec<Verdict>>,
    events: Vec<Event>,
    resend_input: InputId,
}

impl Sim {
    fn new(cfg: ArbiterConfig, seed: u64) -> Sim {
        let arb = Arbiter::new(cfg, &["A", "B"]).unwrap();
        let resend_input = arb.input("B").unwrap();
        Sim {
            arb,
            rng: Rng(seed),
            t: 1_000_000 * MS,
            order: 0,
            queue: BinaryHeap::new(),
            node_lacks: BTreeSet::new(),
            answer_loss_pct: 0,
            sink: Sink::default(),
            verdicts: HashMap::new(),
            events: Vec::new(),
            resend_input,
        }
    }

    fn schedule(&mut self, at: u64, input: usize, epoch: u64, seq: u64, flags: Flags) {
        self.order += 1;
        self.queue
            .push(Reverse((at, self.order, input, epoch, seq, flags.bits())));
    }

    /// Puts the traffic on the wire, one datagram every 0..50 µs.
    fn send_all(&mut self, traffic: &[(usize, u64, u64)]) {
        let mut at = self.t;
        for &(input, epoch, seq) in traffic {
            at += self.rng.below(50) * US;
            self.schedule(at, input, epoch, seq, Flags::EMPTY);
        }
    }

    /// After every step: events kept, PDUs handled (the node answers resend requests after
    /// 50 µs..1 ms, each seq it holds, less those it loses).
    fn after_step(&mut self) {
        while let Some(e) = self.arb.next_event() {
            self.events.push(e);
        }
        let (resends, _) = drain(&mut self.arb);
        for r in resends {
            for seq in r.seqs() {
                if self.node_lacks.contains(&(r.epoch, seq)) || self.rng.pct(self.answer_loss_pct) {
                    continue;
                }
                let at = self.t + 50 * US + self.rng.below(950) * US;
                let input = self.resend_input.index();
                self.schedule(at, input, r.epoch, seq, Flags::RETRANSMIT);
            }
        }
    }

    /// Runs until nothing is scheduled and nothing is pending, or `until` (simulated).
    fn run(&mut self, until: u64) {
        let mut same_t = 0u32;
        loop {
            let next_dgram = self.queue.peek().map(|r| r.0 .0);
            let next_timer = self.arb.next_deadline();
            let next = match (next_dgram, next_timer) {
                (Some(a), Some(b)) => a.min(b.max(self.t)),
                (Some(a), None) => a,
                (None, Some(b)) => b.max(self.t),
                (None, None) => return,
            };
            if next > until {
                return;
            }
            // A timer that stays due without anything changing would spin here forever.
            same_t = if next == self.t { same_t + 1 } else { 0 };
            assert!(same_t < 10_000, "stuck at t={}: {:?}", self.t, self.arb);
            self.t = next;
            if next_dgram == Some(next) {
                let Reverse((_, _, input, epoch, seq, bits)) = self.queue.pop().unwrap();
                let flags = Flags::from_bits(bits).unwrap();
                let input = self.arb.inputs().nth(input).unwrap().0;
                let v = self.arb.on_datagram(
                    input,
                    &datagram(epoch, seq, flags),
                    self.t,
                    &mut self.sink.f(),
                );
                self.verdicts.entry((epoch, seq)).or_default().push(v);
            }
            self.arb.on_tick(self.t, &mut self.sink.f());
            self.after_step();
        }
    }

    /// Each copy of a seq got what first-copy-wins gives it: refused while beyond the window
    /// (or late after a skip), then exactly one winner (Delivered/Held), then duplicates.
    fn check_first_copy_wins(&self, skipped: &BTreeSet<(u64, u64)>) {
        for (&(epoch, seq), vs) in &self.verdicts {
            let won: Vec<usize> = vs
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v, Verdict::Delivered(_) | Verdict::Held))
                .map(|(i, _)| i)
                .collect();
            if skipped.contains(&(epoch, seq)) {
                assert!(won.is_empty(), "{epoch}/{seq} skipped yet won: {vs:?}");
                continue;
            }
            assert_eq!(won.len(), 1, "{epoch}/{seq}: {vs:?}");
            let w = won[0];
            assert!(
                vs[..w].iter().all(|v| *v == Verdict::BeyondWindow),
                "{epoch}/{seq}: {vs:?}"
            );
            assert!(
                vs[w + 1..].iter().all(|v| *v == Verdict::Duplicate),
                "{epoch}/{seq}: {vs:?}"
            );
        }
    }

    /// Every datagram is accounted for, on every input.
    fn check_accounting(&self) {
        let mut first = 0;
        for (id, _) in self.arb.inputs() {
            let c = self.arb.input_counters(id);
            assert_eq!(
                c.received,
                c.first_copies + c.duplicates + c.late_after_skip + c.beyond_window,
                "{c:?}"
            );
            first += c.first_copies;
        }
        let delivered = self.sink.got.len() as u64;
        assert_eq!(self.arb.counters().delivered, delivered);
        let held: u64 = self.arb.epochs().iter().map(|e| e.held).sum();
        assert_eq!(first, delivered + held);
    }
}

fn model_config(window: u32, on_gap: OnGap) -> ArbiterConfig {
    ArbiterConfig {
        window,
        on_gap,
        gap_timeout_ns: MS,
        resend_interval_ns: 5 * MS,
        resend_tries: 3,
        ..config()
    }
}

fn link() -> impl Strategy<Value = Link> {
    (0u64..40, 0u64..30, 0u64..10).prop_map(|(loss_pct, dup_pct, reorder)| Link {
        loss_pct,
        dup_pct,
        reorder,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Lossy, duplicating, reordering inputs and a node that loses answers: with
    /// `on_gap: wait`, everything 1..=n is delivered once, in order, with its own payload.
    #[test]
    fn wait_delivers_everything_once_in_order(
        n in 1u64..250, window in 2u32..40, two_inputs in any::<bool>(),
        a in link(), b in link(), answer_loss_pct in 0u64..50, seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(model_config(window, OnGap::Wait), seed);
        sim.answer_loss_pct = answer_loss_pct;
        let seqs: Vec<u64> = (1..=n).collect();
        // The last seq reaches the arbiter: a gap nobody has seen cannot be asked for.
        let keep = BTreeSet::from([n]);
        let mut lanes = vec![(0, carry(&mut sim.rng, E, &seqs, a, &keep))];
        if two_inputs {
            lanes.push((1, carry(&mut sim.rng, E, &seqs, b, &BTreeSet::new())));
        }
        let traffic = interleave(&mut sim.rng, lanes);
        sim.send_all(&traffic);
        sim.run(sim.t + 60_000 * MS);
        prop_assert_eq!(sim.sink.seqs(E), seqs);
        for g in &sim.sink.got {
            prop_assert_eq!(&g.payload, &payload(E, g.seq));
        }
        sim.check_first_copy_wins(&BTreeSet::new());
        sim.check_accounting();
        prop_assert_eq!(sim.arb.counters().skipped, 0);
        let ep = sim.arb.epochs();
        prop_assert_eq!((ep[0].delivered_through, ep[0].gap), (n, None));
    }

    /// Seqs nobody has (lost on every input, lacking at the node) under `on_gap: skip`:
    /// exactly those are skipped, reported and confirmed as skipped; the rest is delivered
    /// once, in order.
    #[test]
    fn skip_skips_exactly_what_nobody_has(
        n in 3u64..200, window in 2u32..40, holes in proptest::collection::btree_set(2u64..200, 1..12),
        a in link(), b in link(), seed in any::<u64>(),
    ) {
        let holes: BTreeSet<u64> = holes.into_iter().filter(|&h| h < n).collect();
        prop_assume!(!holes.is_empty());
        let mut sim = Sim::new(model_config(window, OnGap::Skip), seed);
        sim.node_lacks = holes.iter().map(|&h| (E, h)).collect();
        let present: Vec<u64> = (1..=n).filter(|s| !holes.contains(s)).collect();
        let keep = BTreeSet::from([n]);
        let lanes = vec![
            (0, carry(&mut sim.rng, E, &present, a, &keep)),
            (1, carry(&mut sim.rng, E, &present, b, &BTreeSet::new())),
        ];
        let traffic = interleave(&mut sim.rng, lanes);
        sim.send_all(&traffic);
        sim.run(sim.t + 60_000 * MS);
        prop_assert_eq!(sim.sink.seqs(E), present);
        let mut skipped = BTreeSet::new();
        let mut reported = BTreeSet::new();
        for e in &sim.events {
            match *e {
                Event::Skipped { epoch, first, last } => {
                    prop_assert_eq!(epoch, E);
                    for s in first..=last {
                        prop_assert!(skipped.insert(s), "{} skipped twice", s);
                    }
                }
                Event::GapExhausted { first, last, .. } => reported.extend(first..=last),
                _ => {}
            }
        }
        prop_assert_eq!(&skipped, &holes);
        prop_assert_eq!(&reported, &holes, "every skipped seq was reported first");
        prop_assert_eq!(sim.arb.counters().skipped, holes.len() as u64);
        let cp = sim.arb.checkpoint();
        prop_assert_eq!((cp.epochs[0].delivered, cp.epochs[0].skipped), (n, holes.len() as u64));
        // The last confirmation says so.
        sim.arb.confirm_all(sim.t);
        let (_, conf) = drain(&mut sim.arb);
        prop_assert_eq!((conf[0].seq, conf[0].skipped), (n, holes.len() as u64));
        sim.check_first_copy_wins(&holes.iter().map(|&h| (E, h)).collect());
        sim.check_accounting();
    }

    /// A sends 1..=hi, B sends lo..=n: in the overlap the first copy wins, nothing twice.
    #[test]
    fn overlapping_inputs_deliver_nothing_twice(
        n in 2u64..200, cut in 0.0f64..1.0, overlap in 0u64..100, window in 2u32..64,
        a in link(), b in link(), seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(model_config(window, OnGap::Wait), seed);
        let hi = ((n as f64 * cut) as u64).clamp(1, n);
        let lo = hi.saturating_sub(overlap).max(1);
        let from_a: Vec<u64> = (1..=hi).collect();
        let from_b: Vec<u64> = (lo..=n).collect();
        let keep = BTreeSet::from([hi, n]);
        let lanes = vec![
            (0, carry(&mut sim.rng, E, &from_a, a, &keep)),
            (1, carry(&mut sim.rng, E, &from_b, b, &keep)),
        ];
        let traffic = interleave(&mut sim.rng, lanes);
        sim.send_all(&traffic);
        sim.run(sim.t + 60_000 * MS);
        prop_assert_eq!(sim.sink.seqs(E), (1..=n).collect::<Vec<_>>());
        sim.check_first_copy_wins(&BTreeSet::new());
        sim.check_accounting();
        // Every seq below lo only A carried: delivered from A unless the node answered.
        for g in sim.sink.got.iter().filter(|g| g.seq < lo) {
            prop_assert!(g.input == 0 || g.flags == Flags::RETRANSMIT, "{:?}", g);
        }
    }

    /// Two epochs interleaved on the inputs (a restarted appliance while the old epoch is
    /// still being filled): each delivered once, in its own order.
    #[test]
    fn interleaved_epochs_each_in_order(
        n1 in 1u64..120, n2 in 1u64..120, window in 2u32..32,
        a in link(), b in link(), answer_loss_pct in 0u64..40, seed in any::<u64>(),
    ) {
        let mut sim = Sim::new(model_config(window, OnGap::Wait), seed);
        sim.answer_loss_pct = answer_loss_pct;
        let s1: Vec<u64> = (1..=n1).collect();
        let s2: Vec<u64> = (1..=n2).collect();
        let lanes = vec![
            (0, carry(&mut sim.rng, E, &s1, a, &BTreeSet::from([n1]))),
            (1, carry(&mut sim.rng, E + 1, &s2, b, &BTreeSet::from([n2]))),
        ];
        let traffic = interleave(&mut sim.rng, lanes);
        sim.send_all(&traffic);
        sim.run(sim.t + 60_000 * MS);
        prop_assert_eq!(sim.sink.seqs(E), s1);
        prop_assert_eq!(sim.sink.seqs(E + 1), s2);
        sim.check_first_copy_wins(&BTreeSet::new());
        sim.check_accounting();
    }

    /// The arbiter stops after `crash_at` datagrams and restarts from a checkpoint taken then
    /// (the application persisting atomically) or at the last confirmation (the state file);
    /// what the appliance released meanwhile is lost. The new arbiter resumes at
    /// delivered + 1, asks the node for the rest, and delivers it once, in order; the only
    /// seqs delivered twice are those after the checkpoint.
    #[test]
    fn a_restart_resumes_at_delivered_plus_one(
        n in 2u64..200, window in 2u32..40, a in link(), crash_frac in 0.0f64..1.0,
        down in 0u64..40, atomic in any::<bool>(), seed in any::<u64>(),
    ) {
        let cfg = model_config(window, OnGap::Wait);
        let mut sim = Sim::new(cfg.clone(), seed);
        let seqs: Vec<u64> = (1..=n).collect();
        let lane = carry(&mut sim.rng, E, &seqs, a, &BTreeSet::from([n]));
        let traffic: Vec<(usize, u64, u64)> = lane.into_iter().map(|(e, s)| (0, e, s)).collect();
        let crash_at = ((traffic.len() as f64 * crash_frac) as usize).min(traffic.len());
        let resume_at = (crash_at + down as usize).min(traffic.len());
        // Before the crash: checkpoints as the binary takes them (when confirmations are
        // pending), or the application's own at the crash.
        let mut state: Option<Checkpoint> = None;
        for &(input, epoch, seq) in &traffic[..crash_at] {
            sim.t += 20 * US;
            let id = sim.arb.inputs().nth(input).unwrap().0;
            sim.arb.on_datagram(id, &datagram(epoch, seq, Flags::EMPTY), sim.t, &mut sim.sink.f());
            sim.arb.on_tick(sim.t, &mut sim.sink.f());
            if sim.arb.pending_confirms() > 0 {
                state = Some(sim.arb.checkpoint());
            }
            sim.after_step();
        }
        if atomic {
            state = Some(sim.arb.checkpoint());
        }
        let before: Vec<u64> = sim.sink.seqs(E);
        let resumed_from = state.as_ref().and_then(|c| c.epochs.first()).map_or(0, |m| m.delivered);
        prop_assert!(resumed_from <= before.len() as u64);

        let mut after = Sim::new(cfg, seed ^ 1);
        after.t = sim.t + 100 * MS;
        if let Some(cp) = &state {
            after.arb.restore(cp).unwrap();
        }
        // What was sent while it was down is lost; the rest arrives, and then a newer
        // message (here a late copy of n) that shows the arbiter how far the epoch went.
        let mut rest = traffic[resume_at..].to_vec();
        rest.push((0, E, n));
        after.send_all(&rest);
        after.run(after.t + 60_000 * MS);
        let again: Vec<u64> = after.sink.seqs(E);
        prop_assert_eq!(again.first().copied(), (resumed_from < n).then_some(resumed_from + 1));
        prop_assert_eq!(&again, &(resumed_from + 1..=n).collect::<Vec<_>>());
        // Exactly once with an atomic checkpoint; otherwise only what followed it repeats.
        prop_assert_eq!(&before, &(1..=before.len() as u64).collect::<Vec<_>>());
        if atomic {
            prop_assert_eq!(resumed_from, before.len() as u64, "nothing twice");
        }
    }
}

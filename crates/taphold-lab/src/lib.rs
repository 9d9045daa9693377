//! The live lab's link emulator, pure part: impairment settings, the command
//! language that changes them, a seeded RNG, and the per-direction engine
//! that decides what happens to each frame (drop it, corrupt one bit,
//! duplicate it, hold it back) and when each surviving copy is due.
//!
//! Nothing here touches a socket or a clock: `Engine::process` takes "now"
//! and hands each copy with its due time to a callback, so the unit tests run
//! it deterministically. The binary (`taphold-linkemu`, src/main.rs) wraps it
//! with AF_PACKET sockets, one thread per direction and a control socket.
//!
//! `fix` reads the FIX messages and QuickFIX logs of the lab's real FIX
//! session (the gateway tests).

pub mod fix;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;

/// Ethernet header bytes never corrupted (addresses and EtherType stay
/// intact, so a corrupted frame still reaches the same receiver).
pub const ETH_HEADER_LEN: usize = 14;

/// xorshift64* — small, fast, and the same sequence for the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: any seed (0 included) gives a good state.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (never for p <= 0, always for p >= 1).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (p >= 1.0 || self.next_f64() < p)
    }

    /// Uniform in [0, n] (inclusive); 0 when n is 0.
    pub fn upto(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else if n == u64::MAX {
            self.next_u64()
        } else {
            self.next_u64() % (n + 1)
        }
    }
}

/// One direction's impairments. All zero = a faithful wire.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Settings {
    /// Fixed one-way delay added to every frame.
    pub delay_us: u64,
    /// Extra delay, uniform in [0, jitter_us]. Jitter reorders frames whose
    /// gaps are shorter than it (as netem does).
    pub jitter_us: u64,
    /// Probability a frame is dropped.
    pub loss: f64,
    /// Probability a frame is sent twice.
    pub dup: f64,
    /// Probability a frame is held back by an extra `reorder_us`.
    pub reorder: f64,
    pub reorder_us: u64,
    /// Probability one random bit beyond the Ethernet header is flipped.
    pub corrupt: f64,
    /// Drop everything, including frames already queued (a cut fibre).
    pub cut: bool,
    /// Drop the first launch of taphold backup frames whose seq is in this
    /// inclusive range; their re-launches (flagged RETRANSMIT) pass. A tap
    /// that misses particular copies, deterministically.
    pub drop_seq: Option<(u64, u64)>,
}

impl Settings {
    /// Applies `key=value` (one setting) or `clear`.
    pub fn apply(&mut self, word: &str) -> Result<(), String> {
        if word == "clear" {
            *self = Settings::default();
            return Ok(());
        }
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}`: want key=value or clear"))?;
        let int = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("`{word}`: {k} wants a whole number of microseconds"))
        };
        let prob = |v: &str| match v.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
            _ => Err(format!("`{word}`: {k} wants a probability in [0, 1]")),
        };
        match k {
            "delay_us" => self.delay_us = int(v)?,
            "jitter_us" => self.jitter_us = int(v)?,
            "reorder_us" => self.reorder_us = int(v)?,
            "loss" => self.loss = prob(v)?,
            "dup" => self.dup = prob(v)?,
            "reorder" => self.reorder = prob(v)?,
            "corrupt" => self.corrupt = prob(v)?,
            "drop_seq" => {
                self.drop_seq = if v == "none" {
                    None
                } else {
                    let (a, b) = v.split_once('-').unwrap_or((v, v));
                    match (a.parse::<u64>(), b.parse::<u64>()) {
                        (Ok(a), Ok(b)) if a <= b => Some((a, b)),
                        _ => return Err(format!("`{word}`: drop_seq wants SEQ, FROM-TO or none")),
                    }
                }
            }
            "cut" => {
                self.cut = match v {
                    "1" | "true" | "on" => true,
                    "0" | "false" | "off" => false,
                    _ => return Err(format!("`{word}`: cut wants 0 or 1")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown setting `{k}` (delay_us jitter_us loss dup reorder reorder_us corrupt cut drop_seq)"
                ))
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        let drop_seq = match self.drop_seq {
            Some((a, b)) => format!("[{a},{b}]"),
            None => "null".into(),
        };
        format!(
            "{{\"delay_us\":{},\"jitter_us\":{},\"loss\":{},\"dup\":{},\"reorder\":{},\"reorder_us\":{},\"corrupt\":{},\"cut\":{},\"drop_seq\":{drop_seq}}}",
            self.delay_us,
            self.jitter_us,
            self.loss,
            self.dup,
            self.reorder,
            self.reorder_us,
            self.corrupt,
            u8::from(self.cut)
        )
    }
}

/// Per-direction counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames read from the receiving interface.
    pub received: u64,
    /// Copies handed to the transmitting interface (duplicates included).
    pub forwarded: u64,
    /// Frames lost to `loss`, or to `cut` (on arrival or while queued).
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    /// Copies the kernel refused to send (EMSGSIZE, ENOBUFS...).
    pub tx_errors: u64,
    /// Frames the kernel dropped before we read them (PACKET_STATISTICS).
    pub kernel_drops: u64,
    /// First launches of backup frames dropped by `drop_seq`.
    pub dropped_by_seq: u64,
}

impl Counters {
    pub fn to_json(&self, queued: usize) -> String {
        format!(
            "{{\"received\":{},\"forwarded\":{},\"dropped\":{},\"duplicated\":{},\"reordered\":{},\"corrupted\":{},\"tx_errors\":{},\"kernel_drops\":{},\"dropped_by_seq\":{},\"queued\":{}}}",
            self.received,
            self.forwarded,
            self.dropped,
            self.duplicated,
            self.reordered,
            self.corrupted,
            self.tx_errors,
            self.kernel_drops,
            self.dropped_by_seq,
            queued
        )
    }
}

/// Which directions a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    A2b,
    B2a,
    Both,
}

/// A control command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `a2b|b2a|both word...` where each word is `key=value` or `clear`.
    Set(Target, Vec<String>),
    /// `stats`: counters of both directions as JSON.
    Stats,
    /// `get`: settings of both directions as JSON.
    Get,
    /// `quit`: stop the emulator.
    Quit,
}

impl Command {
    pub fn parse(line: &str) -> Result<Command, String> {
        let mut words = line.split_whitespace();
        let first = words.next().ok_or("empty command")?;
        let target = match first {
            "stats" => return Ok(Command::Stats),
            "get" => return Ok(Command::Get),
            "quit" | "stop" => return Ok(Command::Quit),
            "a2b" => Target::A2b,
            "b2a" => Target::B2a,
            "both" => Target::Both,
            _ => {
                return Err(format!(
                    "unknown command `{first}` (a2b|b2a|both SETTINGS, stats, get, quit)"
                ))
            }
        };
        let rest: Vec<String> = words.map(String::from).collect();
        if rest.is_empty() {
            return Err(format!("`{first}` needs settings (key=value ... or clear)"));
        }
        // Validate now so a bad command changes nothing.
        let mut probe = Settings::default();
        for w in &rest {
            probe.apply(w)?;
        }
        Ok(Command::Set(target, rest))
    }
}

/// Applies a whole word list to `s`, all or nothing.
pub fn apply_words(s: &mut Settings, words: &[String]) -> Result<(), String> {
    let mut next = *s;
    for w in words {
        next.apply(w)?;
    }
    *s = next;
    Ok(())
}

/// Whether `frame` is the first launch (no RETRANSMIT flag) of a taphold
/// backup frame whose seq is in the inclusive range `r`.
fn first_launch_in(frame: &[u8], r: (u64, u64)) -> bool {
    use taphold_wire::taphold::{Flags, MsgType, Packet};
    if frame.len() < ETH_HEADER_LEN || frame[12..14] != [0x88, 0xB5] {
        return false;
    }
    Packet::new_checked(&frame[ETH_HEADER_LEN..]).is_ok_and(|p| {
        p.msg_type() == MsgType::Backup
            && !p.flags().contains(Flags::RETRANSMIT)
            && (r.0..=r.1).contains(&p.seq())
    })
}

/// A frame copy waiting for its due time. Ordered by due time, then by
/// arrival, so equal due times leave in the order they came.
#[derive(Debug)]
pub struct Pending {
    pub due_ns: u64,
    pub order: u64,
    pub frame: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.due_ns == o.due_ns && self.order == o.order
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // Reversed: BinaryHeap is a max-heap, we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.due_ns, o.order).cmp(&(self.due_ns, self.order))
    }
}

/// One direction: settings, RNG, counters and the time-ordered queue.
#[derive(Debug)]
pub struct Engine {
    pub settings: Settings,
    pub counters: Counters,
    rng: Rng,
    queue: BinaryHeap<Pending>,
    order: u64,
}

impl Engine {
    pub fn new(seed: u64) -> Engine {
        Engine {
            settings: Settings::default(),
            counters: Counters::default(),
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            order: 0,
        }
    }

    /// Takes one received frame at `now_ns` and queues every copy that
    /// survives, each with its due time.
    pub fn process(&mut self, now_ns: u64, mut frame: Vec<u8>) {
        let s = self.settings;
        self.counters.received += 1;
        if s.drop_seq.is_some_and(|r| first_launch_in(&frame, r)) {
            self.counters.dropped_by_seq += 1;
            return;
        }
        if s.cut || self.rng.chance(s.loss) {
            self.counters.dropped += 1;
            return;
        }
        if frame.len() > ETH_HEADER_LEN && self.rng.chance(s.corrupt) {
            let bits = ((frame.len() - ETH_HEADER_LEN) * 8) as u64;
            let bit = self.rng.upto(bits - 1) as usize;
            frame[ETH_HEADER_LEN + bit / 8] ^= 1 << (bit % 8);
            self.counters.corrupted += 1;
        }
        let mut due = now_ns + s.delay_us * 1000 + self.rng.upto(s.jitter_us) * 1000;
        if self.rng.chance(s.reorder) {
            due += s.reorder_us * 1000;
            self.counters.reordered += 1;
        }
        if self.rng.chance(s.dup) {
            self.counters.duplicated += 1;
            self.push(due, frame.clone());
        }
        self.push(due, frame);
    }

    fn push(&mut self, due_ns: u64, frame: Vec<u8>) {
        self.order += 1;
        self.queue.push(Pending {
            due_ns,
            order: self.order,
            frame,
        });
    }

    /// Due time of the earliest queued copy.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|p| p.due_ns)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Removes the earliest copy if it is due at `now_ns`. Copies still queued
    /// when the link is cut are dropped (counted), not returned.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        loop {
            if self.queue.peek()?.due_ns > now_ns {
                return None;
            }
            let p = self.queue.pop()?;
            if self.settings.cut {
                self.counters.dropped += 1;
                continue;
            }
            return Some(p.frame);
        }
    }
}

/// `stats` reply: both directions' counters.
pub fn stats_json(a2b: &Engine, b2a: &Engine) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"a2b\":{},\"b2a\":{}}}",
        a2b.counters.to_json(a2b.queued()),
        b2a.counters.to_json(b2a.queued())
    );
    s
}

/// `get` reply: both directions' settings.
pub fn settings_json(a2b: &Engine, b2a: &Engine) -> String {
    format!(
        "{{\"a2b\":{},\"b2a\":{}}}",
        a2b.settings.to_json(),
        b2a.settings.to_json()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u32) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0xc, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14..18].copy_from_slice(&i.to_be_bytes());
        f
    }

    fn engine(words: &str, seed: u64) -> Engine {
        let mut e = Engine::new(seed);
        for w in words.split_whitespace() {
            e.settings.apply(w).unwrap();
        }
        e
    }

    /// Feeds n frames 1 µs apart, then drains everything; returns (due, frame).
    fn run(e: &mut Engine, n: u32) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for i in 0..n {
            e.process(i as u64 * 1000, frame(i));
        }
        while let Some(due) = e.next_due() {
            let f = e.pop_due(due).unwrap();
            out.push((due, f));
        }
        out
    }

    fn id(f: &[u8]) -> u32 {
        u32::from_be_bytes(f[14..18].try_into().unwrap())
    }

    #[test]
    fn rng_is_deterministic_per_seed_and_roughly_uniform() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..5)
            .scan(Rng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(0);
        let hits = (0..100_000).filter(|_| r.chance(0.25)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        assert!(!Rng::new(1).chance(0.0));
        assert!(Rng::new(1).chance(1.0));
        let mut r = Rng::new(3);
        assert!((0..10_000).all(|_| r.upto(10) <= 10));
        assert_eq!(r.upto(0), 0);
    }

    #[test]
    fn a_clear_link_forwards_everything_at_once_in_order() {
        let mut e = Engine::new(1);
        let out = run(&mut e, 100);
        assert_eq!(out.len(), 100);
        for (i, (due, f)) in out.iter().enumerate() {
            assert_eq!(*due, i as u64 * 1000);
            assert_eq!(f, &frame(i as u32));
        }
        assert_eq!(e.counters.received, 100);
        assert_eq!(e.counters.dropped, 0);
    }

    #[test]
    fn delay_shifts_due_times_and_holds_until_due() {
        let mut e = engine("delay_us=50", 1);
        e.process(1_000, frame(0));
        assert_eq!(e.next_due(), Some(51_000));
        assert!(e.pop_due(50_999).is_none());
        assert_eq!(e.pop_due(51_000), Some(frame(0)));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut e = engine("delay_us=10 jitter_us=20", 5);
        let out = run(&mut e, 1000);
        let mut extra: Vec<u64> = out
            .iter()
            .map(|(due, f)| due - id(f) as u64 * 1000 - 10_000)
            .collect();
        assert!(extra.iter().all(|x| *x <= 20_000 && x % 1000 == 0));
        extra.sort();
        extra.dedup();
        assert!(extra.len() > 15, "jitter takes many values: {extra:?}");
    }

    #[test]
    fn loss_drops_about_that_fraction_and_is_reproducible() {
        let mut e = engine("loss=0.1", 42);
        let out = run(&mut e, 10_000);
        let lost = 10_000 - out.len();
        assert!((900..1100).contains(&lost), "{lost}");
        assert_eq!(e.counters.dropped, lost as u64);
        let again = run(&mut engine("loss=0.1", 42), 10_000);
        assert_eq!(
            out.iter().map(|(_, f)| id(f)).collect::<Vec<_>>(),
            again.iter().map(|(_, f)| id(f)).collect::<Vec<_>>()
        );
        // Survivors keep their order.
        assert!(out.windows(2).all(|w| id(&w[0].1) < id(&w[1].1)));
    }

    #[test]
    fn cut_drops_new_frames_and_those_already_queued() {
        let mut e = engine("delay_us=100", 1);
        e.process(0, frame(0));
        e.settings.apply("cut=1").unwrap();
        e.process(1, frame(1));
        assert!(e.pop_due(u64::MAX).is_none());
        assert_eq!(e.counters.dropped, 2);
        assert_eq!(e.queued(), 0);
        e.settings.apply("cut=0").unwrap();
        e.process(2, frame(2));
        assert_eq!(e.pop_due(u64::MAX), Some(frame(2)));
    }

    #[test]
    fn dup_sends_a_second_identical_copy() {
        let mut e = engine("dup=1", 1);
        let out = run(&mut e, 10);
        assert_eq!(out.len(), 20);
        for pair in out.chunks(2) {
            assert_eq!(pair[0].1, pair[1].1);
        }
        assert_eq!(e.counters.duplicated, 10);
    }

    #[test]
    fn reorder_holds_frames_back_behind_later_ones() {
        let mut e = engine("reorder=0.2 reorder_us=30", 9);
        let out = run(&mut e, 1000);
        assert_eq!(out.len(), 1000);
        let ids: Vec<u32> = out.iter().map(|(_, f)| id(f)).collect();
        let inversions = ids.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 100, "{inversions}");
        assert!((150..250).contains(&e.counters.reordered));
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "nothing lost");
    }

    #[test]
    fn corrupt_flips_exactly_one_bit_beyond_the_ethernet_header() {
        let mut e = engine("corrupt=1", 3);
        let out = run(&mut e, 500);
        let mut positions = std::collections::BTreeSet::new();
        for (_, f) in &out {
            let orig = frame(id(f));
            let diff: Vec<usize> = (0..f.len()).filter(|&i| f[i] != orig[i]).collect();
            // When the id itself was hit, `orig` was rebuilt from the corrupted
            // id and then matches; otherwise exactly one byte differs.
            assert!(diff.len() <= 1, "{diff:?}");
            if let [i] = diff[..] {
                assert!(i >= ETH_HEADER_LEN);
                assert_eq!((f[i] ^ orig[i]).count_ones(), 1);
                positions.insert(i);
            }
            assert_eq!(&f[..ETH_HEADER_LEN], &orig[..ETH_HEADER_LEN]);
        }
        assert_eq!(e.counters.corrupted, 500);
        assert!(positions.len() > 30, "bits spread over the frame");
    }

    #[test]
    fn commands_parse_and_bad_ones_change_nothing() {
        assert_eq!(
            Command::parse("a2b delay_us=50 loss=0.01").unwrap(),
            Command::Set(Target::A2b, vec!["delay_us=50".into(), "loss=0.01".into()])
        );
        assert_eq!(
            Command::parse(" both cut=1 ").unwrap(),
            Command::Set(Target::Both, vec!["cut=1".into()])
        );
        assert_eq!(Command::parse("stats").unwrap(), Command::Stats);
        assert_eq!(Command::parse("get").unwrap(), Command::Get);
        assert_eq!(Command::parse("quit").unwrap(), Command::Quit);
        for bad in [
            "",
            "sideways cut=1",
            "a2b",
            "a2b loss=2",
            "a2b delay_us=-1",
            "b2a cut=maybe",
            "both speed=9",
            "both loss",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad}");
        }
        let mut s = Settings::default();
        apply_words(&mut s, &["delay_us=5".into(), "jitter_us=2".into()]).unwrap();
        assert!(apply_words(&mut s, &["delay_us=9".into(), "loss=7".into()]).is_err());
        assert_eq!(s.delay_us, 5, "all or nothing");
        apply_words(&mut s, &["clear".into(), "dup=0.5".into()]).unwrap();
        assert_eq!(
            s,
            Settings {
                dup: 0.5,
                ..Settings::default()
            }
        );
    }

    /// A taphold backup frame of `seq` in Ethernet, with or without RETRANSMIT.
    fn backup(seq: u64, retransmit: bool) -> Vec<u8> {
        use taphold_wire::taphold::{BackupRepr, Content, Flags};
        let r = BackupRepr {
            link: 0,
            flags: if retransmit {
                Flags::RETRANSMIT
            } else {
                Flags::EMPTY
            },
            stream: 1,
            epoch: 9,
            seq,
            timestamp_ns: 0,
            watermark: 0,
            src_ip: [10, 0, 0, 1],
            src_port: 1,
            payload_len: 3,
            content: Content::Full(b"abc"),
        };
        let mut f = vec![0u8; 14 + r.buffer_len()];
        f[12..14].copy_from_slice(&[0x88, 0xB5]);
        r.emit(&mut f[14..], &taphold_wire::DigestKey([7; 16]))
            .unwrap();
        f
    }

    #[test]
    fn drop_seq_drops_first_launches_in_range_only() {
        let mut e = engine("drop_seq=5-6", 1);
        for (seq, retransmit) in [(4, false), (5, false), (6, false), (5, true), (7, false)] {
            e.process(0, backup(seq, retransmit));
        }
        e.process(0, frame(5)); // not taphold
        let mut out = Vec::new();
        while let Some(f) = e.pop_due(0) {
            out.push(f);
        }
        assert_eq!(
            out.len(),
            4,
            "seq 4, the re-launch of 5, 7 and the other frame"
        );
        assert_eq!(e.counters.dropped_by_seq, 2);
        assert_eq!(e.counters.dropped, 0);
        let mut s = Settings::default();
        assert!(s.apply("drop_seq=9").is_ok());
        assert_eq!(s.drop_seq, Some((9, 9)));
        assert!(s.apply("drop_seq=none").is_ok());
        assert_eq!(s.drop_seq, None);
        for bad in ["drop_seq=7-3", "drop_seq=x", "drop_seq="] {
            assert!(s.apply(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_shapes() {
        let mut a = engine("delay_us=7 cut=1", 1);
        let b = Engine::new(2);
        a.process(0, frame(0));
        let st = stats_json(&a, &b);
        assert!(st.starts_with("{\"a2b\":{\"received\":1,\"forwarded\":0,\"dropped\":1,"));
        assert!(st.contains("\"b2a\":{\"received\":0,"));
        let g = settings_json(&a, &b);
        assert!(
            g.contains("\"delay_us\":7") && g.contains("\"cut\":1"),
            "{g}"
        );
    }
}

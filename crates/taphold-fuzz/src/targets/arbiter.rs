//! The destination's arbiter: what it makes of any sequence of datagrams on its inputs
//! (delivery headers and payloads, from the appliance, a backup node or anyone) and of
//! the passing of time.
//!
//! Input: a list of events. `0xFF, ms (u16 BE)`: time passes and the timers run. Any
//! other byte `i`: a datagram on input `i % 2`, its length (u16 BE), its bytes.
//!
//! Whatever comes: no (epoch, seq) is delivered twice, seqs of an epoch are delivered in
//! increasing order, what is delivered is a copy that came in for that (epoch, seq),
//! every PDU it sends verifies under its key, and its checkpoint reads back.

use std::collections::{HashMap, HashSet};

use taphold_arbiter::{Arbiter, ArbiterConfig, Checkpoint, OnGap, TransmitKind};
use taphold_wire::delivery;
use taphold_wire::taphold::{Packet, ResendRepr, TargetConfirmRepr};
use taphold_wire::DeliveryRepr;

use super::MAX_INPUT;
use crate::seeds::{KEY, RUN};
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "arbiter",
    run,
    seeds,
};

const TICK: u8 = 0xFF;

/// A small arbiter (every buffer is allocated at `new`, for each input).
pub fn arbiter(on_gap: OnGap) -> Arbiter {
    let ms = 1_000_000;
    let config = ArbiterConfig {
        stream: RUN.stream,
        key: KEY,
        window: 32,
        max_payload: 1536,
        max_epochs: 3,
        gap_timeout_ns: 5 * ms,
        resend_interval_ns: 5 * ms,
        resend_tries: 2,
        resend_max_count: 8,
        on_gap,
        confirm_interval_ns: 10 * ms,
        confirm_idle_ns: 3 * ms,
    };
    Arbiter::new(config, &["a", "b"]).expect("the fuzzing arbiter's config is valid")
}

pub(crate) fn datagram(input: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![input];
    v.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    v.extend_from_slice(bytes);
    v
}

pub(crate) fn tick(ms: u16) -> Vec<u8> {
    let mut v = vec![TICK];
    v.extend_from_slice(&ms.to_be_bytes());
    v
}

/// The messages' delivery datagrams in order on input a; out of order with a gap; both
/// inputs with duplicates; an epoch change; time passing between them.
pub fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let d: Vec<Vec<u8>> = m.deliveries().into_iter().take(12).collect();
    let with_seq = |mut dg: Vec<u8>, epoch: u64, seq: u64| {
        let mut h = DeliveryRepr::parse(&delivery::Packet::new_checked(&dg[..]).unwrap()).unwrap();
        h.stream = RUN.stream;
        h.epoch = epoch;
        h.seq = seq;
        dg[..delivery::HEADER_LEN].copy_from_slice(&h.to_bytes());
        dg
    };
    let in_order: Vec<u8> = d
        .iter()
        .enumerate()
        .flat_map(|(i, dg)| datagram(0, &with_seq(dg.clone(), 9, i as u64 + 1)))
        .collect();
    let mut gapped = Vec::new();
    for (i, dg) in d.iter().enumerate().rev() {
        if i != 3 {
            gapped.extend(datagram(
                (i % 2) as u8,
                &with_seq(dg.clone(), 9, i as u64 + 1),
            ));
        }
        gapped.extend(tick(2));
    }
    gapped.extend(tick(50));
    let mut both = Vec::new();
    for (i, dg) in d.iter().enumerate() {
        let dg = with_seq(dg.clone(), 9 + (i / 6) as u64, (i % 6) as u64 + 1);
        both.extend(datagram(1, &dg));
        both.extend(datagram(0, &dg));
    }
    both.extend(tick(20));
    vec![in_order, gapped, both]
}

pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    // Both gap policies, chosen by the input's length parity.
    let on_gap = [OnGap::Skip, OnGap::Wait][data.len() & 1];
    let mut a = arbiter(on_gap);
    run_on(&mut a, data);
}

/// Feeds the events of `data` to `a`, checking everything that comes out.
pub fn run_on(a: &mut Arbiter, data: &[u8]) {
    let inputs: Vec<_> = a.inputs().map(|(id, _)| id).collect();
    let mut now = 1_000_000_000u64;
    // Every copy that came in, by (epoch, seq); what was delivered; the last seq per epoch.
    let mut copies: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    let mut delivered: HashSet<(u64, u64)> = HashSet::new();
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut check = |copies: &HashMap<(u64, u64), Vec<Vec<u8>>>,
                     d: &taphold_arbiter::Delivery<'_>| {
        assert_eq!(d.stream, RUN.stream);
        assert!(
            delivered.insert((d.epoch, d.seq)),
            "epoch {} seq {} delivered twice",
            d.epoch,
            d.seq
        );
        let prev = last.insert(d.epoch, d.seq).unwrap_or(0);
        assert!(
            d.seq > prev,
            "epoch {}: seq {} delivered after {prev}",
            d.epoch,
            d.seq
        );
        let came = copies
            .get(&(d.epoch, d.seq))
            .expect("delivered a seq that never came");
        assert!(
            came.iter().any(|p| p == d.payload),
            "delivered a payload that never came"
        );
    };

    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        if tail.len() < 2 {
            break;
        }
        let n = usize::from(u16::from_be_bytes([tail[0], tail[1]]));
        let tail = &tail[2..];
        if op == TICK {
            now += n as u64 * 1_000_000;
            a.on_tick(now, &mut |d| check(&copies, d));
            rest = tail;
        } else {
            let bytes = &tail[..n.min(tail.len())];
            rest = &tail[bytes.len()..];
            if let Ok(p) = delivery::Packet::new_checked(bytes) {
                if let Ok(h) = DeliveryRepr::parse(&p) {
                    copies
                        .entry((h.epoch, h.seq))
                        .or_default()
                        .push(p.payload().to_vec());
                }
            }
            now += 1_000;
            let input = inputs[usize::from(op) % inputs.len()];
            a.on_datagram(input, bytes, now, &mut |d| check(&copies, d));
        }
        a.drain_transmits(|kind, pdu| {
            let p = Packet::new_checked(pdu).expect("the arbiter sends a PDU that checks");
            match kind {
                TransmitKind::Resend => {
                    let r = ResendRepr::parse(&p, &KEY).expect("a resend request verifies");
                    assert_eq!(r.stream, RUN.stream);
                }
                TransmitKind::TargetConfirm => {
                    let t =
                        TargetConfirmRepr::parse(&p, &KEY).expect("a target confirmation verifies");
                    assert_eq!(t.stream, RUN.stream);
                    assert!(t.skipped <= t.seq && t.seq <= t.highest_seen.max(t.seq));
                }
            }
        });
        while a.next_event().is_some() {}
    }
    let cp = a.checkpoint();
    assert_eq!(
        Checkpoint::decode(&cp.encode(), RUN.stream).as_ref(),
        Ok(&cp)
    );
    for m in &cp.epochs {
        if let Some(&seq) = last.get(&m.epoch) {
            assert!(
                seq <= m.delivered,
                "epoch {}: delivered {seq} past the checkpoint's {}",
                m.epoch,
                m.delivered
            );
        }
    }
}

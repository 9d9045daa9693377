//! Helpers shared by the arbiter's tests: datagrams, a config, a recording sink, the
//! emitted PDUs parsed back with the key.
#![allow(dead_code)]

use taphold_arbiter::{Arbiter, ArbiterConfig, Delivery, OnGap, TransmitKind};
use taphold_wire::taphold::{Packet, ResendRepr, TargetConfirmRepr};
use taphold_wire::{DeliveryRepr, DigestKey, Flags};

pub const STREAM: u32 = 7;
pub const MS: u64 = 1_000_000;

pub fn key() -> DigestKey {
    DigestKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap()
}

/// 1 ms gap timeout, 5 ms between tries, 3 tries, window 16, 100 ms / 10 ms confirms.
pub fn config() -> ArbiterConfig {
    ArbiterConfig {
        stream: STREAM,
        key: key(),
        window: 16,
        max_payload: 64,
        max_epochs: 2,
        gap_timeout_ns: MS,
        resend_interval_ns: 5 * MS,
        resend_tries: 3,
        resend_max_count: 1024,
        on_gap: OnGap::Wait,
        confirm_interval_ns: 100 * MS,
        confirm_idle_ns: 10 * MS,
    }
}

/// The payload a test message carries: its epoch and seq, so a mix-up shows.
pub fn payload(epoch: u64, seq: u64) -> Vec<u8> {
    format!("e{epoch}s{seq}").into_bytes()
}

pub fn datagram_with(epoch: u64, seq: u64, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let h = DeliveryRepr {
        flags,
        stream: STREAM,
        epoch,
        seq,
        src_ip: [10, 0, 0, 9],
        src_port: 40000,
        release_ns: seq.wrapping_mul(1000),
    };
    [&h.to_bytes()[..], payload].concat()
}

pub fn datagram(epoch: u64, seq: u64, flags: Flags) -> Vec<u8> {
    datagram_with(epoch, seq, flags, &payload(epoch, seq))
}

/// One delivered message, as the application saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub epoch: u64,
    pub seq: u64,
    pub input: usize,
    pub flags: Flags,
    pub payload: Vec<u8>,
}

#[derive(Default)]
pub struct Sink {
    pub got: Vec<Got>,
}

impl Sink {
    pub fn f(&mut self) -> impl FnMut(&Delivery<'_>) + '_ {
        |m: &Delivery<'_>| {
            assert_eq!(m.stream, STREAM);
            self.got.push(Got {
                epoch: m.epoch,
                seq: m.seq,
                input: m.input.index(),
                flags: m.flags,
                payload: m.payload.to_vec(),
            })
        }
    }

    pub fn seqs(&self, epoch: u64) -> Vec<u64> {
        self.got
            .iter()
            .filter(|g| g.epoch == epoch)
            .map(|g| g.seq)
            .collect()
    }
}

/// Everything emitted since the last drain, parsed back with the key (a PDU that does not
/// verify fails the test).
pub fn drain(arb: &mut Arbiter) -> (Vec<ResendRepr>, Vec<TargetConfirmRepr>) {
    let (mut r, mut c) = (Vec::new(), Vec::new());
    arb.drain_transmits(|kind, bytes| {
        let p = Packet::new_checked(bytes).expect("a valid PDU");
        match kind {
            TransmitKind::Resend => r.push(ResendRepr::parse(&p, &key()).expect("keyed resend")),
            TransmitKind::TargetConfirm => {
                c.push(TargetConfirmRepr::parse(&p, &key()).expect("keyed confirmation"))
            }
        }
    });
    (r, c)
}

/// The (seq, count) of each resend request.
pub fn ranges(r: &[ResendRepr]) -> Vec<(u64, u32)> {
    r.iter().map(|r| (r.seq, r.count)).collect()
}

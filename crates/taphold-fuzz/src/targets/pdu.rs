//! Every taphold PDU: the common view's checks and each type's Repr.
//!
//! A mutated PDU almost never carries a matching keyed digest, so each input is tried
//! twice: as it is (the checks, then `BadDigest`), and re-sealed with the fuzzing key
//! when it passes the checks, which takes the fuzzer into every Repr's reading. A Repr
//! read must emit back to exactly the bytes it was read from.

use taphold_wire::taphold::{
    AckRepr, ConfirmRepr, FlowAckRepr, HeartbeatRepr, MsgType, Packet, ResendRepr,
    TargetConfirmRepr, DIGEST_LEN, HEADER_LEN,
};
use taphold_wire::{BackupRepr, Content, WireError};

use crate::seeds::KEY;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "pdu",
    run,
    seeds,
};

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    m.pdus()
}

pub fn run(data: &[u8]) {
    let checked = Packet::new_checked(data);
    let verdict = parse_all(data);
    let Ok(p) = checked else {
        // Every parse refuses with the view's own verdict.
        let e = checked.unwrap_err();
        assert!(verdict.iter().all(|v| *v == Err(e)), "{verdict:?} vs {e:?}");
        return;
    };
    let total = p.total_len();
    assert!(
        total <= data.len(),
        "a checked PDU claims {total} of {} bytes",
        data.len()
    );
    assert_eq!(p.body().len() + HEADER_LEN + DIGEST_LEN, total);
    // Nothing past the PDU (Ethernet padding) changes any verdict.
    assert_eq!(
        parse_all(&data[..total]),
        verdict,
        "bytes past the PDU changed a parse"
    );
    check_verdicts(&p, &verdict, p.verify_digest(&KEY).is_ok());

    // Re-sealed: the type's parse must succeed and emit back to the same bytes.
    let mut sealed = data[..total].to_vec();
    // Version 4: the key id (byte 4) names the key that sealed the PDU.
    sealed[4] = KEY.id();
    Packet::new_unchecked(&mut sealed[..]).fill_digest(&KEY);
    let p = Packet::new_checked(&sealed[..]).expect("re-sealing keeps the checks");
    let verdict = parse_all(&sealed);
    check_verdicts(&p, &verdict, true);
    // An ENCRYPTED backup frame carries ciphertext: only the payload key could
    // emit it again (the aead round trip has its own tests in taphold-wire).
    if !p.flags().contains(taphold_wire::Flags::ENCRYPTED) {
        let mut out = vec![0u8; total];
        let digest = reemit(&sealed, &mut out);
        assert_eq!(
            out,
            sealed,
            "a {:?} emits back to other bytes",
            p.msg_type()
        );
        assert_eq!(digest, p.digest_field());
    }
    // Every prefix of a valid PDU is refused as truncated (the order of the checks).
    for n in 0..total {
        assert_eq!(
            Packet::new_checked(&sealed[..n]).map(|_| ()),
            Err(WireError::Truncated),
            "a {n}-byte prefix of a {total}-byte PDU"
        );
    }
    if p.msg_type() == MsgType::Backup {
        let r = BackupRepr::parse_verified_earlier(&p).expect("checked backup frame");
        assert_eq!(Ok(r), BackupRepr::parse(&p, &KEY));
        if let Content::Full(payload) = r.content {
            assert_eq!(payload.len(), usize::from(r.payload_len));
        }
        assert_eq!(r.buffer_len(), total);
        // What backup_frame_len is given: the content's length (for fix-compact the
        // compact encoding's, not payload_len), and an ENCRYPTED frame's tag after it.
        let content_len = match r.content {
            Content::Full(p) => p.len(),
            Content::Tcp(s) | Content::FixCompact(s) => s.content.len(),
            Content::Digest(_) => usize::from(r.payload_len),
        };
        let tag = if r.flags.contains(taphold_wire::Flags::ENCRYPTED) {
            taphold_wire::payload::TAG_LEN
        } else {
            0
        };
        assert_eq!(
            taphold_wire::backup_frame_len(content_len, r.content.mode()) + tag,
            total
        );
    }
}

/// Each Repr's verdict, in a fixed order: backup, heartbeat, ack, confirmation, target
/// confirmation, resend request.
fn parse_all(data: &[u8]) -> [Result<(), WireError>; 7] {
    let p = Packet::new_unchecked(data);
    [
        BackupRepr::parse(&p, &KEY).map(|_| ()),
        HeartbeatRepr::parse(&p, &KEY).map(|_| ()),
        AckRepr::parse(&p, &KEY).map(|_| ()),
        ConfirmRepr::parse(&p, &KEY).map(|_| ()),
        TargetConfirmRepr::parse(&p, &KEY).map(|_| ()),
        ResendRepr::parse(&p, &KEY).map(|_| ()),
        FlowAckRepr::parse(&p, &KEY).map(|_| ()),
    ]
}

fn index_of(t: MsgType) -> usize {
    match t {
        MsgType::Backup => 0,
        MsgType::Heartbeat => 1,
        MsgType::Ack => 2,
        MsgType::Confirm => 3,
        MsgType::TargetConfirm => 4,
        MsgType::Resend => 5,
        MsgType::FlowAck => 6,
    }
}

/// For a checked PDU: every other type's parse says `WrongType`; its own succeeds
/// exactly when the digest matches.
fn check_verdicts(p: &Packet<&[u8]>, verdict: &[Result<(), WireError>; 7], digest_ok: bool) {
    let own = index_of(p.msg_type());
    for (i, v) in verdict.iter().enumerate() {
        if i == own {
            let want = if digest_ok {
                Ok(())
            } else {
                Err(WireError::BadDigest)
            };
            assert_eq!(*v, want, "{:?}", p.msg_type());
        } else {
            assert_eq!(*v, Err(WireError::WrongType));
        }
    }
}

/// Parses a sealed, checked PDU as its type and emits it into `out`.
fn reemit(sealed: &[u8], out: &mut [u8]) -> u64 {
    let p = Packet::new_checked(sealed).unwrap();
    let r = match p.msg_type() {
        MsgType::Backup => BackupRepr::parse(&p, &KEY).and_then(|r| {
            assert_eq!(r.buffer_len(), out.len());
            r.emit(out, &KEY)
        }),
        MsgType::Heartbeat => HeartbeatRepr::parse(&p, &KEY).and_then(|r| r.emit(out, &KEY)),
        MsgType::Ack => AckRepr::parse(&p, &KEY).and_then(|r| r.emit(out, &KEY)),
        MsgType::Confirm => ConfirmRepr::parse(&p, &KEY).and_then(|r| r.emit(out, &KEY)),
        MsgType::TargetConfirm => {
            TargetConfirmRepr::parse(&p, &KEY).and_then(|r| r.emit(out, &KEY))
        }
        MsgType::Resend => ResendRepr::parse(&p, &KEY).and_then(|r| {
            assert!(!r.seqs().is_empty() && *r.seqs().start() == r.seq);
            r.emit(out, &KEY)
        }),
        MsgType::FlowAck => FlowAckRepr::parse(&p, &KEY).and_then(|r| r.emit(out, &KEY)),
    };
    r.unwrap_or_else(|e| panic!("a sealed {:?} does not re-emit: {e:?}", p.msg_type()))
}

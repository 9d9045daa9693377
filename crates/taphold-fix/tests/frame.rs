//! FIX framing: messages, fields, every way of being wrong, resynchronisation.

mod common;

use common::*;
use proptest::prelude::*;
use taphold_fix::frame::{split, FrameError, Message, Piece};

#[test]
fn a_literal_logon_parses() {
    let m = Message::parse_at(LOGON_42).unwrap();
    assert_eq!(m.len(), LOGON_42.len());
    assert_eq!(m.begin_string(), b"FIX.4.2");
    assert_eq!(m.get(35), Some(&b"A"[..]));
    assert_eq!(m.get(108), Some(&b"30"[..]));
    assert_eq!(m.get(10), None, "CheckSum is not a body field");
    let s = m.summary();
    assert_eq!(s.msg_seq_num(), Some(1));
    assert_eq!(s.sender_comp_id, Some(&b"CLIENT1"[..]));
    assert_eq!(s.target_comp_id, Some(&b"EXECUTOR"[..]));
    assert_eq!(s.sending_time, Some(&b"20261130-07:38:47.123"[..]));
    assert_eq!(s.cl_ord_id, None);
    assert!(!s.poss_dup());
    // Bytes after the message are not part of it.
    let mut two = LOGON_42.to_vec();
    two.extend_from_slice(b"8=FIX");
    assert_eq!(Message::parse_at(&two).unwrap().raw(), LOGON_42);
}

#[test]
fn the_reported_fields_of_an_order() {
    let raw = new_order_42(7, "ORD-7");
    let s = Message::parse_at(&raw).unwrap().summary();
    assert_eq!(s.msg_type, Some(&b"D"[..]));
    assert_eq!(s.msg_seq_num(), Some(7));
    assert_eq!(s.cl_ord_id, Some(&b"ORD-7"[..]));
    assert_eq!(s.side, Some(&b"1"[..]));
    assert_eq!(s.symbol, Some(&b"IBM"[..]));
    assert_eq!(s.order_qty, Some(&b"100"[..]));
    assert_eq!(s.price, Some(&b"101.25"[..]));
    assert_eq!(s.ord_type, Some(&b"2"[..]));
    assert_eq!(s.time_in_force, Some(&b"0"[..]));
    assert_eq!(s.sending_time, Some(&b"20261130-07:38:48.007"[..]));
    let raw = make("FIX.4.4", "35=D|34=9|43=Y|122=20261130-07:00:00.000|11=X|");
    let s = Message::parse_at(&raw).unwrap().summary();
    assert!(s.poss_dup());
    assert_eq!(s.orig_sending_time, Some(&b"20261130-07:00:00.000"[..]));
}

#[test]
fn every_prefix_is_truncated() {
    for m in [
        LOGON_42.to_vec(),
        new_order_42(2, "A"),
        exec_report_42(3, "A"),
    ] {
        for cut in 0..m.len() {
            assert_eq!(
                Message::parse_at(&m[..cut]).err(),
                Some(FrameError::Truncated),
                "cut at {cut}"
            );
        }
    }
}

fn replace(m: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = m.windows(from.len()).position(|w| w == from).unwrap();
    [&m[..i], to, &m[i + from.len()..]].concat()
}

#[test]
fn bad_body_length() {
    let follow = new_order_42(2, "B");
    for bad in ["69", "71", "0", "x", "", "1234567890", "-70"] {
        let mut m = replace(LOGON_42, b"9=70\x01", format!("9={bad}\x01").as_bytes());
        m.extend_from_slice(&follow);
        assert_eq!(
            Message::parse_at(&m).err(),
            Some(FrameError::BadBodyLength),
            "9={bad}"
        );
    }
    // BodyLength missing, or not second.
    let m = replace(LOGON_42, b"9=70\x01", b"");
    assert_eq!(Message::parse_at(&m).err(), Some(FrameError::BadBodyLength));
    let m = replace(LOGON_42, b"9=70\x0135=A\x01", b"35=A\x019=70\x01");
    assert_eq!(Message::parse_at(&m).err(), Some(FrameError::BadBodyLength));
}

#[test]
fn bad_checksum() {
    for bad in [&b"10=093\x01"[..], b"10=92\x01x", b"10=09a\x01", b"10=092x"] {
        let m = replace(LOGON_42, b"10=092\x01", bad);
        assert_eq!(
            Message::parse_at(&m).err(),
            Some(FrameError::BadCheckSum),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // A flipped byte anywhere in the body.
    let mut m = LOGON_42.to_vec();
    m[30] ^= 0x20;
    assert_eq!(Message::parse_at(&m).err(), Some(FrameError::BadCheckSum));
}

#[test]
fn garbage() {
    for g in [&b"X"[..], b"9=FIX.4.2\x01", b"8=\x01", b"\x01\x01"] {
        assert_eq!(Message::parse_at(g).err(), Some(FrameError::Garbage));
    }
}

#[test]
fn split_resynchronises_and_names_each_fault() {
    let a = new_order_42(2, "A");
    let b = new_order_42(3, "B");
    let c = exec_report_42(4, "C");
    let mut bad_ck = new_order_42(5, "D");
    let n = bad_ck.len();
    bad_ck[n - 2] = b'9' - (bad_ck[n - 2] == b'9') as u8;
    let bad_len = replace(&new_order_42(6, "E"), b"9=", b"9=1");
    let mut stream = Vec::new();
    stream.extend_from_slice(b"junk");
    stream.extend_from_slice(&a);
    stream.extend_from_slice(&bad_ck);
    stream.extend_from_slice(&b);
    stream.extend_from_slice(&bad_len);
    stream.extend_from_slice(&c);
    stream.extend_from_slice(&a[..20]);
    let pieces: Vec<Piece> = split(&stream).collect();
    let kinds: Vec<String> = pieces
        .iter()
        .map(|p| match p {
            Piece::Message { message, .. } => format!(
                "msg {}",
                String::from_utf8_lossy(message.summary().cl_ord_id.unwrap())
            ),
            Piece::Bad { error, .. } => error.name().to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "garbage",
            "msg A",
            "bad_checksum",
            "msg B",
            "bad_body_length",
            "msg C",
            "truncated"
        ]
    );
    // Every byte in exactly one piece, in order.
    let mut at = 0;
    for p in &pieces {
        let r = match p {
            Piece::Message { at, message } => *at..*at + message.len(),
            Piece::Bad { range, .. } => range.clone(),
        };
        assert_eq!(r.start, at);
        at = r.end;
    }
    assert_eq!(at, stream.len());
}

proptest! {
    #[test]
    fn split_covers_any_bytes_and_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                (1u32..1000).prop_map(|s| new_order_42(s, "P")),
                (1u32..1000).prop_map(heartbeat_44),
                proptest::collection::vec(any::<u8>(), 0..40),
            ],
            0..8,
        ),
        cut in any::<proptest::sample::Index>(),
    ) {
        let stream: Vec<u8> = parts.concat();
        let stream = &stream[..cut.index(stream.len() + 1)];
        let mut at = 0;
        for p in split(stream) {
            let r = match p {
                Piece::Message { at, message } => {
                    // What split calls a message re-parses alone.
                    prop_assert!(Message::parse_at(message.raw()).is_ok());
                    at..at + message.len()
                }
                Piece::Bad { range, .. } => range,
            };
            prop_assert_eq!(r.start, at);
            prop_assert!(r.end > r.start);
            at = r.end;
        }
        prop_assert_eq!(at, stream.len());
    }

    #[test]
    fn whole_messages_all_come_back(seqs in proptest::collection::vec(1u32..100_000, 1..10)) {
        let msgs: Vec<Vec<u8>> = seqs.iter().map(|&s| new_order_44(s, &format!("C{s}"))).collect();
        let stream = msgs.concat();
        let got: Vec<Vec<u8>> = split(&stream)
            .map(|p| match p {
                Piece::Message { message, .. } => Ok(message.raw().to_vec()),
                Piece::Bad { error, .. } => Err(error),
            })
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(got, msgs);
    }
}

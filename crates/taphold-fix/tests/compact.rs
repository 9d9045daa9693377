//! The compact encoding of content mode 3: round trips through rebuild, refusals, and
//! reading bad compact bytes.

mod common;

use common::*;
use proptest::prelude::*;
use taphold_fix::compact::{encode_compact, rebuild, records, CompactError, Resend, KEPT_TAGS};
use taphold_fix::frame::{FrameError, Message, Summary};

fn encode(seg: &[u8]) -> Result<Vec<u8>, CompactError> {
    let mut out = vec![0u8; seg.len() * 2 + 64];
    let n = encode_compact(seg, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// The kept fields of a summary, to compare original and rebuilt.
fn kept(s: &Summary) -> Vec<Option<Vec<u8>>> {
    [
        Some(s.begin_string),
        s.msg_type,
        s.msg_seq_num_raw,
        s.sender_comp_id,
        s.target_comp_id,
        s.cl_ord_id,
        s.side,
        s.symbol,
        s.order_qty,
        s.price,
        s.ord_type,
        s.time_in_force,
        s.sending_time,
        s.poss_dup_flag,
        s.orig_sending_time,
    ]
    .iter()
    .map(|v| v.map(<[u8]>::to_vec))
    .collect()
}

fn realistic() -> Vec<Vec<u8>> {
    vec![
        LOGON_42.to_vec(),
        new_order_42(2, "ORD-2"),
        exec_report_42(2, "ORD-2"),
        heartbeat_44(17),
        new_order_44(18, "CLORD-000018"),
        make("FIX.4.4", "35=F|34=19|49=CLIENT1|52=20261130-07:40:00.000|56=EXECUTOR|11=C2|37=X|38=5|41=C1|54=1|55=AAPL|60=20261130-07:40:00.000|"),
    ]
}

#[test]
fn rebuilt_messages_equal_the_originals_in_every_kept_field() {
    let msgs = realistic();
    let segment = msgs.concat();
    let compact = encode(&segment).unwrap();
    assert!(compact.len() < segment.len(), "compact is smaller");
    let recs: Vec<_> = records(&compact).collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), msgs.len());
    let mut total = 0usize;
    for (orig, rec) in msgs.iter().zip(&recs) {
        assert_eq!(usize::from(rec.orig_len), orig.len());
        total += usize::from(rec.orig_len);
        let o = Message::parse_at(orig).unwrap();
        // The record reports what the original says...
        assert_eq!(kept(&rec.summary()), kept(&o.summary()));
        // ...and the rebuilt message is valid FIX (BodyLength, CheckSum) with the same
        // kept fields, in the same order, and nothing else.
        let rebuilt = rebuild(rec, None);
        let r = Message::parse_at(&rebuilt).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.len(), rebuilt.len());
        assert_eq!(kept(&r.summary()), kept(&o.summary()));
        let tags = |m: &Message| -> Vec<u32> { m.fields().flatten().map(|(t, _)| t).collect() };
        let want: Vec<u32> = tags(&o)
            .into_iter()
            .filter(|t| KEPT_TAGS.contains(t))
            .collect();
        let mut got = tags(&r);
        got.sort_unstable();
        let mut want_sorted = want.clone();
        want_sorted.sort_unstable();
        assert_eq!(got, want_sorted);
    }
    assert_eq!(total, segment.len());
}

#[test]
fn the_rebuilt_order_is_what_quickfix_would_send() {
    let orig = new_order_42(2, "ORD-2");
    let compact = encode(&orig).unwrap();
    let rec = records(&compact).next().unwrap().unwrap();
    let want = make(
        "FIX.4.2",
        "35=D|49=CLIENT1|56=EXECUTOR|34=2|52=20261130-07:38:48.002|11=ORD-2|38=100|40=2|44=101.25|54=1|55=IBM|59=0|",
    );
    assert_eq!(
        String::from_utf8_lossy(&rebuild(&rec, None)),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn a_resend_is_marked_possible_duplicate() {
    let orig = new_order_44(18, "C18");
    let compact = encode(&orig).unwrap();
    let rec = records(&compact).next().unwrap().unwrap();
    let r = rebuild(
        &rec,
        Some(Resend {
            sending_time: Some(b"20261130-08:00:00.000"),
        }),
    );
    let m = Message::parse_at(&r).unwrap();
    let s = m.summary();
    assert!(s.poss_dup());
    assert_eq!(s.orig_sending_time, Some(&b"20261130-07:38:49.250"[..]));
    assert_eq!(s.sending_time, Some(&b"20261130-08:00:00.000"[..]));
    assert_eq!(s.msg_seq_num(), Some(18));
    // Without a new time the original's is kept; a message that was already a resend
    // keeps its own OrigSendingTime.
    let r = rebuild(&rec, Some(Resend { sending_time: None }));
    let s2 = Message::parse_at(&r).unwrap().summary();
    assert_eq!(s2.sending_time, s2.orig_sending_time);
    let dup = make("FIX.4.4", "35=D|34=3|43=Y|52=T2|122=T1|11=Z|");
    let c = encode(&dup).unwrap();
    let rec = records(&c).next().unwrap().unwrap();
    let r = rebuild(
        &rec,
        Some(Resend {
            sending_time: Some(b"T3"),
        }),
    );
    let s3 = Message::parse_at(&r).unwrap().summary();
    assert_eq!(
        (s3.orig_sending_time, s3.sending_time),
        (Some(&b"T1"[..]), Some(&b"T3"[..]))
    );
}

#[test]
fn a_segment_that_is_not_whole_messages_is_refused() {
    let a = new_order_42(2, "A");
    let b = new_order_42(3, "B");
    let both = [a.clone(), b.clone()].concat();
    assert_eq!(encode(b""), Err(CompactError::Empty));
    // Cut anywhere but at a message boundary.
    for cut in 1..both.len() {
        let r = encode(&both[..cut]);
        if cut == a.len() {
            assert!(r.is_ok());
        } else {
            assert_eq!(
                r,
                Err(CompactError::NotWhole(FrameError::Truncated)),
                "cut {cut}"
            );
        }
    }
    // Starting inside a message (the tail of one, then a whole one).
    assert_eq!(
        encode(&both[5..]),
        Err(CompactError::NotWhole(FrameError::Garbage))
    );
    assert_eq!(
        encode(&[b"x".as_slice(), &a].concat()),
        Err(CompactError::NotWhole(FrameError::Garbage))
    );
    let mut bad = both.clone();
    let n = bad.len();
    bad[n - 3] = if bad[n - 3] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        encode(&bad),
        Err(CompactError::NotWhole(FrameError::BadCheckSum))
    );
    // A kept value longer than 255 bytes.
    let long = make("FIX.4.2", &format!("35=D|34=1|11={}|", "x".repeat(256)));
    assert_eq!(encode(&long), Err(CompactError::TooLong));
    // An output too small, at every size.
    let mut out = vec![0u8; 400];
    let n = encode_compact(&both, &mut out).unwrap();
    for room in 0..n {
        assert_eq!(
            encode_compact(&both, &mut out[..room]),
            Err(CompactError::NoRoom)
        );
    }
}

#[test]
fn bad_compact_bytes_are_malformed() {
    let c = encode(&new_order_42(2, "A")).unwrap();
    for cut in 1..c.len() {
        let r: Vec<_> = records(&c[..cut]).collect();
        assert_eq!(r.last(), Some(&Err(CompactError::Malformed)), "cut {cut}");
    }
    let mut wrong_tag = c.clone();
    wrong_tag[4] = 9; // BodyLength is never kept
    assert_eq!(
        records(&wrong_tag).next(),
        Some(Err(CompactError::Malformed))
    );
    let mut zero_len = c.clone();
    zero_len[0] = 0;
    zero_len[1] = 0;
    assert_eq!(
        records(&zero_len).next(),
        Some(Err(CompactError::Malformed))
    );
}

proptest! {
    #[test]
    fn any_compact_bytes_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for r in records(&bytes).flatten() {
            let m = rebuild(&r, None);
            prop_assert!(Message::parse_at(&m).is_ok());
        }
    }

    #[test]
    fn round_trip_any_orders(orders in proptest::collection::vec((1u32..1_000_000, "[A-Za-z0-9-]{1,20}"), 1..8)) {
        let msgs: Vec<Vec<u8>> = orders.iter().map(|(s, id)| new_order_44(*s, id)).collect();
        let seg = msgs.concat();
        let c = encode(&seg).unwrap();
        // Always room in a buffer the size of the segment.
        prop_assert!(c.len() < seg.len());
        let mut exact = vec![0u8; seg.len()];
        prop_assert_eq!(encode_compact(&seg, &mut exact), Ok(c.len()));
        let recs: Vec<_> = records(&c).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(recs.len(), msgs.len());
        for (o, r) in msgs.iter().zip(&recs) {
            let rebuilt = rebuild(r, None);
            let m = Message::parse_at(&rebuilt).unwrap();
            prop_assert_eq!(kept(&m.summary()), kept(&Message::parse_at(o).unwrap().summary()));
        }
    }
}

#[test]
fn a_raw_message_made_a_possible_duplicate_keeps_every_field() {
    use taphold_fix::resend::poss_dup_copy;
    let orig = new_order_42(5, "ORD-5");
    let o = Message::parse_at(&orig).unwrap();
    let copy = poss_dup_copy(&o, Some(b"20261130-09:00:00.000"));
    let c = Message::parse_at(&copy).unwrap_or_else(|e| panic!("{e}"));
    let tags = |m: &Message| -> Vec<(u32, Vec<u8>)> {
        m.fields().flatten().map(|(t, v)| (t, v.to_vec())).collect()
    };
    let mut want = tags(&o);
    // 52 replaced; 43 and 122 right after 34.
    for f in want.iter_mut().filter(|f| f.0 == 52) {
        f.1 = b"20261130-09:00:00.000".to_vec();
    }
    let at = want.iter().position(|f| f.0 == 34).unwrap() + 1;
    want.insert(at, (43, b"Y".to_vec()));
    want.insert(at + 1, (122, b"20261130-07:38:48.005".to_vec()));
    assert_eq!(tags(&c), want);
    // Already a resend: 43 not doubled, its 122 kept.
    let again = poss_dup_copy(&c, None);
    let a = Message::parse_at(&again).unwrap();
    assert_eq!(tags(&a), want);
}

//! TCP byte-stream reassembly: order, retransmissions, overlaps, conflicts, holes,
//! the SYN, wrapping sequence numbers, opaque (compact) ranges.

use proptest::prelude::*;
use taphold_fix::stream::{seq_ge, Reassembler, Run, SegmentOutcome};

fn bytes_of(r: &taphold_fix::Reassembled) -> Vec<u8> {
    r.runs
        .iter()
        .flat_map(|x| match x {
            Run::Bytes { data, .. } => data.clone(),
            _ => panic!("not all bytes: {x:?}"),
        })
        .collect()
}

#[test]
fn in_order_retransmitted_and_out_of_order() {
    let text = b"0123456789abcdefghij";
    let mut r = Reassembler::new();
    r.push(1000, true, b""); // SYN at ISN 1000: data from 1001
    r.push(1011, false, &text[10..20]); // out of order
    r.push(1001, false, &text[0..10]);
    r.push(1001, false, &text[0..10]); // retransmission
    r.push(1006, false, &text[5..15]); // overlap, same bytes
    let out = r.finish().unwrap();
    assert_eq!(out.start_seq, 1001);
    assert_eq!(out.end_seq, 1021);
    assert_eq!(bytes_of(&out), text);
    assert_eq!(out.duplicate_bytes, 20);
    assert!(out.conflicts.is_empty());
    assert_eq!(out.holes().count(), 0);
}

#[test]
fn first_copy_wins_and_conflicts_are_named() {
    let mut r = Reassembler::new();
    r.push(100, false, b"AAAAAAAAAA");
    r.push(105, false, b"AAXXABBBBB"); // 105..115: 107,108 differ; 110.. new
    let out = r.finish().unwrap();
    assert_eq!(bytes_of(&out), b"AAAAAAAAAABBBBB");
    assert_eq!(out.conflicts, vec![(107, 2)]);
    assert_eq!(out.duplicate_bytes, 5);
}

#[test]
fn holes_are_named_by_sequence_range() {
    let mut r = Reassembler::new();
    r.push(5000, false, b"abc");
    r.push(5010, false, b"def");
    r.push(5020, false, b"g");
    let out = r.finish().unwrap();
    assert_eq!(
        out.holes().collect::<Vec<_>>(),
        vec![(5003, 5010), (5013, 5020)]
    );
    assert_eq!(out.held_bytes(), 7);
    assert_eq!(
        out.runs[0],
        Run::Bytes {
            seq: 5000,
            data: b"abc".to_vec()
        }
    );
    // Without a SYN the stream starts at the lowest sequence number, even if it came
    // later; with a SYN, a hole right after it is named.
    let mut r = Reassembler::new();
    r.push(5010, false, b"def");
    r.push(5000, false, b"abc");
    assert_eq!(r.finish().unwrap().start_seq, 5000);
    let mut r = Reassembler::new();
    r.push(4999, true, b"");
    r.push(5010, false, b"def");
    let out = r.finish().unwrap();
    assert_eq!(out.holes().collect::<Vec<_>>(), vec![(5000, 5010)]);
}

#[test]
fn sequence_numbers_wrap() {
    let mut r = Reassembler::new();
    let isn = u32::MAX - 4;
    r.push(isn, true, b"");
    r.push(isn.wrapping_add(1), false, b"0123456789"); // crosses 2^32
    r.push(6, false, b"abcdef"); // (2^32 - 4) + 10 = 6 after the wrap
    let out = r.finish().unwrap();
    assert_eq!(out.start_seq, u32::MAX - 3);
    assert_eq!(out.end_seq, 12);
    assert_eq!(bytes_of(&out), b"0123456789abcdef");
    assert!(seq_ge(3, u32::MAX - 3));
    assert!(!seq_ge(u32::MAX - 3, 3));
}

#[test]
fn data_before_the_syn_is_ignored() {
    let mut r = Reassembler::new();
    r.push(100, true, b"");
    assert_eq!(r.push(90, false, b"old"), SegmentOutcome::BeforeStart);
    r.push(101, false, b"new");
    let out = r.finish().unwrap();
    assert_eq!(bytes_of(&out), b"new");
    assert_eq!(out.before_start, 1);
}

#[test]
fn opaque_ranges_take_part_in_first_copy_wins() {
    let mut r = Reassembler::new();
    r.push_opaque(1000, 50, 7); // a compact message: 50 bytes
    r.push(1000, false, &[b'x'; 50]); // its retransmission in full: a duplicate
    r.push(1050, false, b"tail");
    r.push_opaque(1054, 10, 8);
    r.push(1060, false, b"012345"); // overlaps the end of opaque 8, which keeps its bytes
    let out = r.finish().unwrap();
    assert_eq!(
        out.runs,
        vec![
            Run::Opaque {
                seq: 1000,
                len: 50,
                id: 7,
                whole: true
            },
            Run::Bytes {
                seq: 1050,
                data: b"tail".to_vec()
            },
            Run::Opaque {
                seq: 1054,
                len: 10,
                id: 8,
                whole: true
            },
            Run::Bytes {
                seq: 1064,
                data: b"45".to_vec()
            },
        ]
    );
    assert!(out.conflicts.is_empty(), "opaque bytes cannot be compared");
    // An opaque range partly taken by an earlier copy is not whole.
    let mut r = Reassembler::new();
    r.push(1000, false, b"abcd");
    r.push_opaque(1002, 6, 1);
    let out = r.finish().unwrap();
    assert_eq!(
        out.runs[1],
        Run::Opaque {
            seq: 1004,
            len: 4,
            id: 1,
            whole: false
        }
    );
}

proptest! {
    /// Any cutting of a stream into segments, sent in any order with any number of
    /// retransmissions, reassembles to the stream (from any ISN, wrapping included).
    #[test]
    fn any_segmentation_reassembles(
        data in proptest::collection::vec(any::<u8>(), 1..300),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 1..30),
        isn in any::<u32>(),
        syn in any::<bool>(),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len())).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        points.dedup();
        let segs: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
        let mut r = Reassembler::new();
        if syn {
            r.push(isn, true, b"");
        }
        let base = isn.wrapping_add(1);
        // Each segment at least once, plus retransmissions in a random order.
        let mut sends: Vec<usize> = (0..segs.len()).collect();
        sends.extend(order.iter().map(|i| i.index(segs.len())));
        let n = sends.len();
        for (k, i) in order.iter().enumerate() {
            sends.swap(k % n, i.index(n));
        }
        for &i in &sends {
            let (a, b) = segs[i];
            r.push(base.wrapping_add(a as u32), false, &data[a..b]);
        }
        let out = r.finish().unwrap();
        prop_assert_eq!(out.start_seq, base);
        prop_assert_eq!(out.end_seq, base.wrapping_add(data.len() as u32));
        prop_assert_eq!(bytes_of(&out), data.clone());
        prop_assert!(out.conflicts.is_empty());
        prop_assert_eq!(out.duplicate_bytes as usize, sends.iter().map(|&i| segs[i].1 - segs[i].0).sum::<usize>() - data.len());
    }
}

#[test]
fn a_stream_too_long_to_lay_out_is_an_error_not_a_crash() {
    let mut r = Reassembler::new();
    r.push(0, false, b"a");
    r.push(1 << 31, false, b"b"); // 2^31 away: as far as serial arithmetic reaches
    let e = r.finish().unwrap_err();
    assert!(e.contains("more than"), "{e}");
    // Just under the limit is fine in principle; a short one certainly.
    let mut r = Reassembler::new();
    r.push(0, false, b"a");
    r.push(1 << 20, false, b"b");
    assert_eq!(r.finish().unwrap().holes().count(), 1);
}

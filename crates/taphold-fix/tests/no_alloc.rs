//! `encode_compact` runs on the appliance's worker for every protected segment: it must
//! not allocate. The appliance's own counting global allocator, armed on this thread
//! only, proves it.

mod common;

use taphold_fix::compact::encode_compact;
use taphold_runtime::alloc_count::{self, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn measure(f: impl FnOnce()) -> u64 {
    let before = alloc_count::hot_allocations();
    alloc_count::set_hot(true);
    f();
    alloc_count::set_hot(false);
    alloc_count::hot_allocations() - before
}

#[test]
fn encode_compact_allocates_nothing() {
    let good = [
        common::LOGON_42.to_vec(),
        common::new_order_42(2, "A"),
        common::exec_report_42(3, "A"),
        common::new_order_44(4, "B"),
    ]
    .concat();
    let bad = good[..good.len() - 3].to_vec();
    let mut out = vec![0u8; 4096];
    let mut small = [0u8; 16];
    // The counter works (guards against a vacuous pass).
    assert_eq!(measure(|| drop(std::hint::black_box(Box::new(1u8)))), 1);

    let mut results = [Ok(0); 4];
    let allocs = measure(|| {
        for _ in 0..1000 {
            results[0] = encode_compact(&good, &mut out);
            results[1] = encode_compact(&bad, &mut out);
            results[2] = encode_compact(&good, &mut small);
            results[3] = encode_compact(b"junk", &mut out);
        }
    });
    assert_eq!(allocs, 0);
    assert!(matches!(results[0], Ok(n) if n > 0 && n < good.len()));
    assert!(results[1..].iter().all(Result::is_err));
}

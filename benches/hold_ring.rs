//! Hold ring against DPDK's rte_ring, side by side in one process (figure 2 of
//! benches/RESULTS.md).
//!
//! - `hold_ring/<batch>`: launch (push) + confirm (tap-rx's CAS) + release (egress's CAS and
//!   payload read) per message, a `Copy` payload of one `u64`, one thread, steady state.
//! - `rte_ring/<batch>`: `rte_ring_sp_enqueue` + `rte_ring_sc_dequeue` of one pointer per
//!   message through `dpdk::SpscRing`, the way taphold's own code uses an rte_ring.
//! - `rte_ring_bulk/32`: the same ring with `rte_ring_sp_enqueue_bulk`/`sc_dequeue_bulk` of 32,
//!   DPDK at its best (one index update per 32 messages).
//! - `two_threads/*`: producer on CPU 0, consumer (confirm + release, or dequeue) on CPU 1.
//!
//! A batch of B pushes B messages, then confirms B, then releases B (or enqueues B, then
//! dequeues B); criterion's throughput is per message. The process initialises the EAL once
//! (`--no-huge -m 64 --no-pci -l 0`, a file prefix of its own).

use std::ffi::c_void;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dpdk::ring::RingItem;
use dpdk::{Eal, SpscRing};
use taphold_core::hold_ring::{Confirm, HoldRing};

/// Hold-ring capacity (taphold's default) and the rte_ring size used against it.
const CAPACITY: usize = 4096;
const BATCHES: [usize; 2] = [1, 32];

/// One pointer's worth of payload through an rte_ring, owned by nobody (never dereferenced).
struct Token(NonNull<c_void>);

// SAFETY: a Token is a plain address that is never dereferenced; moving it between threads
// moves nothing else.
unsafe impl Send for Token {}

// SAFETY: into/from are inverse (the pointer itself); dropping a Token frees nothing.
unsafe impl RingItem for Token {
    fn into_ring_ptr(self) -> *mut c_void {
        self.0.as_ptr()
    }
    unsafe fn from_ring_ptr(p: *mut c_void) -> Self {
        // SAFETY: every pointer we enqueue is a non-null Token address.
        Token(unsafe { NonNull::new_unchecked(p) })
    }
}

fn token(i: usize) -> Token {
    Token(NonNull::new((i << 3 | 8) as *mut c_void).expect("non-null"))
}

fn eal() -> Eal {
    let prefix = format!("--file-prefix=taphold-bench-{}", std::process::id());
    let args = [
        "taphold-bench",
        "--no-huge",
        "-m",
        "64",
        "--no-pci",
        "-l",
        "0",
        prefix.as_str(),
        "--log-level=*:warning",
    ];
    Eal::init(&args).expect("rte_eal_init").0
}

fn single_thread(c: &mut Criterion, eal: &Eal) {
    let mut g = c.benchmark_group("single_thread");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for batch in BATCHES {
        g.throughput(Throughput::Elements(batch as u64));

        let (mut tx, confirmer, mut rx) = HoldRing::<u64>::new(CAPACITY).expect("hold ring");
        let mut digests = [0u64; 32];
        g.bench_function(BenchmarkId::new("hold_ring", batch), |b| {
            b.iter(|| {
                for d in digests.iter_mut().take(batch) {
                    let seq = tx.next_seq();
                    *d = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let pushed = tx.push(black_box(seq), *d, seq);
                    debug_assert_eq!(pushed.ok(), Some(seq));
                }
                let first = tx.next_seq() - batch as u64;
                for (k, d) in digests.iter().enumerate().take(batch) {
                    let r = confirmer.confirm(0, first + k as u64, *d, 1);
                    debug_assert_eq!(r, Confirm::Confirmed);
                    black_box(r);
                }
                for _ in 0..batch {
                    let r = rx.release_if(|bits| bits & 1 != 0);
                    black_box(r.map(|r| r.item));
                }
            })
        });

        // The floor of the design: the two locked read-modify-writes every message needs
        // (tap-rx's confirmation CAS, egress's release CAS) on a slot's state word, and
        // nothing else. Not a ring; what no hold-ring layout can go below.
        let words: Vec<std::sync::atomic::AtomicU64> = (0..32)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        g.bench_function(BenchmarkId::new("two_cas_floor", batch), |b| {
            use std::sync::atomic::Ordering;
            b.iter(|| {
                for w in words.iter().take(batch) {
                    let s = w.load(Ordering::Acquire);
                    let _ = black_box(w.compare_exchange(
                        s,
                        s | 1,
                        Ordering::Release,
                        Ordering::Acquire,
                    ));
                    let _ = black_box(w.compare_exchange(
                        s | 1,
                        s + 256,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    ));
                }
            })
        });

        let (mut p, mut q) =
            SpscRing::<Token>::new(eal, &format!("bench_single_{batch}"), CAPACITY as u32)
                .expect("rte_ring");
        g.bench_function(BenchmarkId::new("rte_ring", batch), |b| {
            b.iter(|| {
                for i in 0..batch {
                    if p.push(token(black_box(i))).is_err() {
                        panic!("rte_ring full");
                    }
                }
                for _ in 0..batch {
                    black_box(q.pop().map(|t| t.0));
                }
            })
        });
    }

    // DPDK's bulk calls: one head/tail update per 32 pointers.
    let raw = bulk_ring(eal);
    g.throughput(Throughput::Elements(32));
    let objs: [*mut c_void; 32] = std::array::from_fn(|i| token(i).0.as_ptr());
    let mut out: [*mut c_void; 32] = [std::ptr::null_mut(); 32];
    g.bench_function(BenchmarkId::new("rte_ring_bulk", 32), |b| {
        b.iter(|| {
            // SAFETY: raw is a live SP/SC ring used only by this thread; the arrays hold 32
            // entries each; the pointers are never dereferenced.
            unsafe {
                let n = dpdk_sys_enqueue_bulk(raw.0, black_box(&objs));
                debug_assert_eq!(n, 32);
                let m = dpdk_sys_dequeue_bulk(raw.0, &mut out);
                debug_assert_eq!(m, 32);
            }
            black_box(&out);
        })
    });
    g.finish();
}

/// An SP/SC rte_ring for the bulk benchmark, freed on drop.
struct RawRing(*mut dpdk_sys::rte_ring);

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: created by rte_ring_create below, used by nobody else any more.
        unsafe { dpdk_sys::rte_ring_free(self.0) }
    }
}

fn bulk_ring(_eal: &Eal) -> RawRing {
    let name = c"bench_bulk_raw";
    // SAFETY: the EAL is initialised (the Eal handle); DPDK copies the name.
    let r = unsafe {
        dpdk_sys::rte_ring_create(
            name.as_ptr(),
            CAPACITY as u32,
            dpdk_sys::SOCKET_ID_ANY,
            dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ,
        )
    };
    assert!(!r.is_null(), "rte_ring_create(bench_bulk_raw) failed");
    RawRing(r)
}

/// # Safety
/// `r` is a live ring with a single producer (the caller).
#[inline]
unsafe fn dpdk_sys_enqueue_bulk(r: *mut dpdk_sys::rte_ring, objs: &[*mut c_void; 32]) -> u32 {
    // SAFETY: per the function's contract; 32 valid entries.
    unsafe { dpdk_sys::rte_ring_sp_enqueue_bulk(r, objs.as_ptr(), 32, std::ptr::null_mut()) }
}

/// # Safety
/// `r` is a live ring with a single consumer (the caller).
#[inline]
unsafe fn dpdk_sys_dequeue_bulk(r: *mut dpdk_sys::rte_ring, out: &mut [*mut c_void; 32]) -> u32 {
    // SAFETY: per the function's contract; room for 32 entries.
    unsafe { dpdk_sys::rte_ring_sc_dequeue_bulk(r, out.as_mut_ptr(), 32, std::ptr::null_mut()) }
}

/// Pins the calling thread to `cpu` (EAL pinned every thread of the process to lcore 0's CPU).
fn pin(cpu: usize) {
    let ok = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    assert!(ok, "cannot pin to CPU {cpu}");
}

fn two_threads(c: &mut Criterion, eal: &Eal) {
    // Not available_parallelism(): it counts the affinity mask, which EAL narrowed to CPU 0.
    // SAFETY: sysconf only reads a system value.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        eprintln!("two_threads: skipped, fewer than 2 CPUs");
        return;
    }
    let mut g = c.benchmark_group("two_threads");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));

    // ingress on CPU 0 pushes; tap-rx + egress on CPU 1 confirm and release each in order.
    let (tx, confirmer, rx) = HoldRing::<u64>::new(CAPACITY).expect("hold ring");
    let mut tx = Some(tx);
    let mut rx = Some(rx);
    g.bench_function("hold_ring", |b| {
        b.iter_custom(|iters| {
            let mut p = tx.take().expect("producer");
            let mut r = rx.take().expect("consumer");
            let conf = confirmer.clone();
            let first = p.next_seq();
            let start = Instant::now();
            let (p2, r2) = std::thread::scope(|s| {
                let consumer = s.spawn(move || {
                    pin(1);
                    for seq in first..first + iters {
                        let d = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        while conf.confirm(0, seq, d, 1) == Confirm::Future {
                            std::hint::spin_loop();
                        }
                        while r.release_if(|bits| bits & 1 != 0).is_none() {
                            std::hint::spin_loop();
                        }
                    }
                    r
                });
                for _ in 0..iters {
                    loop {
                        let seq = p.next_seq();
                        let d = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        if p.push(black_box(seq), d, seq).is_ok() {
                            break;
                        }
                        std::hint::spin_loop();
                    }
                }
                (p, consumer.join().expect("consumer thread"))
            });
            let el = start.elapsed();
            tx = Some(p2);
            rx = Some(r2);
            el
        })
    });

    let (p, q) = SpscRing::<Token>::new(eal, "bench_two", CAPACITY as u32).expect("rte_ring");
    let mut p = Some(p);
    let mut q = Some(q);
    g.bench_function("rte_ring", |b| {
        b.iter_custom(|iters| {
            let mut pp = p.take().expect("producer");
            let mut qq = q.take().expect("consumer");
            let start = Instant::now();
            let (pp, qq) = std::thread::scope(|s| {
                let consumer = s.spawn(move || {
                    pin(1);
                    let mut n = 0u64;
                    while n < iters {
                        match qq.pop() {
                            Some(t) => {
                                black_box(t.0);
                                n += 1;
                            }
                            None => std::hint::spin_loop(),
                        }
                    }
                    qq
                });
                for i in 0..iters {
                    let mut t = token(i as usize);
                    while let Err(back) = pp.push(t) {
                        t = back;
                        std::hint::spin_loop();
                    }
                }
                (pp, consumer.join().expect("consumer thread"))
            });
            let el = start.elapsed();
            p = Some(pp);
            q = Some(qq);
            el
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let eal = eal();
    single_thread(c, &eal);
    if std::env::var_os("TAPHOLD_BENCH_NO_2T").is_none() {
        two_threads(c, &eal);
    }
}

criterion_group!(hold_ring_vs_rte_ring, benches);
criterion_main!(hold_ring_vs_rte_ring);

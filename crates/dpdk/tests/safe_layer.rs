//! The safe DPDK layer over real virtual devices. Each test runs in a process
//! of its own (one EAL per process), through `dpdk::eal_test!`.

use dpdk::testing::{eal_args, pcap};
use dpdk::{lcore, Burst, Eal, EthRingPair, Mbuf, Mempool, Port, PortConfig, SpscRing};

fn frame(i: usize, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    for (k, b) in f[14..].iter_mut().enumerate() {
        *b = (i * 7 + k) as u8;
    }
    f
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("taphold-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

dpdk::eal_test!(pcap_replay_is_byte_identical, {
    let dir = tmpdir("pcap");
    let input: Vec<Vec<u8>> = (0..300).map(|i| frame(i, 60 + (i * 37) % 1400)).collect();
    pcap::write(&dir.join("in.pcap"), &input).unwrap();
    let vdev = format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        dir.join("in.pcap").display(),
        dir.join("out.pcap").display()
    );
    let (eal, _) = Eal::init(&eal_args(64, "0", &[&vdev])).unwrap();
    let pool = Mempool::new(&eal, "pool", 2047, 32, 2176, -1).unwrap();
    {
        let mut port = Port::by_name(&eal, "net_pcap0").unwrap();
        port.configure(&PortConfig::default(), &pool).unwrap();
        port.start().unwrap();
        let mut burst: Burst<32> = Burst::new();
        let mut got = 0;
        let mut idle = 0;
        while got < input.len() && idle < 100_000 {
            let n = port.rx_burst(0, &mut burst);
            got += n;
            idle = if n == 0 { idle + 1 } else { 0 };
            while !burst.is_empty() {
                port.tx_burst(0, &mut burst);
            }
        }
        assert_eq!(got, input.len());
        let stats = port.stats().unwrap();
        assert_eq!(stats.ipackets, input.len() as u64);
        assert_eq!(stats.opackets, input.len() as u64);
        assert!(
            !port.xstats().unwrap().is_empty(),
            "net_pcap exposes xstats"
        );
    } // port dropped: stopped and closed, pcap flushed
    let output = pcap::read(&dir.join("out.pcap")).unwrap();
    assert_eq!(output, input);
    assert_eq!(pool.in_use(), 0, "every mbuf went back to the pool");
    std::fs::remove_dir_all(dir).ok();
});

dpdk::eal_test!(ring_pair_carries_frames_both_ways, {
    let (eal, _) = Eal::init(&eal_args(64, "0", &[])).unwrap();
    let pool = Mempool::new(&eal, "pool", 1023, 0, 2176, -1).unwrap();
    {
        let (mut a, mut b) = EthRingPair::ports(&eal, "ring_a", "ring_b", 256).unwrap();
        for p in [&mut a, &mut b] {
            p.configure(&PortConfig::default(), &pool).unwrap();
            p.start().unwrap();
        }
        for (from, to, tag) in [(&a, &b, 1usize), (&b, &a, 2usize)] {
            let mut tx: Burst<32> = Burst::new();
            for i in 0..20 {
                tx.push(Mbuf::from_bytes(&pool, &frame(tag * 100 + i, 64 + i)).unwrap())
                    .unwrap();
            }
            assert_eq!(from.tx_burst(0, &mut tx), 20);
            assert!(tx.is_empty());
            let mut rx: Burst<32> = Burst::new();
            assert_eq!(to.rx_burst(0, &mut rx), 20);
            for i in 0..20 {
                let m = rx.pop().unwrap();
                assert_eq!(m.data(), &frame(tag * 100 + i, 64 + i)[..]);
            }
            assert_eq!(from.rx_burst(0, &mut rx), 0, "a port does not hear itself");
        }
    }
    assert_eq!(pool.in_use(), 0);
});

dpdk::eal_test!(tx_burst_hands_back_what_the_driver_refused, {
    let (eal, _) = Eal::init(&eal_args(64, "0", &[])).unwrap();
    let pool = Mempool::new(&eal, "pool", 1023, 0, 2176, -1).unwrap();
    {
        // A ring of 8 slots holds 7 frames: the eighth and later are refused.
        let (mut a, mut b) = EthRingPair::ports(&eal, "small_a", "small_b", 8).unwrap();
        for p in [&mut a, &mut b] {
            p.configure(&PortConfig::default(), &pool).unwrap();
            p.start().unwrap();
        }
        let mut tx: Burst<32> = Burst::new();
        for i in 0..32 {
            tx.push(Mbuf::from_bytes(&pool, &frame(i, 60)).unwrap())
                .unwrap();
        }
        assert!(
            tx.push(Mbuf::from_bytes(&pool, &frame(99, 60)).unwrap())
                .is_err(),
            "burst is full"
        );
        assert_eq!(a.tx_burst(0, &mut tx), 7);
        assert_eq!(tx.len(), 25, "refused mbufs stay with the caller");
        assert_eq!(tx.get(0).unwrap().data(), &frame(7, 60)[..], "in order");
        assert_eq!(pool.in_use(), 32);
        drop(tx); // frees the 25 unsent, once
        assert_eq!(pool.in_use(), 7);
        let mut rx: Burst<4> = Burst::new();
        let mut seen = 0;
        while b.rx_burst(0, &mut rx) > 0 {
            while let Some(m) = rx.pop() {
                assert_eq!(m.data(), &frame(seen, 60)[..]);
                seen += 1;
            }
        }
        assert_eq!(seen, 7);
    }
    assert_eq!(pool.in_use(), 0);
});

dpdk::eal_test!(null_ports_run_a_burst_loop, {
    let (eal, _) = Eal::init(&eal_args(64, "0", &["net_null0", "net_null1"])).unwrap();
    let pool = Mempool::new(&eal, "pool", 2047, 32, 2176, -1).unwrap();
    {
        let mut rx_port = Port::by_name(&eal, "net_null0").unwrap();
        let mut tx_port = Port::by_name(&eal, "net_null1").unwrap();
        for p in [&mut rx_port, &mut tx_port] {
            p.configure(&PortConfig::default(), &pool).unwrap();
            p.start().unwrap();
        }
        let mut burst: Burst<32> = Burst::new();
        let mut moved = 0u64;
        for _ in 0..10_000 {
            rx_port.rx_burst(0, &mut burst);
            moved += tx_port.tx_burst(0, &mut burst) as u64;
            burst.clear();
        }
        assert!(
            moved >= 10_000 * 16,
            "net_null is an endless source: moved {moved}"
        );
        assert_eq!(tx_port.stats().unwrap().opackets, moved);
    }
    assert_eq!(pool.in_use(), 0);
});

dpdk::eal_test!(missing_or_failed_vdev_is_an_error_naming_it, {
    // The pcap file does not exist: the vdev fails to probe, EAL only warns.
    let (eal, _) = Eal::init(&eal_args(
        64,
        "0",
        &["net_pcap7,rx_pcap=/nonexistent/in.pcap,tx_pcap=/tmp/x.pcap"],
    ))
    .unwrap();
    let err = Port::by_name(&eal, "net_pcap7").unwrap_err().to_string();
    assert!(err.contains("net_pcap7"), "{err}");
    let err = Port::by_name(&eal, "net_never_given")
        .unwrap_err()
        .to_string();
    assert!(err.contains("net_never_given"), "{err}");
});

dpdk::eal_test!(eal_init_twice_is_refused_and_app_args_are_returned, {
    let mut args = eal_args(64, "0", &[]);
    args.extend([
        "--".to_string(),
        "--config".to_string(),
        "x.yaml".to_string(),
    ]);
    let (eal, app) = Eal::init(&args).unwrap();
    assert_eq!(app, vec!["--config".to_string(), "x.yaml".to_string()]);
    assert!(Eal::init(&eal_args(64, "0", &[])).is_err());
    assert_eq!(eal.main_lcore(), 0);
    assert!(eal.worker_lcores().is_empty());
});

dpdk::eal_test!(mbuf_edits_and_copies, {
    let (eal, _) = Eal::init(&eal_args(64, "0", &[])).unwrap();
    let pool = Mempool::new(&eal, "pool", 255, 0, 2176, -1).unwrap();
    {
        let mut m = Mbuf::from_bytes(&pool, b"payload").unwrap();
        assert_eq!(m.headroom(), 128);
        m.prepend(4).unwrap().copy_from_slice(b"hdr:");
        m.append(4).unwrap().copy_from_slice(b":end");
        assert_eq!(m.data(), b"hdr:payload:end");
        assert!(m.adj(4));
        assert!(m.trim(4));
        assert_eq!(m.data(), b"payload");
        assert!(!m.adj(100), "cannot drop more than there is");
        assert!(m.prepend(4096).is_none(), "headroom is 124 bytes now");
        assert_eq!(m.data(), b"payload", "a refused edit changes nothing");
        let c = m.copy(&pool).unwrap();
        m.data_mut()[0] = b'P';
        assert_eq!(c.data(), b"payload", "a copy is deep");
        assert_eq!(pool.in_use(), 2);
        assert!(m.set_len(3));
        assert_eq!(m.data(), b"Pay");
    }
    assert_eq!(pool.in_use(), 0);
    // Exhaustion is a None, not a crash.
    let held: Vec<Mbuf> = std::iter::from_fn(|| pool.alloc()).collect();
    assert_eq!(held.len(), 255);
    assert!(pool.alloc().is_none());
    drop(held);
    assert_eq!(pool.in_use(), 0);
});

dpdk::eal_test!(lcores_run_closures_and_report_panics, {
    let (eal, _) = Eal::init(&eal_args(64, "0,1", &[])).unwrap();
    assert_eq!(eal.worker_lcores(), vec![1]);
    let pool = Mempool::new(&eal, "pool", 1023, 0, 2176, -1).unwrap();
    let (mut tx, mut rx) = SpscRing::<Mbuf>::new(&eal, "handoff", 1024).unwrap();
    let worker_pool = pool.clone();
    let h = lcore::launch(&eal, 1, move || {
        for i in 0..500u32 {
            let mut m = Mbuf::from_bytes(&worker_pool, &i.to_be_bytes()).unwrap();
            loop {
                match tx.push(m) {
                    Ok(()) => break,
                    Err(back) => m = back,
                }
            }
        }
        500u32
    })
    .unwrap();
    let mut next = 0u32;
    while next < 500 {
        if let Some(m) = rx.pop() {
            assert_eq!(m.data(), &next.to_be_bytes());
            next += 1;
        }
    }
    assert_eq!(h.join().unwrap(), 500);
    let h = lcore::launch(&eal, 1, || -> u32 { panic!("role failed") }).unwrap();
    assert!(h.join().unwrap_err().contains("role failed"));
    assert!(
        lcore::launch(&eal, 7, || ()).is_err(),
        "lcore 7 is not ours"
    );
    drop(rx);
    assert_eq!(pool.in_use(), 0);
});

/// Two EAL processes at once, each with its own file prefix, each moving
/// frames over its own ring pair.
#[test]
fn two_eal_processes_at_once() {
    if std::env::var("TAPHOLD_EAL_TEST_CHILD").is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "ring_pair_carries_frames_both_ways",
                    "--exact",
                    "--test-threads=1",
                ])
                .env(
                    "TAPHOLD_EAL_TEST_CHILD",
                    "ring_pair_carries_frames_both_ways",
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

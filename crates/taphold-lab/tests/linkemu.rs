//! taphold-linkemu on real interfaces: in a namespace of its own, two veth
//! pairs `la0`–`la` and `lb`–`lb0`, the emulator bridging `la` ↔ `lb`. Raw
//! frames sent on `la0` are counted on `lb0`: delay, loss, corruption and
//! cut must actually happen, and the emulator's counters must agree.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab_available, prefix, sh};
use serde_json::Value;

struct Ns {
    name: String,
    emu: Option<Child>,
    ctl: String,
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Some(c) = &mut self.emu {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_file(&self.ctl);
    }
}

fn ctl(sock: &str, cmd: &str) -> String {
    sh(Command::new(env!("CARGO_BIN_EXE_taphold-linkemu")).args(["ctl", sock, cmd]))
}

fn stats(sock: &str) -> Value {
    serde_json::from_str(&ctl(sock, "stats")).unwrap()
}

/// A raw AF_PACKET socket on one interface (of the calling thread's netns).
struct Raw(libc::c_int);

impl Raw {
    fn open(iface: &str) -> Raw {
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: libc calls on owned values, results checked.
        unsafe {
            let idx = libc::if_nametoindex(name.as_ptr());
            assert!(idx != 0, "{iface}: no such interface");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0);
            let one: libc::c_int = 1;
            libc::setsockopt(fd, libc::SOL_PACKET, 23, &one as *const _ as *const _, 4);
            let buf: libc::c_int = 8 << 20;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &buf as *const _ as *const _,
                4,
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = 0x88b5u16.to_be();
            sll.sll_ifindex = idx as i32;
            let r = libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind {iface}");
            Raw(fd)
        }
    }
    fn send(&self, f: &[u8]) {
        // SAFETY: valid buffer.
        let n = unsafe { libc::send(self.0, f.as_ptr() as *const _, f.len(), 0) };
        assert_eq!(n, f.len() as isize);
    }
    /// Every frame that arrives within `quiet` of the previous one.
    fn recv_until_quiet(&self, quiet: Duration) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            let mut pfd = libc::pollfd {
                fd: self.0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, valid buffer.
            unsafe {
                if libc::poll(&mut pfd, 1, quiet.as_millis() as i32) <= 0 {
                    return out;
                }
                let n = libc::recv(self.0, buf.as_mut_ptr() as *mut _, buf.len(), 0);
                if n > 0 {
                    out.push((Instant::now(), buf[..n as usize].to_vec()));
                }
            }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: owned fd.
        unsafe { libc::close(self.0) };
    }
}

fn frame(i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 100];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0x0c, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x0b, 1]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&i.to_be_bytes());
    for (k, b) in f[18..].iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(31);
    }
    f
}

fn id(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[14..18].try_into().unwrap())
}

#[test]
fn linkemu_delays_loses_corrupts_and_cuts_real_frames() {
    if !lab_available("linkemu_delays_loses_corrupts_and_cuts_real_frames") {
        return;
    }
    let p = prefix('m');
    let name = format!("{p}-emu");
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    let mut ns = Ns {
        name: name.clone(),
        emu: None,
        ctl: std::env::temp_dir()
            .join(format!("{p}-emu.sock"))
            .to_string_lossy()
            .into_owned(),
    };
    sh(Command::new("ip").args(["netns", "add", &name]));
    let ipn = |args: &[&str]| {
        sh(Command::new("ip").arg("-n").arg(&name).args(args));
    };
    sh(Command::new("ip").args([
        "netns",
        "exec",
        &name,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]));
    for (x, y) in [("la0", "la"), ("lb", "lb0")] {
        ipn(&[
            "link",
            "add",
            &format!("{p}-{x}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("{p}-{y}"),
        ]);
        ipn(&["link", "set", &format!("{p}-{x}"), "up"]);
        ipn(&["link", "set", &format!("{p}-{y}"), "up"]);
    }
    let emu = Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            env!("CARGO_BIN_EXE_taphold-linkemu"),
            "run",
        ])
        .args([
            "--a",
            &format!("{p}-la"),
            "--b",
            &format!("{p}-lb"),
            "--ctl",
            &ns.ctl,
            "--seed",
            "7",
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    ns.emu = Some(emu);
    let start = Instant::now();
    while !std::path::Path::new(&ns.ctl).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "emulator did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = ns.ctl.clone();

    // The sockets live in the lab namespace: a thread of our own enters it.
    let nsname = name.clone();
    let pp = p.clone();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/var/run/netns/{nsname}")).unwrap();
        // SAFETY: setns on this thread only, with a valid netns fd.
        let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns");
        let tx = Raw::open(&format!("{pp}-la0"));
        let rx = Raw::open(&format!("{pp}-lb0"));
        let quiet = Duration::from_millis(300);

        // A faithful link: everything, unchanged, in order.
        for i in 0..200 {
            tx.send(&frame(i));
        }
        let got = rx.recv_until_quiet(quiet);
        assert_eq!(got.len(), 200);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (_, f))| *f == frame(i as u32)));

        // Delay: every frame at least 20 ms late.
        ctl(&sock, "a2b delay_us=20000");
        let mut sent = Vec::new();
        for i in 0..20 {
            sent.push(Instant::now());
            tx.send(&frame(i));
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = rx.recv_until_quiet(quiet);
        assert_eq!(got.len(), 20);
        for (at, f) in &got {
            let d = at.duration_since(sent[id(f) as usize]);
            assert!(
                d >= Duration::from_millis(20) && d < Duration::from_millis(150),
                "delay {d:?}"
            );
        }

        // Loss 0.5: about half arrive.
        ctl(&sock, "a2b clear loss=0.5");
        for i in 0..1000 {
            tx.send(&frame(i));
            if i % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let got = rx.recv_until_quiet(quiet).len();
        assert!((350..=650).contains(&got), "{got} of 1000 with loss=0.5");

        // Corruption: every frame arrives with exactly one bit flipped, past
        // the Ethernet header.
        ctl(&sock, "a2b clear corrupt=1");
        for i in 0..100 {
            tx.send(&frame(i));
        }
        let got = rx.recv_until_quiet(quiet);
        assert_eq!(got.len(), 100);
        for (k, (_, f)) in got.iter().enumerate() {
            let orig = frame(k as u32);
            let bits: u32 = f.iter().zip(&orig).map(|(a, b)| (a ^ b).count_ones()).sum();
            assert_eq!(bits, 1, "frame {k}");
            assert_eq!(f[..14], orig[..14]);
        }

        // Cut: nothing at all, then back to normal once cleared.
        ctl(&sock, "both cut=1");
        for i in 0..100 {
            tx.send(&frame(i));
        }
        assert_eq!(rx.recv_until_quiet(quiet).len(), 0);
        ctl(&sock, "both clear");
        tx.send(&frame(7));
        let got = rx.recv_until_quiet(quiet);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, frame(7));
    })
    .join()
    .unwrap();

    let s = stats(&ns.ctl);
    let a2b = &s["a2b"];
    let get = |k: &str| a2b[k].as_u64().unwrap();
    assert_eq!(get("received"), 200 + 20 + 1000 + 100 + 100 + 1, "{s}");
    assert_eq!(get("corrupted"), 100, "{s}");
    assert_eq!(get("dropped"), get("received") - get("forwarded"), "{s}");
    assert_eq!(get("tx_errors"), 0, "{s}");
    assert_eq!(
        s["b2a"]["received"].as_u64(),
        Some(0),
        "nothing leaks back: {s}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_taphold-linkemu"))
        .args(["ctl", &ns.ctl, "a2b loss=2"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a bad command is refused");
    ctl(&ns.ctl, "quit");
    let st = ns.emu.as_mut().unwrap().wait().unwrap();
    assert!(st.success());
    ns.emu = None;
}

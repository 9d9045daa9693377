//! taphold-linkemu: a user-space link emulator for the live lab (this kernel
//! has no netem). It bridges two interfaces with AF_PACKET raw sockets and
//! impairs each direction on command: delay, jitter, loss, duplication,
//! reordering, corruption, cut.
//!
//! ```text
//! taphold-linkemu run --a IFACE --b IFACE --ctl SOCK [--seed N]
//!                     [--a2b 'k=v ...'] [--b2a 'k=v ...'] [--both 'k=v ...'] [k=v ...]
//! taphold-linkemu ctl SOCK 'a2b delay_us=50 loss=0.01' | 'both cut=1' | 'both clear' | stats | get | quit
//! ```
//!
//! One thread per direction: it waits in ppoll for a frame or for the
//! earliest queued copy's due time (no busy loop), runs the frame through the
//! engine (src/lib.rs), and transmits whatever is due. A third thread serves
//! the control socket (UNIX stream, one command per connection, one reply).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taphold_lab::{apply_words, settings_json, stats_json, Command, Engine, Target};

const USAGE: &str = "usage:
  taphold-linkemu run --a IFACE --b IFACE --ctl SOCK [--seed N]
                      [--a2b 'k=v ...'] [--b2a 'k=v ...'] [--both 'k=v ...'] [k=v ...]
  taphold-linkemu ctl SOCK COMMAND...
commands: a2b|b2a|both k=v... (delay_us jitter_us loss dup reorder reorder_us corrupt cut) | a2b|b2a|both clear | stats | get | quit";

/// Longest we sleep without looking at the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

fn main() {
    let all: Vec<String> = std::env::args().collect();
    if let Some(text) = taphold_runtime::args::early(&all, "taphold-linkemu", USAGE) {
        println!("{text}");
        return;
    }
    let args: Vec<String> = all[1..].to_vec();
    let code = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("ctl") => ctl(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = code {
        eprintln!("taphold-linkemu: {e}");
        std::process::exit(2);
    }
}

fn ctl(args: &[String]) -> Result<(), String> {
    let (sock, cmd) = match args {
        [sock, rest @ ..] if !rest.is_empty() => (sock, rest.join(" ")),
        _ => return Err(USAGE.into()),
    };
    let mut s = UnixStream::connect(sock).map_err(|e| format!("{sock}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("{cmd}\n").as_bytes())
        .and_then(|_| s.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("{sock}: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("{sock}: {e}"))?;
    print!("{reply}");
    if reply.starts_with("error") {
        std::process::exit(1);
    }
    Ok(())
}

struct RunOpts {
    a: String,
    b: String,
    ctl: String,
    seed: u64,
    a2b: Vec<String>,
    b2a: Vec<String>,
}

fn parse_run(args: &[String]) -> Result<RunOpts, String> {
    let (mut a, mut b, mut ctl, mut seed) = (None, None, None, 1u64);
    let (mut a2b, mut b2a) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        let words = |v: String| v.split_whitespace().map(String::from).collect::<Vec<_>>();
        match arg.as_str() {
            "--a" => a = Some(value()?),
            "--b" => b = Some(value()?),
            "--ctl" => ctl = Some(value()?),
            "--seed" => {
                let v = value()?;
                seed = v.parse().map_err(|_| format!("--seed {v}: not a number"))?
            }
            "--a2b" => a2b.extend(words(value()?)),
            "--b2a" => b2a.extend(words(value()?)),
            "--both" => {
                let w = words(value()?);
                a2b.extend(w.clone());
                b2a.extend(w);
            }
            w if w.contains('=') || w == "clear" => {
                a2b.push(w.to_string());
                b2a.push(w.to_string());
            }
            _ => return Err(format!("unexpected argument `{arg}`\n{USAGE}")),
        }
    }
    let need = |o: Option<String>, n: &str| o.ok_or_else(|| format!("{n} is required\n{USAGE}"));
    Ok(RunOpts {
        a: need(a, "--a")?,
        b: need(b, "--b")?,
        ctl: need(ctl, "--ctl")?,
        seed,
        a2b,
        b2a,
    })
}

/// An AF_PACKET raw socket bound to one interface, all protocols,
/// not seeing its own transmissions.
struct PacketSocket {
    fd: libc::c_int,
    name: String,
}

impl PacketSocket {
    fn open(name: &str) -> Result<PacketSocket, String> {
        let err = |what: &str| format!("{name}: {what}: {}", std::io::Error::last_os_error());
        let cname = std::ffi::CString::new(name).map_err(|_| format!("bad name {name}"))?;
        // SAFETY: plain libc calls on values we own; every result is checked.
        unsafe {
            let ifindex = libc::if_nametoindex(cname.as_ptr());
            if ifindex == 0 {
                return Err(err("no such interface"));
            }
            // Protocol 0: receive nothing until bound to the one interface.
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                return Err(err("socket(AF_PACKET)"));
            }
            let s = PacketSocket {
                fd,
                name: name.to_string(),
            };
            let one: libc::c_int = 1;
            if libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                &one as *const _ as *const libc::c_void,
                4,
            ) != 0
            {
                // Older kernels: the pkttype check in recv() still filters.
                eprintln!(
                    "taphold-linkemu: {name}: PACKET_IGNORE_OUTGOING unavailable, filtering by pkttype"
                );
            }
            let buf: libc::c_int = 8 << 20;
            for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &buf as *const _ as *const libc::c_void,
                    4,
                );
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = ifindex as i32;
            if libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) != 0
            {
                return Err(err("bind"));
            }
            // Promiscuous, so frames for any MAC are delivered to us.
            let mut mr: libc::packet_mreq = std::mem::zeroed();
            mr.mr_ifindex = ifindex as i32;
            mr.mr_type = libc::PACKET_MR_PROMISC as u16;
            if libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mr as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::packet_mreq>() as u32,
            ) != 0
            {
                return Err(err("PACKET_ADD_MEMBERSHIP promisc"));
            }
            Ok(s)
        }
    }

    /// One frame into `buf`, or None when nothing is waiting.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: buf and sll are valid for the lengths given.
            let (n, sll) = unsafe {
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let n = libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    &mut sll as *mut _ as *mut libc::sockaddr,
                    &mut len,
                );
                (n, sll)
            };
            if n < 0 {
                return None;
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Some((n as usize).min(buf.len()));
        }
    }

    fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: frame is valid for its length; the socket is bound.
        let n = unsafe {
            libc::send(
                self.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        n == frame.len() as isize
    }

    /// Frames the kernel dropped since the last call.
    fn kernel_drops(&self) -> u64 {
        // SAFETY: tpacket_stats is two u32s, the length given.
        unsafe {
            let mut st: libc::tpacket_stats = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tpacket_stats>() as u32;
            if libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            ) == 0
            {
                st.tp_drops as u64
            } else {
                0
            }
        }
    }

    /// Waits until the socket is readable or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd; no signal mask change.
        unsafe {
            libc::ppoll(&mut pfd, 1, &ts, std::ptr::null());
        }
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe {
            libc::close(self.fd);
        }
    }
}

struct Shared {
    engines: [Mutex<Engine>; 2],
    sockets: [PacketSocket; 2],
    stop: AtomicBool,
    epoch: Instant,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

fn lock(m: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One direction: frames from sockets[from] go out on sockets[1 - from].
fn forward(sh: &Shared, from: usize) {
    let (rx, tx) = (&sh.sockets[from], &sh.sockets[1 - from]);
    let engine = &sh.engines[from];
    let mut buf = vec![0u8; 65536];
    let mut due = Vec::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let wait = {
            let e = lock(engine);
            match e.next_due() {
                Some(t) => Duration::from_nanos(t.saturating_sub(sh.now_ns())).min(MAX_WAIT),
                None => MAX_WAIT,
            }
        };
        if !wait.is_zero() {
            rx.wait(wait);
        }
        {
            let mut e = lock(engine);
            for _ in 0..256 {
                match rx.recv(&mut buf) {
                    Some(n) => e.process(sh.now_ns(), buf[..n].to_vec()),
                    None => break,
                }
            }
            let now = sh.now_ns();
            while let Some(f) = e.pop_due(now) {
                due.push(f);
            }
        }
        if due.is_empty() {
            continue;
        }
        let (mut ok, mut failed) = (0, 0);
        for f in due.drain(..) {
            if tx.send(&f) {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        let mut e = lock(engine);
        e.counters.forwarded += ok;
        e.counters.tx_errors += failed;
    }
}

fn serve(sh: &Shared, listener: UnixListener) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut line = String::new();
        let mut byte = [0u8; 1];
        while line.len() < 4096 {
            match conn.read(&mut byte) {
                Ok(1) if byte[0] != b'\n' => line.push(byte[0] as char),
                _ => break,
            }
        }
        let (reply, quit) = handle(sh, line.trim());
        let _ = conn.write_all(format!("{reply}\n").as_bytes());
        if quit {
            sh.stop.store(true, Ordering::Relaxed);
            return;
        }
    }
}

fn handle(sh: &Shared, line: &str) -> (String, bool) {
    let cmd = match Command::parse(line) {
        Ok(c) => c,
        Err(e) => return (format!("error: {e}"), false),
    };
    match cmd {
        Command::Stats => {
            let mut a = lock(&sh.engines[0]);
            let mut b = lock(&sh.engines[1]);
            a.counters.kernel_drops += sh.sockets[0].kernel_drops();
            b.counters.kernel_drops += sh.sockets[1].kernel_drops();
            (stats_json(&a, &b), false)
        }
        Command::Get => {
            let a = lock(&sh.engines[0]);
            let b = lock(&sh.engines[1]);
            (settings_json(&a, &b), false)
        }
        Command::Quit => ("ok".into(), true),
        Command::Set(target, words) => {
            let dirs: &[usize] = match target {
                Target::A2b => &[0],
                Target::B2a => &[1],
                Target::Both => &[0, 1],
            };
            for &d in dirs {
                let mut e = lock(&sh.engines[d]);
                if let Err(err) = apply_words(&mut e.settings, &words) {
                    return (format!("error: {err}"), false);
                }
            }
            ("ok".into(), false)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let o = parse_run(args)?;
    let mut engines = [
        Engine::new(o.seed),
        Engine::new(o.seed ^ 0x5bd1_e995_5bd1_e995),
    ];
    apply_words(&mut engines[0].settings, &o.a2b)?;
    apply_words(&mut engines[1].settings, &o.b2a)?;
    let sockets = [PacketSocket::open(&o.a)?, PacketSocket::open(&o.b)?];
    let _ = std::fs::remove_file(&o.ctl);
    let listener = UnixListener::bind(&o.ctl).map_err(|e| format!("{}: {e}", o.ctl))?;
    let [ea, eb] = engines;
    let sh = Arc::new(Shared {
        engines: [Mutex::new(ea), Mutex::new(eb)],
        sockets,
        stop: AtomicBool::new(false),
        epoch: Instant::now(),
    });
    eprintln!(
        "taphold-linkemu: {} <-> {} (seed {}), control {}",
        sh.sockets[0].name, sh.sockets[1].name, o.seed, o.ctl
    );
    let threads: Vec<_> = (0..2)
        .map(|d| {
            let sh = Arc::clone(&sh);
            std::thread::Builder::new()
                .name(if d == 0 { "a2b" } else { "b2a" }.into())
                .spawn(move || forward(&sh, d))
                .expect("spawn")
        })
        .collect();
    serve(&sh, listener);
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_file(&o.ctl);
    let a = lock(&sh.engines[0]);
    let b = lock(&sh.engines[1]);
    println!("{}", stats_json(&a, &b));
    Ok(())
}

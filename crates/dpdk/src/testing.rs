//! Running EAL tests under plain `cargo test`.
//!
//! DPDK allows one `rte_eal_init` per process, and `cargo test` runs tests as
//! threads of one process. `in_own_process` re-runs the calling test alone in
//! a fresh process of the same test binary (`--exact NAME`), where it really
//! runs; the parent only checks the child's exit status. Under nextest, which
//! already gives each test a process, the re-run is one extra exec.

use std::process::Command;

const CHILD_ENV: &str = "TAPHOLD_EAL_TEST_CHILD";

/// Runs `body` in a process of its own. `name` is the test's path as libtest
/// knows it (`module::test_name`, i.e. what `module_path!()` and the fn name
/// give without the crate name).
pub fn in_own_process(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("current test executable");
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "EAL test {name} failed in its own process ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "EAL test {name}: the child process ran no test (name mismatch?)\n{stdout}"
    );
}

/// EAL arguments for a test process: no hugepages, no PCI scan, a file prefix
/// unique to this process, quiet logs, and the given vdevs.
pub fn eal_args(mem_mb: u32, lcores: &str, vdevs: &[&str]) -> Vec<String> {
    let mut v = vec![
        "taphold-test".to_string(),
        "--no-huge".into(),
        "-m".into(),
        mem_mb.to_string(),
        "--no-pci".into(),
        "-l".into(),
        lcores.into(),
        format!("--file-prefix=taphold-test-{}", std::process::id()),
        "--log-level=*:warning".into(),
    ];
    for d in vdevs {
        v.push("--vdev".into());
        v.push(d.to_string());
    }
    v
}

/// Expands to `in_own_process` with this test's libtest name.
#[macro_export]
macro_rules! eal_test {
    ($name:ident, $body:block) => {
        #[test]
        fn $name() {
            let path = module_path!();
            let path = path.split_once("::").map(|(_, rest)| rest).unwrap_or("");
            let full = if path.is_empty() {
                stringify!($name).to_string()
            } else {
                format!("{}::{}", path, stringify!($name))
            };
            $crate::testing::in_own_process(&full, || $body);
        }
    };
}

/// Minimal classic-pcap reading and writing for tests and tools (Ethernet
/// link type, microsecond timestamps). Not used by the appliance itself,
/// whose captures go through DPDK's net_pcap driver.
pub mod pcap {
    use std::io::{self, Read, Write};
    use std::path::Path;

    const MAGIC_US: u32 = 0xa1b2_c3d4;
    const MAGIC_NS: u32 = 0xa1b2_3c4d;

    /// Writes `frames` as a pcap file, one microsecond apart.
    pub fn write(path: &Path, frames: &[Vec<u8>]) -> io::Result<()> {
        let mut f = io::BufWriter::new(std::fs::File::create(path)?);
        f.write_all(&MAGIC_US.to_le_bytes())?;
        f.write_all(&2u16.to_le_bytes())?;
        f.write_all(&4u16.to_le_bytes())?;
        f.write_all(&0i32.to_le_bytes())?;
        f.write_all(&0u32.to_le_bytes())?;
        f.write_all(&65535u32.to_le_bytes())?;
        f.write_all(&1u32.to_le_bytes())?;
        for (i, fr) in frames.iter().enumerate() {
            f.write_all(&1_767_225_600u32.to_le_bytes())?;
            f.write_all(&(i as u32 % 1_000_000).to_le_bytes())?;
            f.write_all(&(fr.len() as u32).to_le_bytes())?;
            f.write_all(&(fr.len() as u32).to_le_bytes())?;
            f.write_all(fr)?;
        }
        f.flush()
    }

    /// Reads every frame of a pcap file (either byte order, us or ns stamps).
    pub fn read(path: &Path) -> io::Result<Vec<Vec<u8>>> {
        let mut buf = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut buf)?;
        parse(&buf).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    pub fn parse(buf: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        if buf.len() < 24 {
            return Err("shorter than a pcap file header".into());
        }
        let magic = u32::from_le_bytes(buf[0..4].try_into().unwrap());
        let le = match magic {
            MAGIC_US | MAGIC_NS => true,
            m if m.swap_bytes() == MAGIC_US || m.swap_bytes() == MAGIC_NS => false,
            m => return Err(format!("bad pcap magic {m:#x}")),
        };
        let rd = |b: &[u8]| {
            let a: [u8; 4] = b.try_into().unwrap();
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let mut out = Vec::new();
        let mut off = 24;
        while off < buf.len() {
            if off + 16 > buf.len() {
                return Err(format!("truncated record header at byte {off}"));
            }
            let caplen = rd(&buf[off + 8..off + 12]) as usize;
            off += 16;
            if off + caplen > buf.len() {
                return Err(format!("truncated record at byte {off}"));
            }
            out.push(buf[off..off + caplen].to_vec());
            off += caplen;
        }
        Ok(out)
    }
}

/// A client of a running DPDK program's telemetry socket, as
/// `dpdk-telemetry.py` is (SOCK_SEQPACKET, one JSON answer per request).
pub mod telemetry {
    use std::io;

    /// Sends `cmd` to the program started with `--file-prefix PREFIX` and
    /// returns its answer (the JSON object under the command's name), as text.
    pub fn query(prefix: &str, cmd: &str) -> io::Result<String> {
        let path = format!("/var/run/dpdk/{prefix}/dpdk_telemetry.v2");
        // SAFETY: plain socket calls on a descriptor we own and close on every
        // path; the address is a zeroed sockaddr_un whose path is filled
        // within its bounds (checked), and every buffer outlives its call.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let close = |e: io::Error| {
                libc::close(fd);
                e
            };
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            if path.len() >= addr.sun_path.len() {
                return Err(close(io::Error::other("socket path too long")));
            }
            for (d, s) in addr.sun_path.iter_mut().zip(path.bytes()) {
                *d = s as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                return Err(close(io::Error::last_os_error()));
            }
            let mut buf = vec![0u8; 1 << 16];
            let recv = |buf: &mut Vec<u8>| -> io::Result<usize> {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n <= 0 {
                    Err(io::Error::other("telemetry socket closed"))
                } else {
                    Ok(n as usize)
                }
            };
            // The greeting first (version, pid, max output length).
            recv(&mut buf).map_err(close)?;
            if libc::send(fd, cmd.as_ptr().cast(), cmd.len(), 0) != cmd.len() as isize {
                return Err(close(io::Error::last_os_error()));
            }
            let n = recv(&mut buf).map_err(close)?;
            libc::close(fd);
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
    }
}

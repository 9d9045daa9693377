//! taphold — tap-confirmed forwarding on DPDK poll-mode lcores.
//!
//! `taphold [EAL args] -- --config FILE [--out DIR] [--exit-when-idle-ms N]
//! [--duration-ms N]`
//!
//! The main lcore builds everything from the config (pool, ports, hold ring,
//! roles), launches the workers, then only watches: it drains the event ring
//! into events.csv and the latency histograms, prints a stats line, and on
//! SIGINT/SIGTERM (or when a replay has gone idle) stops the workers and
//! accounts for every message still held.

mod appliance;
mod config;
mod control;
mod counters;
mod frames;
mod hlog;
mod plan;
mod plane;
mod report;
mod roles;
mod telemetry;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use taphold_runtime::args::Args;

#[global_allocator]
static ALLOC: taphold_runtime::alloc_count::CountingAlloc =
    taphold_runtime::alloc_count::CountingAlloc;

/// The control plane, once built: the panic hook tells the workers to quit
/// through it.
static PLANE: OnceLock<&'static plane::Plane> = OnceLock::new();

/// Publishes the control plane to the panic hook.
pub fn on_panic_quit(plane: &'static plane::Plane) {
    let _ = PLANE.set(plane);
}

/// A panic anywhere (a worker, the watch loop) must not leave a worker
/// polling: before the default report, tell every lcore to quit. The main
/// lcore then stops, accounts for what is held and writes the summary.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(p) = PLANE.get() {
            p.quit.store(true, Ordering::SeqCst);
        }
        default(info);
    }));
}

/// Fault injection for the tests of the panic paths: `TAPHOLD_FAILPOINT=NAME=N`
/// (`worker-panic-after-ms`, `watch-panic-after-ms`). Read at start-up only.
pub fn failpoint(name: &str) -> Option<u64> {
    let v = std::env::var("TAPHOLD_FAILPOINT").ok()?;
    let (n, ms) = v.split_once('=')?;
    (n == name).then(|| ms.parse().ok()).flatten()
}

/// Set by SIGINT/SIGTERM; async-signal-safe (a single atomic store).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Command-line options after EAL's `--`.
#[derive(Debug, Default, PartialEq)]
pub struct Opts {
    pub config: String,
    pub out: Option<std::path::PathBuf>,
    pub exit_when_idle_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// Print the whole summary as JSON at exit, not the short text one.
    pub json: bool,
    /// Write latency.hlog (HdrHistogram interval log) in `out`.
    pub hlog: bool,
    /// Serve Prometheus metrics here (ADDR:PORT).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

const USAGE: &str = "usage: taphold [EAL args] -- --config FILE [--out DIR] [--exit-when-idle-ms N] [--duration-ms N] [--json] [--hlog] [--metrics-listen ADDR:PORT]";

/// `--help`: the options, and what the exit status means.
const HELP: &str = "usage: taphold [EAL args] -- --config FILE [--out DIR] [--exit-when-idle-ms N] [--duration-ms N] [--json] [--hlog] [--metrics-listen ADDR:PORT]
       taphold keygen [--payload] --out FILE

  keygen --out FILE       write a new random 128-bit key to FILE (mode 0600, never over
                          an existing file) and print its key id: a key file for
                          digest_key_file, confirm_key_file, arbiter_key_file
                          (docs/security.md)
  keygen --payload --out FILE
                          a new random 256-bit payload key (link_security: aead's
                          payload_key_file)

  --config FILE           the YAML config (docs/operations.md); checked before EAL starts
  --out DIR               write events.csv, summary.json and held.pcap here
  --exit-when-idle-ms N   stop once nothing has moved for N ms (replays)
  --duration-ms N         stop after N ms
  --json                  at exit, print the whole summary as JSON (summary.json's
                          contents) instead of the short text one
  --hlog                  write latency.hlog in --out: an HdrHistogram interval log of
                          hold time and tap round trip, one pair per stats interval
  --metrics-listen A:P    serve Prometheus metrics (taphold_*) on http://A:P/metrics
  --help, -h              this text
  --version, -V           the version and the commit it was built from

While it runs, dpdk-telemetry.py -f PREFIX answers /taphold/stats, /taphold/links,
/taphold/mode and /taphold/latency.

Exit status: 0 a clean stop; 1 a panic (held messages still accounted);
2 bad arguments or config, a damaged state file, or a start-up failure;
3 the run ended failed closed (mode halt).";

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut a = Args::new(args, USAGE);
        while let Some(flag) = a.flag() {
            match flag {
                "--config" => o.config = a.value(flag)?,
                "--out" => o.out = Some(a.value(flag)?.into()),
                "--exit-when-idle-ms" => o.exit_when_idle_ms = Some(a.number(flag)?),
                "--duration-ms" => o.duration_ms = Some(a.number(flag)?),
                "--json" => o.json = true,
                "--hlog" => o.hlog = true,
                "--metrics-listen" => {
                    let v = a.value(flag)?;
                    o.metrics_listen = Some(v.parse().map_err(|_| {
                        format!("--metrics-listen: `{v}` is not ADDR:PORT (e.g. 127.0.0.1:9464)")
                    })?);
                }
                other => return Err(a.unknown(other)),
            }
        }
        if o.config.is_empty() {
            return Err(format!("--config is required\n{USAGE}"));
        }
        if o.hlog && o.out.is_none() {
            return Err(format!(
                "--hlog writes latency.hlog in --out DIR: give one\n{USAGE}"
            ));
        }
        Ok(o)
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    install_panic_hook();
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("taphold: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// `taphold keygen --out FILE`.
fn keygen(args: &[String]) -> Result<i32, String> {
    match args {
        [flag, path] if flag == "--out" => {
            let id = taphold_runtime::key::write_new_key_file(std::path::Path::new(path))?;
            println!("{path}: a new key, key id {id:#04x}");
            Ok(0)
        }
        [p, flag, path] if p == "--payload" && flag == "--out" => {
            let f = taphold_runtime::key::write_new_payload_key_file(std::path::Path::new(path))?;
            println!("{path}: a new payload key, fingerprint {f:#04x}");
            Ok(0)
        }
        _ => Err("usage: taphold keygen [--payload] --out FILE".to_string()),
    }
}

fn run() -> Result<i32, String> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "keygen") {
        return keygen(&args[2..]);
    }
    if let Some(text) = taphold_runtime::args::early(&args, "taphold", HELP) {
        println!("{text}");
        return Ok(0);
    }
    // Validate the app arguments and config before EAL starts, when they are
    // present after `--`: a typo should not cost a DPDK start-up.
    if let Some(i) = args.iter().position(|a| a == "--") {
        let opts = Opts::parse(&args[i + 1..])?;
        config::Config::load(&opts.config).map_err(|e| e.to_string())?;
    }
    let (eal, app_args) = dpdk::Eal::init(&args).map_err(|e| e.to_string())?;
    let opts = Opts::parse(&app_args)?;
    let cfg = config::Config::load(&opts.config).map_err(|e| e.to_string())?;
    if taphold_runtime::key::is_demo(&cfg.digest_key.0) {
        log::warn!("{}", taphold_runtime::key::DEMO_WARNING);
    }
    if cfg.keys.confirm_shared {
        log::warn!("SHARED KEY: confirmations are sealed with the backup-link key (no confirm_key_file): a source that checks its confirmations holds a key that seals backup frames");
    }
    if cfg.keys.arbiter_shared {
        log::warn!("SHARED KEY: target confirmations are checked with the backup-link key (no arbiter_key_file): the arbiter holds a key that seals backup frames");
    }
    // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    // The epoch is persisted before anything is accepted; a damaged state file
    // stops us here, naming it.
    let lease = taphold_runtime::epoch::take_next(
        &cfg.state_dir,
        cfg.stream_id,
        taphold_runtime::epoch::unix_now_s(),
    )
    .map_err(|e| e.to_string())?;
    log::info!(
        "stream {} epoch {} (previous {}), state file {}",
        lease.stream,
        lease.epoch,
        lease.previous,
        lease.path.display()
    );
    let app = appliance::Appliance::build(&eal, &cfg, lease).map_err(|e| e.to_string())?;
    app.run(&opts, &SIGNALLED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = Opts::parse(&v("--config c.yaml --out /tmp/o --exit-when-idle-ms 300")).unwrap();
        assert_eq!(o.config, "c.yaml");
        assert_eq!(o.out.as_deref(), Some(std::path::Path::new("/tmp/o")));
        assert_eq!(o.exit_when_idle_ms, Some(300));
        assert_eq!(o.duration_ms, None);
    }

    #[test]
    fn refuses_bad_options_with_a_reason() {
        assert!(Opts::parse(&v("--out x"))
            .unwrap_err()
            .contains("--config is required"));
        assert!(Opts::parse(&v("--config"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(Opts::parse(&v("--config c --bogus"))
            .unwrap_err()
            .contains("--bogus"));
        assert!(Opts::parse(&v("--config c --duration-ms soon"))
            .unwrap_err()
            .contains("not a number"));
    }
}

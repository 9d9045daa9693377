//! taphold-arbiter — the destination's arbiter over kernel UDP sockets.
//!
//! `taphold-arbiter --config FILE [--out DIR] [--duration-ms N] [--exit-when-idle-ms N]`
//!
//! Takes one stream's delivery datagrams on each configured input (A: the appliance; B: a
//! backup node, a second appliance, the answers to resend requests), delivers the first copy
//! of each (epoch, seq) in seq order to a UDP address or stdout, asks the backup nodes for
//! gaps, confirms deliveries, and persists where each epoch stands. The logic is the
//! library's (`taphold_arbiter::Arbiter`); this is the sockets, the config and the summary.
//! SIGINT/SIGTERM stop it cleanly: a final target confirmation, the state written, the
//! summary printed (and written to `--out DIR/summary.json`). Exit codes: `service::exit`
//! and docs/arbiter.md.

mod config;
mod service;

use std::sync::atomic::{AtomicBool, Ordering};

use taphold_runtime::args::Args;

use crate::service::{exit, RunOpts, Service};

/// Set by SIGINT/SIGTERM; async-signal-safe (a single atomic store).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

const USAGE: &str =
    "usage: taphold-arbiter --config FILE [--out DIR] [--duration-ms N] [--exit-when-idle-ms N]";

/// `--help`: the options and the exit codes (docs/arbiter.md has the rest).
const HELP: &str =
    "usage: taphold-arbiter --config FILE [--out DIR] [--duration-ms N] [--exit-when-idle-ms N]

  --config FILE           the YAML config (docs/arbiter.md)
  --out DIR               write summary.json here
  --duration-ms N         stop after N ms
  --exit-when-idle-ms N   stop once no datagram has arrived for N ms
  --help, -h / --version, -V

Exit status: 0 stopped cleanly, everything seen delivered; 1 stopped with seqs
skipped or a gap still open; 2 bad options or config; 3 could not start (state
file damaged or locked, socket not bound); 4 stopped on a failure (state write
or delivery output).";

#[derive(Debug, Default, PartialEq)]
struct Opts {
    config: String,
    out: Option<std::path::PathBuf>,
    duration_ms: Option<u64>,
    exit_when_idle_ms: Option<u64>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut a = Args::new(args, USAGE);
        while let Some(flag) = a.flag() {
            match flag {
                "--config" => o.config = a.value(flag)?,
                "--out" => o.out = Some(a.value(flag)?.into()),
                "--duration-ms" => o.duration_ms = Some(a.number(flag)?),
                "--exit-when-idle-ms" => o.exit_when_idle_ms = Some(a.number(flag)?),
                other => return Err(a.unknown(other)),
            }
        }
        if o.config.is_empty() {
            return Err(format!("--config is required\n{USAGE}"));
        }
        Ok(o)
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let all: Vec<String> = std::env::args().collect();
    if let Some(text) = taphold_runtime::args::early(&all, "taphold-arbiter", HELP) {
        println!("{text}");
        return;
    }
    let args: Vec<String> = all[1..].to_vec();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("taphold-arbiter: {e}");
            std::process::exit(exit::USAGE);
        }
    };
    let cfg = match config::Config::load(&opts.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("taphold-arbiter: {e}");
            std::process::exit(exit::USAGE);
        }
    };
    // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let service = match Service::open(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("taphold-arbiter: {e}");
            std::process::exit(exit::START);
        }
    };
    let run = RunOpts {
        duration_ms: opts.duration_ms,
        exit_when_idle_ms: opts.exit_when_idle_ms,
    };
    let code = service.run(&run, opts.out.as_deref(), &SIGNALLED);
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_parse_and_mistakes_are_named() {
        let o = Opts::parse(&v(
            "--config c.yaml --out /tmp/o --duration-ms 5 --exit-when-idle-ms 300",
        ))
        .unwrap();
        assert_eq!(o.config, "c.yaml");
        assert_eq!(o.out.as_deref(), Some(std::path::Path::new("/tmp/o")));
        assert_eq!((o.duration_ms, o.exit_when_idle_ms), (Some(5), Some(300)));
        assert!(Opts::parse(&v("--out x"))
            .unwrap_err()
            .contains("--config is required"));
        assert!(Opts::parse(&v("--config c --duration-ms soon"))
            .unwrap_err()
            .contains("not a number"));
        assert!(Opts::parse(&v("--config c --bogus"))
            .unwrap_err()
            .contains("unknown argument `--bogus`"));
    }
}

//! taphold-backup — the backup node at the far end of one backup link.
//!
//! ```text
//! taphold-backup [EAL args] -- --config FILE [--exit-when-idle-ms N] [--duration-ms N]
//!                               [--stats-json FILE]
//! taphold-backup journal inspect DIR
//! taphold-backup journal export DIR [--stream S] [--epoch E] [--from SEQ] [--format jsonl|pcap] ...
//! taphold-backup journal flows DIR
//! taphold-backup journal export DIR --flow F [--decode fix] [--out FILE]
//! taphold-backup recover DIR --flow F --decode fix [--out FILE]
//! taphold-backup status --control PATH
//! taphold-backup takeover --control PATH
//! ```
//!
//! The first form journals every backup frame the appliance sends on the link, acks
//! cumulatively once the journal is synced, and exchanges heartbeats (`node.rs`). The
//! poll loop runs on the main lcore: `-l 0` is enough. SIGINT/SIGTERM sync the journal,
//! print the summary and exit 0. The other forms need no EAL and change nothing:
//! `inspect` prints what is in a journal directory, run by run, and exits 1 if it found
//! any problem; `export` writes every journaled message in order (export.rs). `status`
//! and `takeover` reach a running node through its control socket (control.rs) and
//! print its reply: the node's state, or the takeover's report once it is done.
//!
//! Exit codes: 0 done; 1 a journal problem (inspect or export found one, the journal
//! failed while running, or refused to open the run the appliance named), or the node
//! answered a control command with an error; 2 a usage, configuration or DPDK start-up
//! error, or no node answers on the control socket.

mod config;
mod control;
mod destination;
mod export;
mod flow_export;
mod flows;
mod node;
mod takeover;

use taphold_runtime::args::Args;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[global_allocator]
static ALLOC: taphold_runtime::alloc_count::CountingAlloc =
    taphold_runtime::alloc_count::CountingAlloc;

/// Set by SIGINT/SIGTERM; async-signal-safe (a single atomic store).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

const USAGE: &str = "usage: taphold-backup [EAL args] -- --config FILE [--exit-when-idle-ms N] [--duration-ms N] [--stats-json FILE] [--metrics-listen ADDR:PORT]\n       taphold-backup journal inspect DIR\n       taphold-backup journal export DIR [--stream S] [--epoch E] [--from SEQ] [--format jsonl|pcap] [--out FILE] [--to IP:PORT] [--framing taphold|raw] [--payload-key-file FILE]\n       taphold-backup journal flows DIR\n       taphold-backup journal export DIR --flow SRCIP:SRCPORT-DSTIP:DSTPORT [--decode fix] [--out FILE]\n       taphold-backup recover DIR --flow SRCIP:SRCPORT-DSTIP:DSTPORT --decode fix [--out FILE]\n       taphold-backup status --control PATH\n       taphold-backup takeover --control PATH";

/// `--help`: the usage, the options, the exit codes, the live state.
const HELP_MORE: &str = "
  --config FILE           the YAML config (docs/backup-node.md)
  --stats-json FILE       write the exit summary here too
  --metrics-listen A:P    serve Prometheus metrics (taphold_backup_*) on http://A:P/metrics
  --exit-when-idle-ms N / --duration-ms N   stop when idle / after N ms
  --help, -h / --version, -V

While it runs: dpdk-telemetry.py -f PREFIX answers /taphold_backup/stats,
/taphold_backup/journal and /taphold_backup/takeover (DPDK takes no - in a command); `status --control PATH` the
whole state.

Exit status: 0 a clean stop; 1 the journal failed or is damaged (named); 2 bad
arguments or config, or a start-up failure. `status`/`takeover`: 0 the node
answered, 1 it answered with an error, 2 usage or no node on that socket.
`journal inspect`: 0 clean, 1 problems, 2 unreadable.";

/// Command-line options after EAL's `--`.
#[derive(Debug, Default, PartialEq)]
pub struct Opts {
    pub config: String,
    pub run: node::RunOpts,
    pub stats_json: Option<PathBuf>,
    /// Serve Prometheus metrics here.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut a = Args::new(args, USAGE);
        while let Some(flag) = a.flag() {
            match flag {
                "--config" => o.config = a.value(flag)?,
                "--exit-when-idle-ms" => o.run.exit_when_idle_ms = Some(a.number(flag)?),
                "--duration-ms" => o.run.duration_ms = Some(a.number(flag)?),
                "--stats-json" => o.stats_json = Some(a.value(flag)?.into()),
                "--metrics-listen" => {
                    let v = a.value(flag)?;
                    o.metrics_listen = Some(v.parse().map_err(|_| {
                        format!("--metrics-listen: `{v}` is not ADDR:PORT (e.g. 127.0.0.1:9465)")
                    })?);
                }
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
    let args: Vec<String> = std::env::args().collect();
    if let Some(text) =
        taphold_runtime::args::early(&args, "taphold-backup", &format!("{USAGE}\n{HELP_MORE}"))
    {
        println!("{text}");
        std::process::exit(0);
    }
    let code = if args.get(1).map(String::as_str) == Some("journal") {
        journal_command(&args[2..])
    } else if args.get(1).map(String::as_str) == Some("recover") {
        flow_export::flow_command(&args[2..], true)
    } else if let Some(req) = args.get(1).and_then(|a| match a.as_str() {
        "status" => Some(control::Request::Status),
        "takeover" => Some(control::Request::Takeover),
        _ => None,
    }) {
        control_command(req, &args[2..])
    } else {
        match run(&args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("taphold-backup: {e}");
                2
            }
        }
    };
    std::process::exit(code);
}

/// `journal inspect DIR` and `journal export DIR ...`: 0 clean, 1 problems, 2 usage
/// or unreadable.
fn journal_command(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("inspect") => {}
        Some("export") if flow_export::wants_flow(&args[1..]) => {
            return flow_export::flow_command(&args[1..], false)
        }
        Some("export") => return export_command(&args[1..]),
        Some("flows") => return flow_export::flows_command(&args[1..]),
        Some(cmd) => {
            eprintln!("unknown journal command `{cmd}`\n{USAGE}");
            return 2;
        }
        None => {
            eprintln!("{USAGE}");
            return 2;
        }
    }
    let [_, dir] = args else {
        eprintln!("{USAGE}");
        return 2;
    };
    match taphold_journal::inspect(Path::new(dir)) {
        Ok(r) => {
            println!("{r}");
            if r.is_clean() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("taphold-backup: journal {dir}: {e}");
            2
        }
    }
}

/// `journal export`: messages on stdout (or --out), what went wrong on stderr.
fn export_command(args: &[String]) -> i32 {
    let opts = match export::ExportOpts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("taphold-backup: {e}");
            return 2;
        }
    };
    match export::export(&opts) {
        Ok(r) => {
            for u in &r.unreadable {
                eprintln!("taphold-backup: journal export: {u}");
            }
            eprintln!(
                "exported {} messages from {} run(s); {} not replayable (digest only, or gateway-mode TCP segments: see --flow){}; {} duplicate records skipped",
                r.messages,
                r.runs,
                r.not_replayable,
                if opts.format == export::Format::Pcap { ", not in the pcap" } else { "" },
                r.duplicates
            );
            if r.is_clean() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("taphold-backup: journal {}: {e}", opts.dir.display());
            2
        }
    }
}

/// `status --control PATH` and `takeover --control PATH`: the node's reply on stdout
/// (0), its error on stderr (1); no node there, or usage: 2.
fn control_command(req: control::Request, args: &[String]) -> i32 {
    let path = match args {
        [flag, path] if flag == "--control" => PathBuf::from(path),
        _ => {
            eprintln!(
                "{} needs --control PATH (the node's control_socket)\n{USAGE}",
                req.name()
            );
            return 2;
        }
    };
    match control::client(&path, req) {
        Ok(reply) => {
            let error = serde_json::from_str::<serde_json::Value>(&reply)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from));
            match error {
                Some(e) => {
                    eprintln!("taphold-backup: {}: {e}", req.name());
                    1
                }
                None => {
                    print!("{reply}");
                    0
                }
            }
        }
        Err(e) => {
            eprintln!("taphold-backup: {e}");
            2
        }
    }
}

fn run(args: &[String]) -> Result<i32, String> {
    // The CPUs this process may use, read before EAL pins the main thread (and every
    // thread made after it) to the main lcore's: the control socket's thread goes on
    // another one.
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    // Validate the app arguments and config before EAL starts, when they are present
    // after `--`: a typo should not cost a DPDK start-up.
    if let Some(i) = args.iter().position(|a| a == "--") {
        let opts = Opts::parse(&args[i + 1..])?;
        config::Config::load(&opts.config).map_err(|e| e.to_string())?;
    }
    let (eal, app_args) = dpdk::Eal::init(args).map_err(|e| e.to_string())?;
    let opts = Opts::parse(&app_args)?;
    let cfg = config::Config::load(&opts.config).map_err(|e| e.to_string())?;
    if taphold_runtime::key::is_demo(&cfg.digest_key.0) {
        log::warn!("{}", taphold_runtime::key::DEMO_WARNING);
    }
    // SAFETY: on_signal only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut node = node::Node::build(&eal, &cfg)?;
    let server = match &cfg.control_socket {
        Some(path) => {
            let hot = eal.lcore_cpu(eal.main_lcore());
            let (tx, rx) = std::sync::mpsc::channel();
            node.attach_control(rx);
            let s = control::Server::start(path, control::off_hot_core(&cores, hot), tx)
                .map_err(|e| e.to_string())?;
            log::info!(
                "control socket {}: `taphold-backup status|takeover --control {}`",
                s.path().display(),
                s.path().display()
            );
            Some(s)
        }
        None => None,
    };
    live_state(&eal, &mut node, &opts, &cores)?;
    let (why, failed) = match node.run(&opts.run, &SIGNALLED) {
        Ok(why) => (why, None),
        Err(e) => ("journal failure", Some(e)),
    };
    log::info!("stopping ({why})");
    let shutdown = node.shutdown();
    let summary = node.summary(why);
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    println!("{text}");
    if let Some(p) = &opts.stats_json {
        std::fs::write(p, format!("{text}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    // The socket goes first: a command that comes now hears that the node is stopping.
    drop(server);
    drop(node);
    if let Some(e) = failed.or(shutdown.err()) {
        eprintln!("taphold-backup: {e}");
        return Ok(1);
    }
    Ok(0)
}

/// What an operator reads while the node runs: the node publishes its status
/// every stats interval; rte_telemetry commands and the metrics endpoint (a
/// thread off the poll loop's core) read that copy, never the loop's state.
fn live_state(
    eal: &dpdk::Eal,
    node: &mut node::Node,
    opts: &Opts,
    cores: &[core_affinity::CoreId],
) -> Result<(), String> {
    use taphold_runtime::metrics::{flatten, Leaf};
    let published = node.publish_status();
    // Each command: a part of the status, flattened `depth` levels down.
    let reg =
        |cmd: &str, help: &str, depth: usize, pick: fn(&serde_json::Value) -> serde_json::Value| {
            let p = published.clone();
            dpdk::telemetry::register(cmd, help, move |_, d| {
                let v = pick(&p.lock().unwrap_or_else(|e| e.into_inner()));
                for (k, leaf) in flatten(&v, depth) {
                    match leaf {
                        Leaf::Number(n) => d.u64(&k, n as u64),
                        Leaf::Text(t) => d.string(&k, &t),
                    }
                }
            })
            .map_err(|e| e.to_string())
        };
    reg(
        "/taphold_backup/stats",
        "The node's counters: frames, journaled, acks, heartbeats, trims, refusals",
        1,
        |v| v.clone(),
    )?;
    reg(
        "/taphold_backup/journal",
        "The current run's journal, and the totals over every run held (unconfirmed records)",
        2,
        |v| serde_json::json!({ "current": v["journal"], "total": v["journal_total"] }),
    )?;
    reg(
        "/taphold_backup/takeover",
        "The takeover under way or done, if any: state, replayed, unreplayable",
        1,
        |v| v["takeover"].clone(),
    )?;
    if let Some(addr) = opts.metrics_listen {
        let hot = eal.lcore_cpu(eal.main_lcore());
        let cpu = control::off_hot_core(cores, hot).map(|c| c.id);
        let p = published.clone();
        let bound =
            taphold_runtime::metrics::serve(addr, "taphold-backup-metrics", cpu, move || {
                taphold_runtime::metrics::prometheus_of(
                    "taphold_backup",
                    &p.lock().unwrap_or_else(|e| e.into_inner()),
                )
            })
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        log::info!("metrics on http://{bound}/metrics (CPU {cpu:?})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = Opts::parse(&v(
            "--config c.yaml --exit-when-idle-ms 300 --stats-json s.json --duration-ms 5",
        ))
        .unwrap();
        assert_eq!(o.config, "c.yaml");
        assert_eq!(o.run.exit_when_idle_ms, Some(300));
        assert_eq!(o.run.duration_ms, Some(5));
        assert_eq!(o.stats_json.as_deref(), Some(Path::new("s.json")));
    }

    #[test]
    fn refuses_bad_options_with_a_reason() {
        assert!(Opts::parse(&v("--duration-ms 1"))
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

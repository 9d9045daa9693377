//! The targets, one file each. To add one: write `NAME.rs` with `pub const TARGET:
//! Target` (its function and its seeds) and add `NAME::TARGET` to [`ALL`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Target;

pub mod arbiter;
pub mod arbiter_state;
pub mod arp;
pub mod classify;
pub mod config_appliance;
pub mod config_arbiter;
pub mod config_backup;
pub mod delivery;
pub mod epoch_file;
pub mod ethernet;
pub mod gateway;
pub mod ipv4;
pub mod journal_record;
pub mod journal_run;
pub mod journal_seals;
pub mod link;
pub mod pdu;
pub mod tcp;
pub mod udp;

/// Every target, by name.
pub const ALL: &[&Target] = &[
    &ethernet::TARGET,
    &arp::TARGET,
    &ipv4::TARGET,
    &udp::TARGET,
    &tcp::TARGET,
    &pdu::TARGET,
    &delivery::TARGET,
    &link::TARGET,
    &classify::TARGET,
    &gateway::TARGET,
    &journal_record::TARGET,
    &journal_seals::TARGET,
    &journal_run::TARGET,
    &config_appliance::TARGET,
    &config_backup::TARGET,
    &config_arbiter::TARGET,
    &arbiter::TARGET,
    &arbiter_state::TARGET,
    &epoch_file::TARGET,
];

/// Inputs longer than this are returned from at once by the targets that parse text or
/// files (YAML, journal runs): AFL's own limit is 1 MiB, and long inputs only slow it.
pub const MAX_INPUT: usize = 256 * 1024;

/// An empty directory of its own (tests replay targets on several threads at once),
/// under `TAPHOLD_FUZZ_SCRATCH` or the system's temporary directory (scripts/fuzz.sh
/// points it at /dev/shm: the journal targets write files on every input). Removed
/// when dropped, panic or not.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = std::env::var_os("TAPHOLD_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("taphold-fuzz-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("scratch directory {}: {e}", dir.display()));
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prefixes every seed with a mode byte (for targets whose first byte selects fix-ups).
pub(crate) fn with_mode(mode: u8, seeds: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    seeds
        .into_iter()
        .map(|s| {
            let mut v = Vec::with_capacity(s.len() + 1);
            v.push(mode);
            v.extend_from_slice(&s);
            v
        })
        .collect()
}

/// What every config error must be: about this file, naming a field, saying what is
/// wrong, on a line the text has.
pub(crate) fn check_config_error(e: &taphold_runtime::yaml::ConfigError, file: &str, text: &str) {
    assert!(
        e.file == file || e.file.starts_with(file),
        "error about {:?}",
        e.file
    );
    assert!(!e.field.is_empty(), "an error naming no field: {e}");
    assert!(!e.message.is_empty(), "an error saying nothing: {e:?}");
    if let Some(line) = e.line {
        let lines = text.split('\n').count();
        assert!(
            line >= 1 && line <= lines,
            "line {line} of a {lines}-line text: {e}"
        );
    }
    let _ = e.to_string();
}

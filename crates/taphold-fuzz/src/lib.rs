//! Coverage-guided fuzz targets for every parser taphold runs on bytes it did not write:
//! the wire views (Ethernet, ARP, IPv4, UDP), the taphold PDUs and the delivery header,
//! backup-link framing, the primary-port classifier (and the release rewrite behind it),
//! journal records, seals and whole run directories, and the three config loaders.
//!
//! Each target is a plain function `fn(&[u8])` that must never panic on any input and
//! asserts what is cheap to check (a parsed `Repr` emits back to the bytes it came from,
//! nothing past the length a header claims changes the result, an accepted message
//! survives the release rewrite). A panic is the finding. The same functions run three
//! ways:
//! - under AFL++ (`scripts/fuzz.sh TARGET SECONDS`, the `taphold-fuzz-afl` binary, built
//!   by cargo-afl on stable Rust with the `afl` feature);
//! - in `cargo test` (`tests/replay.rs`), over the seed corpus and every regression input
//!   in `regressions/TARGET/`, so CI checks them where AFL cannot run;
//! - from `taphold-fuzz-seeds`, which writes a target's seed corpus for AFL.
//!
//! The seeds ([`seeds`]) are derived at run time from the shipped captures
//! (`test-pcaps/*.pcap`) and configs, through the product's own emitters: nothing binary
//! is checked in but the regression inputs.
//!
//! Adding a target: a file in `src/targets/` with a `pub const TARGET: Target` and one line
//! in [`targets::ALL`] (see docs/fuzzing.md).

pub mod seeds;
pub mod targets;

pub use seeds::Material;

/// One fuzz target.
pub struct Target {
    /// Its name: `scripts/fuzz.sh NAME`, `regressions/NAME/`.
    pub name: &'static str,
    /// The function under test: returns on every input, panics on a finding.
    pub run: fn(&[u8]),
    /// Its seed corpus, derived from the shipped captures and configs.
    pub seeds: fn(&Material) -> Vec<Vec<u8>>,
}

/// The target named `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    targets::ALL.iter().copied().find(|t| t.name == name)
}

/// The repository's root (for the captures, configs and regression inputs).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where a target's regression inputs live: `crates/taphold-fuzz/regressions/NAME/`.
pub fn regression_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(name)
}

/// A target's regression inputs: (file name, bytes), in name order.
pub fn regressions(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(regression_dir(name)) {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') || file == "README.md" {
                continue;
            }
            let bytes = std::fs::read(e.path())
                .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
            out.push((file, bytes));
        }
    }
    out.sort();
    out
}

//! The appliance's config loader: YAML text in, a config or an error naming the field and
//! its line out, never a panic. The loader is `taphold/src/config.rs`, compiled here as it is
//! in the binary (it is a module of the binary, not of a library).

use super::MAX_INPUT;
use crate::{Material, Target};

#[allow(dead_code, clippy::all)]
#[path = "../../../taphold/src/config.rs"]
mod loader;

pub const TARGET: Target = Target {
    name: "config_appliance",
    run,
    seeds,
};

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    m.appliance_configs
        .iter()
        .map(|(_, t)| t.clone().into_bytes())
        .collect()
}

/// The name the text is parsed under: a directory that does not exist, so that a relative
/// key file the input names is not found.
const FILE: &str = "/nonexistent/taphold-fuzz/config_appliance.yaml";

pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = loader::Config::parse(FILE, text) {
        super::check_config_error(&e, FILE, text);
    }
}

/// Whether the loader accepts `text` (the seeds' test: the shipped configs must).
pub fn accepts(text: &str) -> Result<(), String> {
    loader::Config::parse(FILE, text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

//! The arbiter's config loader: YAML text in, a config or an error naming the field and
//! its line out, never a panic. The loader is `taphold-arbiter/src/config.rs`, compiled here as it is
//! in the binary (it is a module of the binary, not of a library).

use super::MAX_INPUT;
use crate::{Material, Target};

#[allow(dead_code, clippy::all)]
#[path = "../../../taphold-arbiter/src/config.rs"]
mod loader;

pub const TARGET: Target = Target {
    name: "config_arbiter",
    run,
    seeds,
};

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    m.arbiter_configs
        .iter()
        .map(|(_, t)| t.clone().into_bytes())
        .collect()
}

pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: a relative key file named by the input is not found.
    let file = "/nonexistent/taphold-fuzz/config_arbiter.yaml";
    match loader::Config::parse(file, text) {
        Ok(_) => {}
        Err(e) => super::check_config_error(&e, file, text),
    }
}

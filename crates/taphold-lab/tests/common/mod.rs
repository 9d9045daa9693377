//! Shared by the lab's tests: the root/iproute2 gate and paths.
#![allow(dead_code)]

pub mod fix;
pub mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The lab tests need root, `ip` and `tc`. Without them they FAIL with a
/// message (CI is root; a silently skipped test proves nothing) unless
/// TAPHOLD_SKIP_LAB=1 says to skip. Returns false when skipping.
pub fn lab_available(test: &str) -> bool {
    if std::env::var("TAPHOLD_SKIP_LAB").as_deref() == Ok("1") {
        eprintln!("{test}: skipped (TAPHOLD_SKIP_LAB=1)");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let has = |tool: &str, arg: &str| {
        Command::new(tool)
            .arg(arg)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let mut missing = Vec::new();
    if !root {
        missing.push("root (network namespaces)");
    }
    if !has("ip", "-V") {
        missing.push("`ip` (iproute2)");
    }
    if !has("tc", "-V") {
        missing.push("`tc` (iproute2)");
    }
    assert!(
        missing.is_empty(),
        "{test}: the live lab needs {}; run as root with iproute2 installed, \
         or set TAPHOLD_SKIP_LAB=1 to skip the lab tests deliberately",
        missing.join(", ")
    );
    true
}

/// A prefix unique to this test process (`th` + a letter + pid digits).
pub fn prefix(letter: char) -> String {
    format!("th{letter}{}", std::process::id() % 100_000)
}

pub fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

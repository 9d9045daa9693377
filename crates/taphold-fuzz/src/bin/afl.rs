//! The AFL++ harness: one persistent-mode binary for every target, the target named by
//! `TAPHOLD_FUZZ_TARGET` (scripts/fuzz.sh sets it). Built only by
//! `cargo afl build --features afl`.

fn main() {
    let name = std::env::var("TAPHOLD_FUZZ_TARGET").unwrap_or_default();
    let Some(target) = taphold_fuzz::find(&name) else {
        let names: Vec<_> = taphold_fuzz::targets::ALL.iter().map(|t| t.name).collect();
        eprintln!(
            "taphold-fuzz-afl: set TAPHOLD_FUZZ_TARGET to one of: {}",
            names.join(" ")
        );
        std::process::exit(2);
    };
    let run = target.run;
    afl::fuzz!(|data: &[u8]| run(data));
}

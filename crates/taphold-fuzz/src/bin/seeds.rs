//! Writes a target's seed corpus: `taphold-fuzz-seeds TARGET DIR` (one file per seed),
//! or `taphold-fuzz-seeds --list` for the target names. The seeds and the target's
//! regression inputs both go in: AFL starts from what has been found before.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for t in taphold_fuzz::targets::ALL {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let [name, dir] = &args[..] else {
        eprintln!("usage: taphold-fuzz-seeds TARGET DIR | --list");
        return ExitCode::from(2);
    };
    let Some(target) = taphold_fuzz::find(name) else {
        eprintln!("taphold-fuzz-seeds: no target {name:?} (--list names them)");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut seeds = (target.seeds)(&taphold_fuzz::Material::load());
    seeds.extend(taphold_fuzz::regressions(name).into_iter().map(|(_, b)| b));
    for (i, s) in seeds.iter().enumerate() {
        let path = dir.join(format!("seed-{i:04}"));
        if let Err(e) = std::fs::write(&path, s) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{} seeds for {name} in {}", seeds.len(), dir.display());
    ExitCode::SUCCESS
}

//! Every target over its seed corpus and its regression inputs, without AFL: what CI
//! checks where AFL cannot run, and what keeps a fixed finding fixed.

use taphold_fuzz::{regressions, targets, Material};

/// Every target of `targets::ALL`, so that a new target is replayed here without
/// further ado. Each one's failures are collected, so one run names them all.
#[test]
fn every_target_replays_its_seeds_and_regression_inputs() {
    let m = Material::load();
    let mut failed = Vec::new();
    for t in targets::ALL {
        let seeds = (t.seeds)(&m);
        assert!(!seeds.is_empty(), "{}: no seeds", t.name);
        for (i, s) in seeds.iter().enumerate() {
            if std::panic::catch_unwind(|| (t.run)(s)).is_err() {
                failed.push(format!("{}: seed {i}", t.name));
            }
        }
        for (file, bytes) in regressions(t.name) {
            if std::panic::catch_unwind(|| (t.run)(&bytes)).is_err() {
                failed.push(format!("{}: regressions/{}/{file}", t.name, t.name));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "failing inputs (panics above):\n{}",
        failed.join("\n")
    );
}

#[test]
fn every_regression_directory_is_a_target() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for e in std::fs::read_dir(dir).expect("regressions/") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            name == "README.md" || taphold_fuzz::find(&name).is_some(),
            "regressions/{name}/ names no target: its inputs would never be replayed"
        );
    }
}

/// The seeds reach past the first checks: otherwise the fuzzer starts from nothing.
#[test]
fn seeds_reach_past_the_first_checks() {
    use taphold_fuzz::seeds::{KEY, PRIMARY};
    use taphold_fuzz::targets::{config_appliance, config_arbiter, config_backup};
    use taphold_wire::classify::{classify, Classified};
    use taphold_wire::taphold::Packet;

    let m = Material::load();
    let classified: Vec<_> = m
        .frame_sample()
        .iter()
        .map(|f| classify(f, &PRIMARY))
        .collect();
    assert!(classified
        .iter()
        .any(|c| matches!(c, Classified::Message(_))));
    assert!(classified
        .iter()
        .any(|c| matches!(c, Classified::ArpRequest)));
    assert!(
        classified
            .iter()
            .filter(|c| matches!(c, Classified::Drop(_)))
            .count()
            >= 10
    );
    let pdus = m.pdus();
    assert!(pdus.len() > 20);
    for p in &pdus {
        let v = Packet::new_checked(&p[..]).expect("a seed PDU checks");
        v.verify_digest(&KEY)
            .expect("a seed PDU is sealed with the fuzzing key");
    }
    // The arbiter's first seed is a dozen messages in order: all delivered.
    let events = taphold_fuzz::targets::arbiter::seeds(&m);
    let mut a = taphold_fuzz::targets::arbiter::arbiter(taphold_arbiter::OnGap::Skip);
    taphold_fuzz::targets::arbiter::run_on(&mut a, &events[0]);
    let cp = a.checkpoint();
    assert!(
        cp.epochs.iter().any(|e| e.epoch == 9 && e.delivered == 12),
        "{cp:?}"
    );
    let journal = m.journal_run();
    let names: Vec<_> = journal.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"seals") && names.contains(&"trim-floor"),
        "{names:?}"
    );
    assert!(
        names.iter().filter(|n| n.ends_with(".journal")).count() >= 2,
        "{names:?}"
    );
    for (accepts, configs) in [
        (
            config_appliance::accepts as fn(&str) -> Result<(), String>,
            &m.appliance_configs,
        ),
        (config_backup::accepts, &m.backup_configs),
        (config_arbiter::accepts, &m.arbiter_configs),
    ] {
        assert!(!configs.is_empty());
        for (path, text) in configs {
            match accepts(text) {
                Ok(()) => {}
                // production.example.yaml names the key file a server has: everything
                // else in it was read and validated before the key file is opened.
                Err(e) if e.contains("digest_key_file: /etc/taphold/") => {}
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
}

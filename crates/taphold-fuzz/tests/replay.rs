//! Every target over its seed corpus and its regression inputs, without AFL: what CI
//! checks where AFL cannot run, and what keeps a fixed finding fixed.

use taphold_fuzz::{regressions, targets, Material};

fn replay(name: &str) {
    let t = taphold_fuzz::find(name).unwrap_or_else(|| panic!("no target {name}"));
    let seeds = (t.seeds)(&Material::load());
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for s in &seeds {
        (t.run)(s);
    }
    for (file, bytes) in regressions(name) {
        let r = std::panic::catch_unwind(|| (t.run)(&bytes));
        assert!(r.is_ok(), "{name}: regression input {file} fails");
    }
}

#[test]
fn every_target_is_replayed_here() {
    // A target added to the table without a test below would go unchecked in CI.
    let tested = [
        "ethernet",
        "arp",
        "ipv4",
        "udp",
        "pdu",
        "delivery",
        "link",
        "classify",
        "journal_record",
        "journal_seals",
        "journal_run",
        "config_appliance",
        "config_backup",
        "config_arbiter",
    ];
    let all: Vec<_> = targets::ALL.iter().map(|t| t.name).collect();
    assert_eq!(all, tested);
}

macro_rules! replay_tests {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            replay(stringify!($name));
        }
    )*};
}

replay_tests!(
    ethernet,
    arp,
    ipv4,
    udp,
    pdu,
    delivery,
    link,
    classify,
    journal_record,
    journal_seals,
    journal_run,
    config_appliance,
    config_backup,
    config_arbiter
);

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

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

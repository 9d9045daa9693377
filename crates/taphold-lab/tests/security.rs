//! The attacks of issue 14, live: real frames injected by tools/lab/attack.py
//! (raw sockets in the lab's namespaces) while the source sends. Each is
//! refused and counted by name; nothing an attacker does releases a message
//! that was not protected. See docs/security.md.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::lab::*;
use common::repo;

/// A background attacker, killed (with its process group) on drop.
struct Attacker(Child);

impl Attacker {
    /// `sh -c SCRIPT` in a process group of its own.
    fn start(script: &str, log: &std::path::Path) -> Attacker {
        use std::os::unix::process::CommandExt;
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .process_group(0)
            .spawn()
            .unwrap();
        // Let the raw sockets open before traffic starts.
        std::thread::sleep(Duration::from_millis(300));
        Attacker(child)
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // SAFETY: the process group of a child we spawned (pgid = its pid).
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn attack_py() -> String {
    repo().join("tools/lab/attack.py").display().to_string()
}

fn lab_sh(c: &Case) -> String {
    format!(
        "LAB_PREFIX={} LAB_BIN_DIR={} {}",
        c.lab.prefix,
        c.lab.bin_dir.display(),
        repo().join("scripts/lab.sh").display()
    )
}

/// Issue 14, attacks 1 and 3, live. `policy: all` over b1 and b2; from the
/// start every frame on b1's tap path is bridged to b2's tap port,
/// re-addressed as b2's, and authentic acks of another epoch (an earlier
/// run's, replayed) arrive on b1. Then b2's tap is cut mid-stream. Before
/// version 4 the bridged copies kept b2 alive and confirmed every message;
/// now each is refused (`tap.b2.wrong_link`), b2 goes down and
/// the appliance fails closed: what it released is an in-order prefix,
/// everything else held. The replayed acks are all refused by name.
#[test]
fn a_frame_bridged_from_another_link_never_confirms() {
    const T: &str = "a_frame_bridged_from_another_link_never_confirms";
    let Some(c) = case(T, 's') else { return };
    let all = policy("all");
    let config = c.config("bridged", &[(all.0, &all.1)]);
    let p = &c.lab.prefix;
    let lab = lab_sh(&c);
    let py = attack_py();
    let key = taphold_runtime::key::DEMO_KEY_HEX;
    let _bridge = Attacker::start(
        &format!(
            "{lab} exec tap1 python3 -u {py} sniff {p}-t1x | {lab} exec tap2 python3 -u {py} inject {p}-t2y 02:00:00:00:0c:02 02:00:00:00:0b:02"
        ),
        &c.out.join("bridge.log"),
    );
    let mut run = c.start("bridged", &config);
    let _acks = Attacker::start(
        &format!(
            "{lab} exec node1 python3 -u {py} acks {p}-n1 02:00:00:00:0b:01 02:00:00:00:0c:01 {key} 0 1000000 100"
        ),
        &c.out.join("acks.log"),
    );
    run.source(2000, 2000, "1");
    run.at(Duration::from_millis(500));
    c.lab.run(&["tap", "2", "cut"]);
    let o = run.finish();
    c.lab.run(&["tap", "2", "restore"]);
    let bridge_log = std::fs::read_to_string(c.out.join("bridge.log")).unwrap_or_default();
    assert!(
        o.n("tap.b2.wrong_link") > 0,
        "{:#}\n{bridge_log}",
        o.sum["tap"]["b2"]
    );
    assert_eq!(o.n("tap.b2.corrupt"), 0);
    assert_eq!(
        o.n("link_rx.b1.ack_wrong_epoch"),
        100,
        "{:#}",
        o.sum["link_rx"]["b1"]
    );
    assert!(
        // tap_silent, or ack_late if node 2's acks are late first on a
        // loaded machine: either way the bridged copies did not keep it up.
        o.transitions("b2")
            .iter()
            .any(|t| t.1 == "down" && (t.2 == "tap_silent" || t.2 == "ack_late")),
        "{:?}",
        o.transitions("b2")
    );
    assert_eq!(o.sum["mode"]["final"], "halt");
    let released = o.released_prefix_rest_held("bridged");
    assert!(
        released < o.n("messages.accepted"),
        "{:#}",
        o.sum["messages"]
    );
    c.done(T);
}

/// Issue 14, attack 2, live: node 1 stopped, and on its port a reflector
/// sends the appliance's heartbeats back, addresses swapped. None is taken
/// for the node's (`link_rx.b1.reflected`, no heartbeat counted): b1 goes
/// down (`peer_heartbeat_late`), as with no node at all, and nothing is
/// released.
#[test]
fn a_reflector_is_no_backup_node() {
    const T: &str = "a_reflector_is_no_backup_node";
    let Some(c) = case(T, 'r') else { return };
    let config = c.config("reflect", &[B2_STANDBY]);
    c.lab.node(1, "stop");
    let p = &c.lab.prefix;
    let lab = lab_sh(&c);
    let py = attack_py();
    let _reflector = Attacker::start(
        &format!("{lab} exec node1 python3 -u {py} reflect {p}-n1 02:00:00:00:0b:01"),
        &c.out.join("reflect.log"),
    );
    let mut run = c.start("reflect", &config);
    run.source(100, 1000, "1");
    let o = run.finish();
    let why = std::fs::read_to_string(c.out.join("reflect.log")).unwrap_or_default();
    assert!(
        o.n("link_rx.b1.reflected") > 0,
        "{:#}\n{why}",
        o.sum["link_rx"]["b1"]
    );
    assert_eq!(
        o.n("link_rx.b1.heartbeats"),
        0,
        "{:#}",
        o.sum["link_rx"]["b1"]
    );
    assert!(
        o.transitions("b1")
            .iter()
            .any(|t| t.1 == "down" && t.2 == "peer_heartbeat_late"),
        "{:?}",
        o.transitions("b1")
    );
    assert_eq!(o.n("messages.released"), 0);
    assert!(o.arrivals().is_empty());
    c.done(T);
}

/// Issue 14: a key rotation under traffic loses nothing. The appliance and
/// both nodes hold the current backup-link key and the next one; all switch
/// to sealing with the next one at the same second, in the middle of the
/// stream. Every message is released once, in order, confirmed, and
/// journaled by both nodes; nothing anywhere names an unknown key; the
/// journals hold frames sealed under each key.
#[test]
fn a_key_rotation_under_traffic_loses_nothing() {
    use std::os::unix::fs::PermissionsExt;
    const T: &str = "a_key_rotation_under_traffic_loses_nothing";
    const MESSAGES: u64 = 6000;
    let Some(c) = case(T, 'k') else { return };
    let demo =
        taphold_wire::digest::DigestKey::from_hex(taphold_runtime::key::DEMO_KEY_HEX).unwrap();
    // A next key whose id differs from the current one's (as the config requires).
    let next = (1u8..)
        .map(|i| taphold_wire::digest::DigestKey([i.wrapping_mul(37); 16]))
        .find(|k| k.id() != demo.id())
        .unwrap();
    let kf = c.out.join("next.key");
    let hex: String = next.0.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&kf, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The switch: 8 s from now, time for the nodes to restart; the appliance
    // starts 2 s before it, so that it falls inside the 3 s stream.
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let from = unix().as_secs() + 8;
    let rotation = format!(
        "allow_demo_key: true\ndigest_key_next_file: {}\ndigest_key_next_from: {from}\n",
        kf.display()
    );
    let config = c.config("rotate", &[("allow_demo_key: true\n", &rotation)]);
    // The nodes take the rotation from the same config.
    for node in ["1", "2"] {
        c.lab.run(&["node", node, "stop"]);
        let mut start = c.lab.cmd(&["node", node, "start"]);
        start.env("LAB_CONFIG", &config);
        let o = start.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let start_at = Duration::from_secs(from - 2);
    let left = start_at.checked_sub(unix());
    assert!(left.is_some(), "the nodes took more than 6 s to restart");
    std::thread::sleep(left.unwrap());
    let mut run = c.start("rotate", &config);
    run.source(MESSAGES, 2000, "3");
    let o = run.finish();
    o.every_message_once_in_order(MESSAGES, "key rotation");
    assert_eq!(o.n("messages.released_unprotected"), 0);
    for link in ["b1", "b2"] {
        assert_eq!(o.n(&format!("tap.{link}.unknown_key")), 0);
        assert_eq!(o.n(&format!("tap.{link}.corrupt")), 0);
        assert_eq!(o.n(&format!("link_rx.{link}.unknown_key")), 0);
        assert_eq!(o.n(&format!("link_rx.{link}.malformed")), 0);
        assert_eq!(o.n(&format!("health.{link}.acked_seq")), MESSAGES, "{link}");
    }
    for node in [1, 2] {
        c.lab.node(node, "stop");
        let stats = c.lab.node_stats(node);
        assert_eq!(
            n(&stats, "refused.unknown_key"),
            0,
            "node {node}: {stats:#}"
        );
        assert_eq!(n(&stats, "refused.bad_digest"), 0, "node {node}: {stats:#}");
        assert_eq!(n(&stats, "journaled"), MESSAGES, "node {node}: {stats:#}");
        let dir = c.lab.node_dir(node).join("journal");
        let runs = taphold_journal::list_runs(&dir).unwrap();
        let ids: std::collections::BTreeSet<u8> = runs
            .runs
            .iter()
            .flat_map(|(_, d)| taphold_journal::read_records(d).unwrap())
            .map(|r| r.pdu[4])
            .collect();
        assert_eq!(
            ids,
            [demo.id(), next.id()].into_iter().collect(),
            "node {node}: the journal holds frames sealed under both keys"
        );
    }
    c.done(T);
}

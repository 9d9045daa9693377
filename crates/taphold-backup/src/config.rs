//! The backup node's configuration: one YAML file, read once at start-up.
//!
//! Unknown fields are errors, and every error names the field and the line it is on
//! (the same rules, and the same error mapping, as the appliance's `config.rs`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde::Deserialize;
use taphold_journal::{FsyncPolicy, JournalConfig, RunId};
pub use taphold_runtime::idle::IdlePolicy;
use taphold_runtime::yaml;
pub use taphold_runtime::yaml::{ConfigError, Hex128, Mac};
use taphold_wire::taphold::MAX_LINKS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// DPDK device name of the backup link (net_pcap0, net_af_packet0, 0000:3b:00.0).
    pub port: String,
    /// Our MAC on the link: destination of the backup frames, source of what we send.
    pub mac: Mac,
    /// The appliance's MAC on this link.
    pub peer_mac: Mac,
    /// The index the appliance gives this link (0..=3); our heartbeats and acks carry it.
    pub link: u8,
    /// The stream we journal; backup frames of another stream are refused.
    pub stream: u32,
    /// 32 hex digits: the same key as the appliance's. Written here, or in
    /// `digest_key_file`: exactly one of the two.
    #[serde(rename = "digest_key", default)]
    digest_key_inline: Option<Hex128>,
    /// A file holding the key's 32 hex digits, readable by its owner only
    /// (relative to the config file's directory).
    #[serde(default)]
    pub digest_key_file: Option<PathBuf>,
    /// The key in use: `digest_key`'s, or the one read from `digest_key_file`
    /// (`Config::parse` resolves it).
    #[serde(skip, default = "unresolved_key")]
    pub digest_key: Hex128,
    /// Key rotation: a second backup-link key file, accepted at once beside the
    /// current one (PDUs name their key by id) ...
    #[serde(default)]
    pub digest_key_next_file: Option<PathBuf>,
    /// ... and sealing our acks and heartbeats from this UNIX second (absent: never).
    #[serde(default)]
    pub digest_key_next_from: Option<u64>,
    /// The key of the arbiter's target confirmations and resend requests on port D
    /// (a file), and a next one accepted beside it. Absent: the backup-link keys.
    #[serde(default)]
    pub arbiter_key_file: Option<PathBuf>,
    #[serde(default)]
    pub arbiter_key_next_file: Option<PathBuf>,
    /// Run on the public demo key (a lab or a test).
    #[serde(default)]
    pub allow_demo_key: bool,
    /// `link_security: aead` (the appliance's): the payload key, 64 hex digits in a
    /// file, mode 0600. With it, encrypted backup frames are decrypted before they
    /// are journaled (unless `journal_ciphertext`); without it they are journaled
    /// as received.
    #[serde(default)]
    pub payload_key_file: Option<PathBuf>,
    /// Journal encrypted backup frames as received (ciphertext); `journal export
    /// --payload-key-file` decrypts them. Resend and takeover cannot send them.
    #[serde(default)]
    pub journal_ciphertext: bool,
    /// The keys, resolved by `Config::parse`.
    #[serde(skip, default = "unresolved_keys")]
    pub keys: NodeKeys,
    pub journal: JournalSection,
    #[serde(default = "default_heartbeat_period_us")]
    pub heartbeat_period_us: u64,
    #[serde(default)]
    pub idle: IdlePolicy,
    #[serde(default)]
    pub mempool: MempoolConfig,
    #[serde(default = "default_interval_ms")]
    pub stats_interval_ms: u64,
    /// How often the journal is trimmed below the watermark.
    #[serde(default = "default_interval_ms")]
    pub trim_interval_ms: u64,
    /// The port toward the destination's arbiter (target confirmations and resend
    /// requests in; resend answers and takeover replays out). None: no such port.
    #[serde(default)]
    pub destination: Option<DestinationSection>,
    /// How a takeover replays (it needs `destination`).
    #[serde(default)]
    pub takeover: Option<TakeoverSection>,
    /// A Unix-domain socket for `taphold-backup status|takeover --control PATH`.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
}

/// The destination-facing port D.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSection {
    /// DPDK device name of D.
    pub port: String,
    /// Our MAC on D: ARP answers say our IP is here; source of what we send.
    pub mac: Mac,
    /// Our IPv4 address on D: the arbiter sends confirmations and resend requests to it.
    pub ip: Ipv4Addr,
    /// Our UDP port on D.
    pub udp_port: u16,
    /// The next hop toward the arbiter's host: destination MAC of takeover replays
    /// (resend answers go back to the MAC the request came from).
    pub peer_mac: Mac,
    /// Where takeover replays go: the arbiter's input for this node.
    pub replay_to: SocketAddrV4,
}

/// Takeover: replaying what the destination may not have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeoverSection {
    /// Messages per second replayed.
    #[serde(default = "default_rate_per_s")]
    pub rate_per_s: u64,
    /// Take over on our own once nothing authentic has come from the primary on the
    /// backup link for this long (after it was heard once). None: only on command.
    #[serde(default)]
    pub auto_after_ms: Option<u64>,
}

impl Default for TakeoverSection {
    fn default() -> Self {
        TakeoverSection {
            rate_per_s: default_rate_per_s(),
            auto_after_ms: None,
        }
    }
}

/// Below what the journal is trimmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrimBelow {
    /// The primary's released watermark (and the contiguous point): the current run.
    #[default]
    Released,
    /// What the destination confirmed delivered (a target confirmation of that run),
    /// and the contiguous point: every run held. Nothing without a confirmation.
    Delivered,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// The journal directory: one run per (stream, epoch) of the appliance in it.
    pub dir: PathBuf,
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Sync once this many records are unsynced (checked after each burst). `null`: off.
    #[serde(default = "default_fsync_every_records")]
    pub fsync_every_records: Option<u32>,
    /// Sync once this long has passed since the last sync. `null` (default): off.
    #[serde(default)]
    pub fsync_every_us: Option<u64>,
    /// The first seq of each run (a node that joins late starts higher).
    #[serde(default = "one")]
    pub first_seq: u64,
    /// Open a run whose journal shows records missing or damaged (a sealed segment
    /// gone, emptied or changed, corruption that is not a torn write, an incomplete
    /// `seals`, an absurd trim floor): what reads is used, the damage is logged and
    /// stays in `journal inspect`. Off (default): such a run stops the node, named.
    #[serde(default)]
    pub open_with_holes: bool,
    /// `released` (default): below the primary's released watermark. `delivered`:
    /// only below what the destination confirmed (needs `destination`).
    #[serde(default)]
    pub trim_below: TrimBelow,
    /// Warn (ALERT) when this many records or more are held that no destination
    /// confirmed. None: no alert.
    #[serde(default)]
    pub alert_unconfirmed_records: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolConfig {
    pub mbufs: u32,
    pub cache: u32,
    /// Bytes per mbuf including DPDK's 128-byte headroom; a backup frame must fit one.
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: 4095,
            cache: 256,
            data_room: 10240,
        }
    }
}

fn default_heartbeat_period_us() -> u64 {
    10_000
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_segment_bytes() -> u64 {
    64 << 20
}
fn default_fsync_every_records() -> Option<u32> {
    Some(1)
}
fn one() -> u64 {
    1
}
/// Until `Config::parse` resolves it: all zeros, never used.
/// The backup node's keys, by use.
#[derive(Debug, Clone)]
pub struct NodeKeys {
    /// Backup frames, heartbeats, acks.
    pub link: taphold_wire::digest::KeyRing,
    /// Target confirmations and resend requests on port D.
    pub arbiter: taphold_wire::digest::KeyRing,
    /// `link_security: aead`: decrypts backup frames' payloads.
    pub payload: Option<taphold_wire::payload::PayloadKey>,
}

fn unresolved_keys() -> NodeKeys {
    let zero = taphold_wire::digest::KeyRing::single(taphold_wire::digest::DigestKey([0; 16]));
    NodeKeys {
        link: zero,
        arbiter: zero,
        payload: None,
    }
}

fn unresolved_key() -> Hex128 {
    Hex128(taphold_wire::digest::DigestKey([0; 16]))
}
fn default_rate_per_s() -> u64 {
    10_000
}

/// Most takeover replays per second: a 10 GbE link carries ~15 M minimal frames.
pub const MAX_RATE_PER_S: u64 = 10_000_000;
/// `sun_path` holds 108 bytes, the terminating NUL included.
const MAX_SOCKET_PATH: usize = 107;

impl Config {
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        Config::parse(path, &yaml::read(path)?)
    }

    /// Parses and validates, and reads the key file if there is one. `file`
    /// labels the messages; a relative `digest_key_file` is relative to its directory.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = yaml::parse_config(file, text)?;
        cfg.digest_key = taphold_runtime::key::resolve(
            file,
            text,
            cfg.digest_key_inline.as_ref(),
            cfg.digest_key_file.as_deref(),
        )?;
        cfg.keys = cfg.resolve_keys(file, text)?;
        Ok(cfg)
    }

    fn resolve_keys(&self, file: &str, text: &str) -> Result<NodeKeys, ConfigError> {
        use taphold_runtime::key;
        let link = key::ring(
            file,
            text,
            self.digest_key.0,
            ("digest_key_next_file", self.digest_key_next_file.as_deref()),
            ("digest_key_next_from", self.digest_key_next_from),
        )?;
        let arbiter = match key::optional_file(
            file,
            text,
            "arbiter_key_file",
            self.arbiter_key_file.as_deref(),
        )? {
            Some(k) => key::ring(
                file,
                text,
                k,
                (
                    "arbiter_key_next_file",
                    self.arbiter_key_next_file.as_deref(),
                ),
                ("arbiter_key_next_file", None),
            )?,
            None => link,
        };
        let field = if self.digest_key_file.is_some() {
            "digest_key_file"
        } else {
            "digest_key"
        };
        let all: Vec<_> = link.keys().chain(arbiter.keys()).copied().collect();
        key::refuse_demo(file, text, field, &all, self.allow_demo_key)?;
        let payload = self
            .payload_key_file
            .as_deref()
            .map(|p| key::payload_key(file, text, "payload_key_file", p))
            .transpose()?;
        Ok(NodeKeys {
            link,
            arbiter,
            payload,
        })
    }

    pub fn heartbeat_period_ns(&self) -> u64 {
        yaml::us_to_ns(self.heartbeat_period_us)
    }

    /// The journal of run `run` (our stream, one epoch of the appliance).
    pub fn journal_config(&self, run: RunId) -> JournalConfig {
        JournalConfig {
            segment_bytes: self.journal.segment_bytes,
            fsync: FsyncPolicy {
                every_records: self.journal.fsync_every_records,
                every_us: self.journal.fsync_every_us,
            },
            first_seq: self.journal.first_seq,
            allow_holes: self.journal.open_with_holes,
            ..JournalConfig::for_run(&self.journal.dir, run)
        }
    }
}

impl yaml::Validate for Config {
    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let err = |path: &str, message: String| ConfigError::at(file, text, path, message);
        if self.link >= MAX_LINKS {
            return Err(err(
                "link",
                format!("{} is not a link index (0..={})", self.link, MAX_LINKS - 1),
            ));
        }
        for (name, m) in [("mac", self.mac), ("peer_mac", self.peer_mac)] {
            if !m.0.is_unicast() {
                return Err(err(name, format!("{} is a group address", m.0)));
            }
            if m.0.as_bytes() == &[0; 6] {
                return Err(err(name, "00:00:00:00:00:00 is not a usable MAC".into()));
            }
        }
        if self.mac == self.peer_mac {
            return Err(err(
                "peer_mac",
                "the appliance's MAC must differ from ours".into(),
            ));
        }
        let j = &self.journal;
        if j.segment_bytes < 4096 {
            return Err(err(
                "journal.segment_bytes",
                format!("{} is below the 4096-byte minimum", j.segment_bytes),
            ));
        }
        if j.fsync_every_records == Some(0) {
            return Err(err(
                "journal.fsync_every_records",
                "must be at least 1 (or null to disable)".into(),
            ));
        }
        if j.fsync_every_us == Some(0) {
            return Err(err(
                "journal.fsync_every_us",
                "must be at least 1 (or null to disable)".into(),
            ));
        }
        if let Some(us) = j.fsync_every_us {
            yaml::check_time(
                us,
                1,
                yaml::HOUR_US,
                "us",
                "sync at least hourly, or null to disable; check the unit",
            )
            .map_err(|e| err("journal.fsync_every_us", e))?;
        }
        if j.first_seq == 0 {
            return Err(err(
                "journal.first_seq",
                "sequence numbers start at 1".into(),
            ));
        }
        // Bounded so that each converts (to ns, to an Instant) without
        // overflow, and so a unit mistake is caught here.
        yaml::check_time(
            self.heartbeat_period_us,
            1,
            yaml::HOUR_US,
            "us",
            "a heartbeat at least hourly (the patent's is every 10 ms); check the unit",
        )
        .map_err(|e| err("heartbeat_period_us", e))?;
        for (name, v) in [
            ("stats_interval_ms", self.stats_interval_ms),
            ("trim_interval_ms", self.trim_interval_ms),
        ] {
            yaml::check_time(v, 1, yaml::HOUR_MS, "ms", "at most hourly; check the unit")
                .map_err(|e| err(name, e))?;
        }
        let min_mbufs = if self.destination.is_some() {
            3072
        } else {
            2048
        };
        if self.mempool.mbufs < min_mbufs {
            return Err(err(
                "mempool.mbufs",
                format!(
                    "{} is too few: 1024 rx descriptors per port, bursts and the frames we send need at least {min_mbufs}",
                    self.mempool.mbufs
                ),
            ));
        }
        yaml::check_mempool_cache(self.mempool.cache, self.mempool.mbufs)
            .map_err(|e| err("mempool.cache", e))?;
        if self.mempool.data_room < 2176 {
            return Err(err(
                "mempool.data_room",
                format!(
                    "{} is below DPDK's 2176-byte default",
                    self.mempool.data_room
                ),
            ));
        }
        self.validate_destination(&err)?;
        Ok(())
    }
}

impl Config {
    /// The destination port, takeover, trimming by confirmation and the control socket.
    fn validate_destination(
        &self,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(n) = self.journal.alert_unconfirmed_records {
            if n == 0 {
                return Err(err(
                    "journal.alert_unconfirmed_records",
                    "must be at least 1 (or null for no alert)".into(),
                ));
            }
        }
        let Some(d) = &self.destination else {
            if self.journal.trim_below == TrimBelow::Delivered {
                return Err(err(
                    "journal.trim_below",
                    "`delivered` trims only what a target confirmation covers, and those arrive on the destination port: add a `destination` section (or trim below `released`)".into(),
                ));
            }
            if self.takeover.is_some() {
                return Err(err(
                    "takeover",
                    "a takeover replays through the destination port: add a `destination` section"
                        .into(),
                ));
            }
            return self.validate_control_socket(err);
        };
        if d.port == self.port {
            return Err(err(
                "destination.port",
                format!(
                    "`{}` is the backup link's port: D must be a port of its own",
                    d.port
                ),
            ));
        }
        for (name, m) in [
            ("destination.mac", d.mac),
            ("destination.peer_mac", d.peer_mac),
        ] {
            if !m.0.is_unicast() {
                return Err(err(name, format!("{} is a group address", m.0)));
            }
            if m.0.as_bytes() == &[0; 6] {
                return Err(err(name, "00:00:00:00:00:00 is not a usable MAC".into()));
            }
        }
        if d.mac == d.peer_mac {
            return Err(err(
                "destination.peer_mac",
                "the next hop's MAC must differ from ours".into(),
            ));
        }
        let ip = d.ip;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(err(
                "destination.ip",
                format!("{ip} cannot be our address: we answer ARP for it and the arbiter sends to it, so it must be a unicast address"),
            ));
        }
        if d.udp_port == 0 {
            return Err(err(
                "destination.udp_port",
                "0 is not a port the arbiter can send to".into(),
            ));
        }
        let to = d.replay_to;
        if to.ip().is_unspecified() || to.ip().is_broadcast() || to.port() == 0 {
            return Err(err(
                "destination.replay_to",
                format!("{to} is not an address a datagram can be sent to: give the arbiter's input for this node, IPv4:PORT"),
            ));
        }
        if let Some(t) = &self.takeover {
            if !(1..=MAX_RATE_PER_S).contains(&t.rate_per_s) {
                return Err(err(
                    "takeover.rate_per_s",
                    format!(
                        "{} is not a rate: 1..={MAX_RATE_PER_S} messages per second",
                        t.rate_per_s
                    ),
                ));
            }
            if let Some(ms) = t.auto_after_ms {
                yaml::check_time(
                    ms,
                    1,
                    yaml::HOUR_MS,
                    "ms",
                    "the primary's silence before an automatic takeover; null for none",
                )
                .map_err(|e| err("takeover.auto_after_ms", e))?;
            }
        }
        self.validate_control_socket(err)
    }

    fn validate_control_socket(
        &self,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(p) = &self.control_socket {
            let len = p.as_os_str().len();
            if len == 0 {
                return Err(err(
                    "control_socket",
                    "an empty path: give a file path, or leave the field out".into(),
                ));
            }
            if len > MAX_SOCKET_PATH {
                return Err(err(
                    "control_socket",
                    format!("a {len}-byte path: a Unix socket's path holds at most {MAX_SOCKET_PATH} bytes"),
                ));
            }
        }
        Ok(())
    }

    /// The takeover settings (defaults when the section is absent).
    pub fn takeover(&self) -> TakeoverSection {
        self.takeover.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD: &str = include_str!("../backup.example.yaml");

    fn line(needle: &str) -> usize {
        GOOD.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    fn bad(edit: impl Fn(&str) -> String) -> ConfigError {
        let text = edit(GOOD);
        assert_ne!(text, GOOD, "the edit changed nothing");
        Config::parse("t.yaml", &text).unwrap_err()
    }

    #[test]
    fn the_example_config_is_valid_and_defaults_apply() {
        let c = Config::parse("backup.example.yaml", GOOD).unwrap();
        assert_eq!(c.link, 0);
        assert_eq!(c.heartbeat_period_us, 10_000);
        let min = "port: net_pcap0\nmac: 02:00:00:00:0c:01\npeer_mac: 02:00:00:00:0b:01\nlink: 1\nstream: 1\ndigest_key: \"5461706f6c642d64656d6f2d6b657931\"\nallow_demo_key: true\njournal:\n  dir: /tmp/j\n";
        let c = Config::parse("min.yaml", min).unwrap();
        assert_eq!(c.idle, IdlePolicy::Backoff);
        assert_eq!(c.journal.fsync_every_records, Some(1));
        assert_eq!(c.journal.fsync_every_us, None);
        assert_eq!(c.journal.segment_bytes, 64 << 20);
        assert_eq!(c.mempool.mbufs, 4095);
        let run = RunId {
            stream: 1,
            epoch: 9,
        };
        let j = c.journal_config(run);
        assert_eq!(j.first_seq, 1);
        assert_eq!(j.run, run);
        assert_eq!(j.dir, std::path::Path::new("/tmp/j/stream-1/epoch-9"));
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = bad(|s| s.replace("  segment_bytes:", "  segment_byte: 1\n  segment_bytes:"));
        assert!(e.message.contains("segment_byte"), "{e}");
        assert_eq!(e.line, Some(line("segment_bytes:")), "{e}");
    }

    #[test]
    fn malformed_values_are_named_with_their_line() {
        let e = bad(|s| s.replace("peer_mac: 02:00:00:00:0b:01", "peer_mac: 02:00:zz:00:0b:01"));
        assert!(
            e.to_string().contains("peer_mac") && e.message.contains("not a MAC"),
            "{e}"
        );
        assert_eq!(e.line, Some(line("peer_mac:")));
        let e = bad(|s| s.replace("digest_key: \"", "digest_key: \"ab"));
        assert!(
            e.to_string().contains("digest_key") && e.message.contains("32 hex"),
            "{e}"
        );
        assert_eq!(e.line, Some(line("digest_key")));
        let e = bad(|s| s.replace("idle: backoff", "idle: nap"));
        assert!(e.to_string().contains("idle"), "{e}");
        assert_eq!(e.line, Some(line("idle:")));
        let e = bad(|s| s.replace("link: 0", "link: -1"));
        assert!(e.to_string().contains("link"), "{e}");
        assert_eq!(e.line, Some(line("link: 0")));
    }

    #[test]
    fn semantic_errors_name_field_and_line() {
        let e = bad(|s| s.replace("link: 0", "link: 4"));
        assert_eq!((e.field.as_str(), e.line), ("link", Some(line("link: 0"))));
        let e = bad(|s| s.replace("segment_bytes: 67108864", "segment_bytes: 100"));
        assert_eq!(e.field, "journal.segment_bytes");
        assert_eq!(e.line, Some(line("segment_bytes:")));
        let e = bad(|s| s.replace("fsync_every_records: 1", "fsync_every_records: 0"));
        assert_eq!(e.field, "journal.fsync_every_records");
        assert_eq!(e.line, Some(line("fsync_every_records:")));
        let e = bad(|s| s.replace("peer_mac: 02:00:00:00:0b:01", "peer_mac: 02:00:00:00:0c:01"));
        assert_eq!(e.field, "peer_mac");
        let e = bad(|s| s.replace("mac: 02:00:00:00:0c:01", "mac: 03:00:00:00:0c:01"));
        assert_eq!(e.field, "mac", "{e}");
        let e = bad(|s| s.replace("mbufs: 4095", "mbufs: 100"));
        assert_eq!(e.field, "mempool.mbufs");
        assert_eq!(e.line, Some(line("mbufs:")));
        let e = bad(|s| s.replace("heartbeat_period_us: 10000", "heartbeat_period_us: 0"));
        assert_eq!(e.field, "heartbeat_period_us");
    }

    #[test]
    fn times_are_bounded_so_they_convert_without_overflow() {
        let max = u64::MAX.to_string();
        let over = (u64::MAX / 1000 + 1).to_string();
        for (from, field) in [
            ("heartbeat_period_us: 10000", "heartbeat_period_us"),
            ("stats_interval_ms: 1000", "stats_interval_ms"),
            ("trim_interval_ms: 1000", "trim_interval_ms"),
            ("fsync_every_us: null", "journal.fsync_every_us"),
        ] {
            let key = from.split(':').next().unwrap();
            for v in [max.as_str(), over.as_str(), "3600000001", "0"] {
                let e = bad(|s| s.replace(from, &format!("{key}: {v}")));
                assert_eq!((e.field.as_str(), e.line), (field, Some(line(key))), "{e}");
                let want = if v == "0" { "at least 1" } else { "more than" };
                assert!(e.message.contains(want), "{e}");
            }
        }
        let c = Config::parse(
            "t.yaml",
            &GOOD.replace(
                "heartbeat_period_us: 10000",
                "heartbeat_period_us: 3600000000",
            ),
        )
        .unwrap();
        assert_eq!(c.heartbeat_period_ns(), 3_600_000_000_000);
    }

    #[test]
    fn mempool_cache_follows_dpdk() {
        let e = bad(|s| s.replace("cache: 256", "cache: 513"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("mempool.cache", Some(line("cache:"))),
            "{e}"
        );
        assert!(e.message.contains("512"), "{e}");
    }

    #[test]
    fn a_zero_mac_is_refused() {
        let e = bad(|s| s.replace("mac: 02:00:00:00:0c:01", "mac: 00:00:00:00:00:00"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("mac", Some(line("mac:"))),
            "{e}"
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let e = bad(|s| s.replace("  dir: /var/lib/taphold/journal\n", ""));
        assert_eq!(e.field, "journal.dir", "{e}");
        assert_eq!(e.line, Some(line("journal:")), "{e}");
        let e = bad(|s| s.replace("stream: 1 ", "# stream: 1 "));
        assert_eq!(e.field, "stream", "{e}");
        let e = bad(|s| {
            s.replace(
                "  segment_bytes: 67108864",
                "  segment_bytes: 1\n  segment_bytes: 2",
            )
        });
        assert_eq!(e.field, "journal.segment_bytes", "{e}");
        assert_eq!(e.line, Some(line("segment_bytes:") + 1), "{e}");
    }

    /// GOOD with the destination side switched on.
    fn full() -> String {
        GOOD.replace(
            "trim_interval_ms: 1000\n",
            "trim_interval_ms: 1000\n\
             destination:\n  port: net_pcap1\n  mac: 02:00:00:00:0d:01\n  ip: 198.51.100.21\n  udp_port: 9300\n  peer_mac: 02:00:00:00:0e:01\n  replay_to: 198.51.100.30:9200\n\
             takeover:\n  rate_per_s: 5000\n  auto_after_ms: 250\n\
             control_socket: /run/taphold/b1.sock\n",
        )
        .replace(
            "  open_with_holes: false",
            "  open_with_holes: false\n  trim_below: delivered\n  alert_unconfirmed_records: 1000",
        )
    }

    fn bad_full(edit: impl Fn(&str) -> String) -> ConfigError {
        let f = full();
        let text = edit(&f);
        assert_ne!(text, f, "the edit changed nothing");
        Config::parse("t.yaml", &text).unwrap_err()
    }

    fn line_in(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn the_destination_side_parses_and_defaults_to_todays_behaviour() {
        let c = Config::parse("t.yaml", &full()).unwrap();
        let d = c.destination.as_ref().unwrap();
        assert_eq!(d.port, "net_pcap1");
        assert_eq!(d.ip, Ipv4Addr::new(198, 51, 100, 21));
        assert_eq!(d.replay_to, "198.51.100.30:9200".parse().unwrap());
        assert_eq!(c.journal.trim_below, TrimBelow::Delivered);
        assert_eq!(c.journal.alert_unconfirmed_records, Some(1000));
        assert_eq!(c.takeover().rate_per_s, 5000);
        assert_eq!(c.takeover().auto_after_ms, Some(250));
        assert_eq!(
            c.control_socket.as_deref(),
            Some(std::path::Path::new("/run/taphold/b1.sock"))
        );
        // Absent: released, no alert, no destination, no takeover, no socket.
        let c = Config::parse("t.yaml", GOOD).unwrap();
        assert_eq!(c.journal.trim_below, TrimBelow::Released);
        assert_eq!(c.journal.alert_unconfirmed_records, None);
        assert!(c.destination.is_none() && c.takeover.is_none() && c.control_socket.is_none());
        assert_eq!(c.takeover().rate_per_s, 10_000);
        assert_eq!(c.takeover().auto_after_ms, None);
        // A takeover section of defaults.
        let f = full().replace("  rate_per_s: 5000\n  auto_after_ms: 250\n", "  {}\n");
        let f = f.replace("takeover:\n  {}", "takeover: {}");
        let c = Config::parse("t.yaml", &f).unwrap();
        assert_eq!(c.takeover().rate_per_s, 10_000);
    }

    #[test]
    fn destination_side_errors_name_field_and_line() {
        let f = full();
        for (from, to, field, needle, want) in [
            (
                "trim_below: delivered",
                "trim_below: deliverd",
                "journal.trim_below",
                "trim_below:",
                "unknown variant",
            ),
            (
                "ip: 198.51.100.21",
                "ip: 198.51.100.300",
                "destination.ip",
                "ip: 198",
                "invalid IP",
            ),
            (
                "ip: 198.51.100.21",
                "ip: 239.1.2.3",
                "destination.ip",
                "ip: 239",
                "unicast",
            ),
            (
                "ip: 198.51.100.21",
                "ip: 0.0.0.0",
                "destination.ip",
                "ip: 0.0.0.0",
                "unicast",
            ),
            (
                "udp_port: 9300",
                "udp_port: 0",
                "destination.udp_port",
                "udp_port:",
                "0 is not a port",
            ),
            (
                "udp_port: 9300",
                "udp_port: 70000",
                "destination.udp_port",
                "udp_port:",
                "invalid value",
            ),
            (
                "replay_to: 198.51.100.30:9200",
                "replay_to: 198.51.100.30",
                "destination.replay_to",
                "replay_to:",
                "socket address syntax",
            ),
            (
                "replay_to: 198.51.100.30:9200",
                "replay_to: 198.51.100.30:0",
                "destination.replay_to",
                "replay_to:",
                "IPv4:PORT",
            ),
            (
                "port: net_pcap1",
                "port: net_pcap0",
                "destination.port",
                "  port: net_pcap0",
                "port of its own",
            ),
            (
                "mac: 02:00:00:00:0d:01",
                "mac: 01:00:5e:00:00:01",
                "destination.mac",
                "mac: 01:00",
                "group address",
            ),
            (
                "peer_mac: 02:00:00:00:0e:01",
                "peer_mac: 02:00:00:00:0d:01",
                "destination.peer_mac",
                "peer_mac: 02:00:00:00:0d:01",
                "differ",
            ),
            (
                "  udp_port: 9300",
                "  udp_prot: 9300",
                "destination",
                "udp_prot",
                "unknown field `udp_prot`",
            ),
            (
                "rate_per_s: 5000",
                "rate_per_s: 0",
                "takeover.rate_per_s",
                "rate_per_s",
                "not a rate",
            ),
            (
                "rate_per_s: 5000",
                "rate_per_s: 10000001",
                "takeover.rate_per_s",
                "rate_per_s",
                "not a rate",
            ),
            (
                "auto_after_ms: 250",
                "auto_after_ms: 0",
                "takeover.auto_after_ms",
                "auto_after_ms",
                "at least 1",
            ),
            (
                "auto_after_ms: 250",
                "auto_after_ms: 3600001",
                "takeover.auto_after_ms",
                "auto_after_ms",
                "more than",
            ),
            (
                "alert_unconfirmed_records: 1000",
                "alert_unconfirmed_records: 0",
                "journal.alert_unconfirmed_records",
                "alert_unconfirmed",
                "at least 1",
            ),
            (
                "mbufs: 4095",
                "mbufs: 2500",
                "mempool.mbufs",
                "mbufs:",
                "at least 3072",
            ),
        ] {
            let text = f.replace(from, to);
            let e = bad_full(|s| s.replace(from, to));
            assert_eq!(e.field, field, "{to}: {e}");
            assert_eq!(e.line, Some(line_in(&text, needle)), "{to}: {e}");
            assert!(e.to_string().contains(want), "{to}: want `{want}` in {e}");
        }
        let long = format!("control_socket: /{}", "s".repeat(120));
        let e = bad_full(|s| s.replace("control_socket: /run/taphold/b1.sock", &long));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("control_socket", Some(line_in(&f, "control_socket")))
        );
        assert!(e.message.contains("at most 107 bytes"), "{e}");
        let e = bad_full(|s| {
            s.replace(
                "control_socket: /run/taphold/b1.sock",
                "control_socket: \"\"",
            )
        });
        assert_eq!(e.field, "control_socket", "{e}");
    }

    #[test]
    fn trimming_by_confirmation_and_takeover_need_a_destination() {
        let no_dest = |s: &str| {
            let start = s.find("destination:\n").unwrap();
            let end = s.find("takeover:\n").unwrap();
            format!("{}{}", &s[..start], &s[end..])
        };
        let e = bad_full(no_dest);
        assert_eq!(e.field, "journal.trim_below", "{e}");
        assert_eq!(e.line, Some(line_in(&full(), "trim_below")));
        assert!(e.message.contains("add a `destination` section"), "{e}");
        let e = bad_full(|s| no_dest(s).replace("  trim_below: delivered\n", ""));
        assert_eq!(e.field, "takeover", "{e}");
        assert!(e.message.contains("destination"), "{e}");
        // Neither: a control socket alone is fine (status only).
        let text = no_dest(&full()).replace("  trim_below: delivered\n", "");
        let start = text.find("takeover:\n").unwrap();
        let end = text.find("control_socket").unwrap();
        let text = format!("{}{}", &text[..start], &text[end..]);
        Config::parse("t.yaml", &text).unwrap();
    }

    #[test]
    fn not_yaml_at_all_is_an_error_not_a_panic() {
        for junk in ["", ":::", "[1,2", "journal: [", "\u{0}\u{1}"] {
            assert!(Config::parse("t.yaml", junk).is_err(), "{junk:?}");
        }
    }

    const FILE_KEY: &str = "000102030405060708090a0b0c0d0e0f";

    /// A key file holding `content`, with `mode`, in `dir`.
    fn key_file(dir: &std::path::Path, name: &str, content: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// The example config with `digest_key` replaced by `with` (on the same line).
    fn key_edit(with: &str) -> String {
        let old = GOOD.lines().find(|l| l.starts_with("digest_key:")).unwrap();
        GOOD.replace(old, with)
    }

    #[test]
    fn the_key_can_come_from_a_file_of_the_owner_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = key_file(d.path(), "k", &format!(" {FILE_KEY}\n"), 0o400);
        let c = Config::parse(
            "t.yaml",
            &key_edit(&format!("digest_key_file: {}", p.display())),
        )
        .unwrap();
        assert_eq!(
            c.digest_key.0,
            taphold_wire::digest::DigestKey::from_hex(FILE_KEY).unwrap()
        );
        // A relative path is the config file's neighbour.
        let cfg = d.path().join("backup.yaml");
        std::fs::write(&cfg, key_edit("digest_key_file: k")).unwrap();
        let c = Config::load(cfg.to_str().unwrap()).unwrap();
        assert!(!taphold_runtime::key::is_demo(&c.digest_key.0));
        // The example runs on the demo key (and so warns at start-up).
        let c = Config::parse("backup.example.yaml", GOOD).unwrap();
        assert!(taphold_runtime::key::is_demo(&c.digest_key.0));
    }

    #[test]
    fn a_key_file_missing_malformed_or_not_private_is_refused_by_field_and_line() {
        let d = tempfile::tempdir().unwrap();
        let cases = [
            (d.path().join("absent"), "No such file"),
            (
                key_file(d.path(), "short", &FILE_KEY[1..], 0o600),
                "32 hex digits",
            ),
            (
                key_file(d.path(), "junk", &FILE_KEY.replace('0', "x"), 0o600),
                "32 hex digits",
            ),
            (key_file(d.path(), "group", FILE_KEY, 0o640), "mode 0640"),
            (key_file(d.path(), "others", FILE_KEY, 0o604), "mode 0604"),
            (key_file(d.path(), "writable", FILE_KEY, 0o620), "mode 0620"),
        ];
        for (p, want) in cases {
            let e = bad(|_| key_edit(&format!("digest_key_file: {}", p.display())));
            assert_eq!(
                (e.field.as_str(), e.line),
                ("digest_key_file", Some(line("digest_key:"))),
                "{e}"
            );
            assert!(e.message.contains(want), "{}: {e}", p.display());
            assert!(!e.to_string().contains("0203040506"), "quotes the key: {e}");
        }
    }

    #[test]
    fn the_key_is_given_exactly_once() {
        let d = tempfile::tempdir().unwrap();
        let p = key_file(d.path(), "k", FILE_KEY, 0o600);
        let e = bad(|s| {
            s.replace(
                "digest_key: ",
                &format!("digest_key_file: {}\ndigest_key: ", p.display()),
            )
        });
        assert_eq!(
            (e.field.as_str(), e.line),
            ("digest_key_file", Some(line("digest_key:"))),
            "{e}"
        );
        assert!(e.message.contains("not both"), "{e}");
        let e = bad(|_| key_edit("# no key"));
        assert_eq!(e.field, "digest_key", "{e}");
        assert!(e.message.contains("digest_key_file"), "{e}");
    }
}

//! The appliance's configuration: one YAML file, read once at start-up.
//!
//! Everything the hot roles need is resolved here into plain values (parsed
//! addresses, the digest key, the role→lcore map) before any lcore starts, so
//! the data path never parses or looks anything up. Unknown fields are
//! errors, and every error names the field and the line it is on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use taphold_core::policy::{PolicyCheck, PolicyError, PolicySpec, ReleasePolicy};
use taphold_core::{hold_ring, spsc};
use taphold_journal::record as journal_record;
pub use taphold_runtime::idle::IdlePolicy;
use taphold_runtime::yaml;
pub use taphold_runtime::yaml::{ConfigError, Hex128, Mac};
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::{delivery, taphold};

/// Most backup links a hold-ring slot has confirmation bits for.
pub const MAX_LINKS: usize = 4;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Stream id stamped on every backup frame and confirmation.
    #[serde(default = "default_stream_id")]
    pub stream_id: u32,
    /// Where the appliance keeps what must survive it: the stream's epoch
    /// (new and larger on every start, fsync'ed before the first message).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// 32 hex digits: the key of the digest that proves a tap copy is ours.
    /// Written here, or in `digest_key_file`: exactly one of the two.
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
    /// Key rotation: a second backup-link key file, accepted at once beside
    /// the current one (PDUs name their key by id) ...
    #[serde(default)]
    pub digest_key_next_file: Option<PathBuf>,
    /// ... and sealing what we send from this UNIX second (absent: never).
    #[serde(default)]
    pub digest_key_next_from: Option<u64>,
    /// The key of the confirmations to sources (a file). Absent: the
    /// backup-link key, with a warning at start (a source that checks its
    /// confirmations could then seal backup frames).
    #[serde(default)]
    pub confirm_key_file: Option<PathBuf>,
    /// The key of the arbiter's target confirmations (a file), and a next
    /// one accepted beside it. Absent: the backup-link keys, with a warning.
    #[serde(default)]
    pub arbiter_key_file: Option<PathBuf>,
    #[serde(default)]
    pub arbiter_key_next_file: Option<PathBuf>,
    /// Run on the public demo key although this is not a replay (a lab).
    #[serde(default)]
    pub allow_demo_key: bool,
    /// mac: the backup frame's payload crosses the backup link in clear,
    /// authenticated by the digest; aead: encrypted and authenticated too
    /// (XChaCha20-Poly1305 under `payload_key_file`, docs/security.md).
    #[serde(default)]
    pub link_security: LinkSecurity,
    /// `link_security: aead`'s key: 64 hex digits in a file, mode 0600.
    #[serde(default)]
    pub payload_key_file: Option<PathBuf>,
    /// Every key, resolved by `Config::parse`.
    #[serde(skip)]
    pub keys: Keys,
    #[serde(default)]
    pub mempool: MempoolConfig,
    #[serde(default)]
    pub hold_ring: HoldRingConfig,
    pub primary: PrimaryConfig,
    /// Where released messages go (listener mode; gateway mode routes).
    #[serde(default)]
    pub destination: Option<DestinationConfig>,
    /// Gateway mode's routes, neighbours and protection rules.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
    pub backup_links: Vec<BackupLinkConfig>,
    #[serde(default)]
    pub release: ReleaseConfig,
    #[serde(default)]
    pub health: HealthSection,
    /// What happens when the release policy cannot be met by the links in service.
    #[serde(default)]
    pub secondary_mode: SecondaryMode,
    #[serde(default)]
    pub local_journal: Option<LocalJournalConfig>,
    #[serde(default)]
    pub latency_monitor: LatencyMonitorConfig,
    pub lcores: Vec<LcoreConfig>,
    #[serde(default)]
    pub idle: IdlePolicy,
    #[serde(default = "default_stats_interval_ms")]
    pub stats_interval_ms: u64,
    #[serde(default)]
    pub events: EventsConfig,
    /// Offline replay only: the in-process fibre and passive tap model.
    #[serde(default)]
    pub harness: Option<HarnessConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolConfig {
    pub mbufs: u32,
    pub cache: u32,
    /// Bytes per mbuf including DPDK's 128-byte headroom. Every accepted frame
    /// must fit one segment: jumbo input needs about 10 KB.
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: 16383,
            cache: 256,
            data_room: 10240,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRingConfig {
    /// Slots; a power of two.
    pub capacity: u32,
    /// A message still unconfirmed this long after launch is counted overdue.
    pub confirm_timeout_us: u64,
    /// Backpressure (the ring full, frames left unread on P) lasting this
    /// long raises an alert.
    #[serde(default = "default_backpressure_alert_ms")]
    pub backpressure_alert_ms: u64,
}

fn default_backpressure_alert_ms() -> u64 {
    100
}

impl HoldRingConfig {
    pub fn confirm_timeout_ns(&self) -> u64 {
        yaml::us_to_ns(self.confirm_timeout_us)
    }
}

impl Default for HoldRingConfig {
    fn default() -> Self {
        HoldRingConfig {
            capacity: 4096,
            confirm_timeout_us: 500,
            backpressure_alert_ms: default_backpressure_alert_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryConfig {
    /// listener: sources send each message as a UDP datagram to `ip`:`udp_port`;
    /// gateway: taphold is the IPv4 next hop and protects TCP flows by rule.
    #[serde(default)]
    pub mode: PrimaryMode,
    /// DPDK device name (e.g. net_pcap0, net_af_packet0, 0000:3b:00.0).
    pub port: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Listener mode: the UDP port messages arrive on.
    #[serde(default)]
    pub udp_port: u16,
    #[serde(default = "default_max_payload")]
    pub max_payload: u16,
    /// Transmit queues on P: 1 shares one queue for released messages,
    /// confirmations and ARP replies; 2 puts confirmations and ARP on queue 1.
    #[serde(default = "one")]
    pub tx_queues: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrimaryMode {
    #[default]
    Listener,
    Gateway,
}

/// Gateway mode (`primary.mode: gateway`): taphold routes IPv4 between the
/// trading engine's network and the exchange's, and holds the TCP segments
/// that a `protect` rule covers until their backup frames' tap copies return.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Our addresses on P besides primary.ip: P answers ARP for each (the
    /// gateway address of every subnet routed through us on P's segment).
    #[serde(default)]
    pub addresses: Vec<Ipv4Addr>,
    /// A second port, Q (two-port gateway): routes with `port: q` leave on
    /// it; None: one-armed on P.
    #[serde(default)]
    pub port2: Option<Port2Config>,
    /// Longest prefix wins; a route without `via` is directly connected.
    pub routes: Vec<RouteConfig>,
    /// Static ARP entries (never overridden by ARP replies).
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
    /// TCP to these destinations and ports is held and backed up.
    pub protect: Vec<ProtectConfig>,
    /// Routable traffic no rule protects: forward (default) or refuse.
    #[serde(default)]
    pub other: OtherTraffic,
    /// What a protected segment's backup frame carries: tcp (the payload) or
    /// fix-compact (per FIX message, the fields that recreate it).
    #[serde(default)]
    pub content: GatewayContent,
    #[serde(default = "default_gateway_table")]
    pub max_flows: u32,
    #[serde(default = "default_gateway_table")]
    pub max_neighbors: u32,
    /// An unresolved next hop is asked for again after this long.
    #[serde(default = "default_arp_retry_ms")]
    pub arp_retry_ms: u64,
    /// The exchange's acknowledgements are passed to the backup nodes at
    /// most this often per flow.
    #[serde(default = "default_flow_ack_interval_us")]
    pub flow_ack_interval_us: u64,
}

fn default_gateway_table() -> u32 {
    64
}
fn default_arp_retry_ms() -> u64 {
    100
}
fn default_flow_ack_interval_us() -> u64 {
    1000
}

/// The second gateway port Q: its device, our MAC and our addresses on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port2Config {
    pub port: String,
    pub mac: Mac,
    /// Our addresses on Q (at least one): Q answers ARP for them and asks
    /// from the first.
    pub addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: Prefix,
    #[serde(default)]
    pub via: Option<Ipv4Addr>,
    /// The port the prefix (or its `via` router) is reached on.
    #[serde(default)]
    pub port: RoutePort,
}

/// Which gateway port a route leaves on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutePort {
    #[default]
    P,
    Q,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectConfig {
    /// Destination prefix (an exchange's order-entry gateways).
    pub dst: Prefix,
    /// A port (`9878`) or a range (`9878-9880`).
    pub ports: PortRange,
    /// Confirm each protected segment to a listener (claim 1's confirmation
    /// to the source), once it is released: a taphold confirmation PDU whose
    /// echo is the flow and TCP sequence number.
    #[serde(default)]
    pub confirm_to: Option<ConfirmToConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmToConfig {
    pub ip: Ipv4Addr,
    /// UDP port (also the confirmations' source port).
    pub port: u16,
    /// The listener's next-hop MAC.
    pub mac: Mac,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OtherTraffic {
    #[default]
    Forward,
    Refuse,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayContent {
    #[default]
    Tcp,
    FixCompact,
}

/// `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix(pub taphold_wire::gateway::Ipv4Prefix);

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        yaml::from_str_with(d, "an IPv4 prefix like 10.1.0.0/16", |s| {
            let (a, l) = s.split_once('/').ok_or_else(|| {
                format!("`{s}` is not a prefix: write address/length, e.g. 10.1.0.0/16")
            })?;
            let addr =
                Ipv4Addr::from_str(a).map_err(|_| format!("`{a}` is not an IPv4 address"))?;
            let len = l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= 32)
                .ok_or_else(|| format!("`{l}` is not a prefix length (0 to 32)"))?;
            Ok(Prefix(taphold_wire::gateway::Ipv4Prefix {
                addr: addr.octets(),
                len,
            }))
        })
    }
}

/// `9878` or `9878-9880`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub u16, pub u16);

impl PortRange {
    fn parse(text: &str) -> Result<PortRange, String> {
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let (Ok(lo), Ok(hi)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
            return Err(format!(
                "`{text}` is not a port or a range of ports (9878, 9878-9880)"
            ));
        };
        if lo == 0 || lo > hi {
            return Err(format!(
                "{lo}-{hi}: ports run from 1, the first no larger than the last"
            ));
        }
        Ok(PortRange(lo, hi))
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: errors raised inside it carry the
        // field's own location.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (9878) or a range of ports (9878-9880)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortRange, E> {
                PortRange::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortRange, E> {
                PortRange::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortRange, E> {
                PortRange::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Next-hop MAC for released messages.
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub udp_port: u16,
    /// raw: the payload alone (destinations that cannot change); taphold: the
    /// delivery header (stream, epoch, seq, flags, source, release time)
    /// before it, so the destination can deduplicate and see gaps.
    #[serde(default)]
    pub framing: Framing,
    /// Our UDP port (on `primary.ip`) where the destination's arbiter sends
    /// target confirmations: what it delivered, which the backup nodes may then
    /// delete. Needs `framing: taphold`. None: no target confirmations, and
    /// the nodes trim below what was released.
    #[serde(default)]
    pub target_confirm_port: Option<u16>,
    /// Messages released but not target-confirmed for this long raise the
    /// `destination_unconfirmed` alert (the journals grow meanwhile).
    #[serde(default = "default_unconfirmed_alert_ms")]
    pub unconfirmed_alert_ms: u64,
}

fn default_unconfirmed_alert_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    #[default]
    Raw,
    Taphold,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupLinkConfig {
    pub name: String,
    /// Device that transmits backup frames (and receives acks).
    pub port: String,
    /// Receive-only device that sees the passive tap's copy of `port`'s TX.
    pub tap: String,
    /// Our MAC on this link (source of backup frames). Defaults to the port's.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// The backup node's MAC on this link.
    pub peer_mac: Mac,
    /// A standby link carries only heartbeats until a failover puts it in service.
    #[serde(default)]
    pub standby: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    /// any | all | k-of-n
    pub policy: PolicyText,
    /// full | digest
    pub content: ContentText,
    /// tap: release on verified tap copies (the product); ack: release only
    /// once the backup node has acknowledged (the strictest mode, and the
    /// wait-for-ack design taphold replaces, for comparison).
    #[serde(default)]
    pub gate: Gate,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            policy: PolicyText(ReleasePolicy::Any.into(), "any".into()),
            content: ContentText::Full,
            gate: Gate::Tap,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    #[default]
    Tap,
    Ack,
}

/// Per-link health thresholds (the patent's defaults) and our heartbeats.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// The backup node must ack a backup frame within this.
    pub ack_timeout_us: u64,
    /// The backup node heartbeats this often...
    pub peer_heartbeat_period_us: u64,
    /// ...and a heartbeat later than this past due is a miss.
    pub heartbeat_grace_us: u64,
    /// A frame we launched must show on the tap within this.
    pub tap_timeout_us: u64,
    /// The debounce: failing continuously this long, the link is down (and
    /// only a down link starts the secondary mode). 0: down on the first
    /// missed deadline.
    pub down_after_us: u64,
    /// Passing continuously this long: the link is up again.
    pub up_after_us: u64,
    /// Our heartbeat on every link (active and standby) this often; its tap
    /// copy proves the tap path while traffic is idle.
    pub heartbeat_interval_us: u64,
    /// false: no backup node answers (a tap-only replay); only the tap path
    /// is judged.
    pub require_peer: bool,
    /// A held message whose tap copy (under `gate: ack`, whose ack) has not
    /// come within the timeout is re-launched on that link, flagged
    /// RETRANSMIT, once per timeout this many times; then it is counted
    /// exhausted (an alert) and re-launched ever more slowly until the
    /// link's health check takes the link down.
    pub tap_retransmits: u32,
}

impl HealthSection {
    pub fn heartbeat_interval_ns(&self) -> u64 {
        yaml::us_to_ns(self.heartbeat_interval_us)
    }
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            ack_timeout_us: 500,
            peer_heartbeat_period_us: 10_000,
            heartbeat_grace_us: 350,
            tap_timeout_us: 500,
            down_after_us: 30_000,
            up_after_us: 100_000,
            heartbeat_interval_us: 1_000,
            require_peer: true,
            tap_retransmits: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondaryMode {
    /// Put a standby link in service, re-send every held unconfirmed message
    /// on it in order, continue there. Without a usable standby: halt.
    Failover,
    /// Release every message unconfirmed, flagged unprotected, with an alert.
    PassThrough,
    /// Fail closed: accept nothing new; held messages stay held.
    #[default]
    Halt,
    /// Write every unconfirmed held message to the local journal
    /// (`local_journal`), fsync, then release it (counted and in events).
    Journal,
}

/// The appliance's own journal, for the journal secondary mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalJournalConfig {
    pub dir: String,
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

fn default_segment_bytes() -> u64 {
    64 << 20
}

/// Alerts when a window's latency percentile departs from its baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyMonitorConfig {
    pub window_ms: u64,
    /// e.g. 0.99
    pub quantile: f64,
    /// Alert when a window's quantile is more than `factor` times the
    /// baseline, or less than the baseline divided by it.
    pub factor: f64,
    /// The first this-many qualifying windows form the baseline.
    pub baseline_windows: u32,
    /// Windows with fewer samples are ignored.
    pub min_samples: u32,
}

impl LatencyMonitorConfig {
    pub fn monitor_config(&self) -> taphold_core::latency::MonitorConfig {
        taphold_core::latency::MonitorConfig {
            window_ns: self.window_ms.saturating_mul(1_000_000),
            quantile: self.quantile,
            factor: self.factor,
            baseline_windows: self.baseline_windows,
            min_samples: self.min_samples,
        }
    }
}

impl Default for LatencyMonitorConfig {
    fn default() -> Self {
        LatencyMonitorConfig {
            window_ms: 1000,
            quantile: 0.99,
            factor: 4.0,
            baseline_windows: 5,
            min_samples: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcoreConfig {
    pub lcore: u32,
    pub roles: Vec<RoleName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    Ingress,
    TapRx,
    Egress,
    LinkRx,
    /// Replay harness: carries backup frames down the modelled fibre and
    /// feeds the modelled tap.
    TapModel,
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleName::Ingress => "ingress",
            RoleName::TapRx => "tap-rx",
            RoleName::Egress => "egress",
            RoleName::LinkRx => "link-rx",
            RoleName::TapModel => "tap-model",
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Records in the egress→main event ring.
    pub ring: u32,
    /// events.csv in the output directory: one line per message. Off unless
    /// asked for (a production run makes millions of lines a second).
    pub csv: bool,
    /// events.csv is rotated at this size in KiB (events.csv.1, .2, ...) ...
    pub csv_max_kb: u64,
    /// ... and this many rotated files are kept; the lines of older ones
    /// are counted in the summary (`events.csv.lines_deleted`).
    pub csv_keep: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            ring: 65536,
            csv: false,
            csv_max_kb: 256 << 10,
            csv_keep: 4,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessConfig {
    pub links: Vec<HarnessLinkConfig>,
    /// Frames each modelled fibre/tap ring holds.
    #[serde(default = "default_harness_ring")]
    pub ring_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessLinkConfig {
    /// The backup link this models (its `port` and `tap` become in-process
    /// ring ports).
    pub link: String,
    /// What the modelled tap does with each frame.
    #[serde(default)]
    pub tap: TapMode,
    /// Device receiving what reaches the far end of the fibre (a net_pcap
    /// with tx_pcap=backup.pcap in replay). None: the frames are counted and freed.
    #[serde(default)]
    pub sink: Option<String>,
    /// One-way delay of the modelled backup fibre: the modelled backup node
    /// acks a backup frame this long after launch, and the ack takes as long
    /// again to come back. The tap is at 0 m.
    #[serde(default)]
    pub fibre_delay_us: u64,
    /// Model a backup node at the far end (acks, heartbeats) or none.
    #[serde(default = "yes")]
    pub backup_node: bool,
    /// What the modelled node's acks claim (tests of the appliance's ack checks).
    #[serde(default)]
    pub node_acks: NodeAcks,
    /// Seqs whose first tap copy the modelled tap loses (`5`, `"100-120"`);
    /// their re-launches (flagged RETRANSMIT) pass.
    #[serde(default)]
    pub lose_tap_copies: Vec<SeqRange>,
    /// `[from, to]`: the modelled tap shows nothing from `from` ms to `to` ms
    /// after the model starts (a tap outage that recovers).
    #[serde(default)]
    pub tap_cut_ms: Option<[u64; 2]>,
    /// Attack: this link's tap also shows every frame launched on the named
    /// link, re-addressed to this one (a genuine frame bridged across links).
    #[serde(default)]
    pub tap_injects_from: Option<String>,
    /// Attack: the far end of the fibre sends our heartbeats straight back,
    /// addresses swapped (a reflector; use with `backup_node: false`).
    #[serde(default)]
    pub reflect: bool,
}

/// A seq or an inclusive range of seqs: `5` or `"100-120"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange(pub u64, pub u64);

impl SeqRange {
    pub fn contains(&self, seq: u64) -> bool {
        (self.0..=self.1).contains(&seq)
    }
}

impl<'de> Deserialize<'de> for SeqRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u64),
            Text(String),
        }
        let bad = |s: &str| serde::de::Error::custom(format!("`{s}`: want a seq or FROM-TO"));
        match Raw::deserialize(d)? {
            Raw::One(n) => Ok(SeqRange(n, n)),
            Raw::Text(s) => {
                let (a, b) = s.split_once('-').unwrap_or((&s, &s));
                let a: u64 = a.trim().parse().map_err(|_| bad(&s))?;
                let b: u64 = b.trim().parse().map_err(|_| bad(&s))?;
                if a > b {
                    return Err(bad(&s));
                }
                Ok(SeqRange(a, b))
            }
        }
    }
}

impl HarnessLinkConfig {
    /// The modelled node acks a backup frame after the fibre's round trip.
    pub fn ack_delay_ns(&self) -> u64 {
        yaml::us_to_ns(self.fibre_delay_us).saturating_mul(2)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeAcks {
    /// What it journaled, for the epoch it heard.
    #[default]
    Faithful,
    /// The same seqs, but for the epoch before: a node still on an earlier run.
    OtherEpoch,
    /// A million seqs beyond what it journaled: a node that claims too much.
    BeyondLaunched,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TapMode {
    /// A faithful passive tap.
    #[default]
    Mirror,
    /// The tap fibre is cut: no copies arrive.
    Cut,
    /// Every copy arrives with one payload bit flipped.
    Corrupt,
}

fn default_stream_id() -> u32 {
    1
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/taphold")
}
/// Re-launches per message and link: enough for a few lost copies in a row,
/// few enough that a dead tap shows as a dead link.
pub const MAX_TAP_RETRANSMITS: u32 = 16;

fn default_stats_interval_ms() -> u64 {
    1000
}
fn default_max_payload() -> u16 {
    8900
}
fn default_harness_ring() -> u32 {
    4096
}
fn one() -> u16 {
    1
}
fn yes() -> bool {
    true
}

/// The release policy field, kept with its text for messages.
#[derive(Debug, Clone)]
pub struct PolicyText(pub PolicySpec, pub String);

impl<'de> Deserialize<'de> for PolicyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        yaml::from_str_with(d, "any, all or k-of-n", |s| {
            PolicySpec::from_str(s)
                .map(|p| PolicyText(p, s.to_string()))
                .map_err(|e| format!("`{s}`: {e}"))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContentText {
    Full,
    Digest,
}

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

    /// The link ring, the confirmation key and the arbiter ring, from their
    /// files; the demo key refused outside a replay unless allowed.
    fn resolve_keys(&self, file: &str, text: &str) -> Result<Keys, ConfigError> {
        use taphold_runtime::key;
        let link = key::ring(
            file,
            text,
            self.digest_key.0,
            ("digest_key_next_file", self.digest_key_next_file.as_deref()),
            ("digest_key_next_from", self.digest_key_next_from),
        )?;
        let confirm = key::optional_file(
            file,
            text,
            "confirm_key_file",
            self.confirm_key_file.as_deref(),
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
            None if self.arbiter_key_next_file.is_some() => {
                return Err(ConfigError::at(
                    file,
                    text,
                    "arbiter_key_next_file",
                    "a next arbiter key needs arbiter_key_file",
                ))
            }
            None => link,
        };
        let allowed = self.allow_demo_key || self.harness.is_some();
        let field = if self.digest_key_file.is_some() {
            "digest_key_file"
        } else {
            "digest_key"
        };
        key::refuse_demo(
            file,
            text,
            field,
            &link.keys().copied().collect::<Vec<_>>(),
            allowed,
        )?;
        if let Some(c) = confirm {
            key::refuse_demo(file, text, "confirm_key_file", &[c], allowed)?;
        }
        if self.arbiter_key_file.is_some() {
            let a: Vec<_> = arbiter.keys().copied().collect();
            key::refuse_demo(file, text, "arbiter_key_file", &a, allowed)?;
        }
        let payload = match (self.link_security, &self.payload_key_file) {
            (LinkSecurity::Mac, None) => None,
            (LinkSecurity::Mac, Some(_)) => {
                return Err(ConfigError::at(
                    file,
                    text,
                    "payload_key_file",
                    "is only used with link_security: aead",
                ))
            }
            (LinkSecurity::Aead, None) => {
                return Err(ConfigError::at(
                    file,
                    text,
                    "link_security",
                    "aead needs payload_key_file (64 hex digits, mode 0600: `taphold keygen --payload --out FILE`)",
                ))
            }
            (LinkSecurity::Aead, Some(_)) if self.release.content == ContentText::Digest => {
                return Err(ConfigError::at(
                    file,
                    text,
                    "link_security",
                    "aead encrypts the payload of a full copy; with release.content: digest no payload crosses the link",
                ))
            }
            (LinkSecurity::Aead, Some(p)) => {
                Some(key::payload_key(file, text, "payload_key_file", p)?)
            }
        };
        Ok(Keys {
            link,
            confirm: confirm.unwrap_or(*link.current()),
            arbiter,
            confirm_shared: confirm.is_none(),
            arbiter_shared: self.arbiter_key_file.is_none(),
            payload,
        })
    }
}

/// Whether the backup frame's payload is encrypted on the backup link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkSecurity {
    #[default]
    Mac,
    Aead,
}

/// Every key the appliance uses, by use.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Backup frames, heartbeats, acks, and the backup-content digest.
    pub link: taphold_wire::digest::KeyRing,
    /// Confirmations to sources.
    pub confirm: taphold_wire::digest::DigestKey,
    /// The arbiter's target confirmations.
    pub arbiter: taphold_wire::digest::KeyRing,
    /// No key of their own was given: the link key stands in (warned at start).
    pub confirm_shared: bool,
    pub arbiter_shared: bool,
    /// `link_security: aead`: the payload key.
    pub payload: Option<taphold_wire::payload::PayloadKey>,
}

impl Default for Keys {
    /// Until `Config::parse` resolves them: all zeros, never used.
    fn default() -> Keys {
        let zero = taphold_wire::digest::KeyRing::single(taphold_wire::digest::DigestKey([0; 16]));
        Keys {
            link: zero,
            confirm: taphold_wire::digest::DigestKey([0; 16]),
            arbiter: zero,
            confirm_shared: true,
            arbiter_shared: true,
            payload: None,
        }
    }
}

/// Until `Config::parse` resolves it: all zeros, never used.
fn unresolved_key() -> Hex128 {
    Hex128(taphold_wire::digest::DigestKey([0; 16]))
}

/// The most payload one UDP datagram over IPv4 carries: 65535 - 20 - 8.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// DPDK's headroom in front of every mbuf's data.
const MBUF_HEADROOM: usize = 128;
/// DPDK's default mbuf data room (RTE_MBUF_DEFAULT_BUF_SIZE: 2048 + headroom).
const MIN_DATA_ROOM: usize = 2048 + MBUF_HEADROOM;
/// Mbufs beyond the hold ring's: P's rx descriptors (1024, dpdk::PortConfig's
/// default) filled while the ring is full, plus bursts and hand-off rings in
/// flight.
const MBUF_RESERVE: u32 = 2048;
/// DPDK's ring names are at most 28 characters (RTE_RING_NAMESIZE - 1).
const RING_NAME_MAX: usize = 28;
/// Bounds of the harness's rings: a ring holds `size - 1` frames and a
/// burst is 32; above 2^24 the four rings per link need gigabytes.
const HARNESS_RING_MIN: u32 = 64;
const HARNESS_RING_MAX: u32 = 1 << 24;
/// The modelled fibre's longest one-way delay: 1 s is 200,000 km.
const MAX_FIBRE_DELAY_US: u64 = 1_000_000;

/// Builds errors located in one config text.
struct At<'a> {
    file: &'a str,
    text: &'a str,
}

impl At<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.text, path, message)
    }
}

impl yaml::Validate for Config {
    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let at = At { file, text };
        self.check_links(&at)?;
        self.check_release(&at)?;
        self.check_addresses(&at)?;
        self.check_sizes(&at)?;
        self.check_times(&at)?;
        self.check_lcores(&at)?;
        self.check_harness(&at)
    }
}

impl Config {
    /// Backup links: how many, their names, and that P, every link's port
    /// and every tap are distinct devices.
    fn check_links(&self, at: &At) -> Result<(), ConfigError> {
        let n = self.backup_links.len();
        if n == 0 || n > MAX_LINKS {
            return Err(at.err(
                "backup_links",
                format!("need 1 to {MAX_LINKS} backup links, found {n}"),
            ));
        }
        let mut names = BTreeSet::new();
        // Device name → the first field that uses it.
        let mut devices: BTreeMap<&str, String> = BTreeMap::new();
        devices.insert(&self.primary.port, "primary.port".into());
        if let Some(q) = self.port2() {
            if q.port == self.primary.port {
                return Err(at.err(
                    "gateway.port2.port",
                    format!(
                        "`{}` is already primary.port: Q is a device of its own",
                        q.port
                    ),
                ));
            }
            devices.insert(&q.port, "gateway.port2.port".into());
        }
        for (i, l) in self.backup_links.iter().enumerate() {
            if !names.insert(l.name.as_str()) {
                return Err(at.err(
                    &format!("backup_links.{i}.name"),
                    format!("duplicate link name `{}`", l.name),
                ));
            }
            for (what, dev) in [("port", &l.port), ("tap", &l.tap)] {
                let path = format!("backup_links.{i}.{what}");
                if let Some(first) = devices.get(dev.as_str()) {
                    let why = if *first == format!("backup_links.{i}.port") {
                        "the tap must be a different device from the link port".to_string()
                    } else {
                        format!(
                            "`{dev}` is already {first}: P, each backup link's port and each tap are devices of their own"
                        )
                    };
                    return Err(at.err(&path, why));
                }
                devices.insert(dev, path);
            }
        }
        if let Some(h) = &self.harness {
            for (i, hl) in h.links.iter().enumerate() {
                if let Some(first) = hl.sink.as_deref().and_then(|s| devices.get(s)) {
                    return Err(at.err(
                        &format!("harness.links.{i}.sink"),
                        format!("`{}` is already {first}: a sink is a device of its own (harness links may share one)", hl.sink.as_deref().unwrap_or_default()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The release policy against the links in service, and the secondary
    /// mode against the links it can use.
    fn check_release(&self, at: &At) -> Result<(), ConfigError> {
        let n = self.backup_links.len();
        let active = self.backup_links.iter().filter(|l| !l.standby).count();
        let standby = n - active;
        if active == 0 {
            return Err(at.err(
                "backup_links",
                "every backup link is a standby: at least one must be in service",
            ));
        }
        let PolicyText(spec, text) = &self.release.policy;
        // The policy counts the links in service; a standby joins only by a
        // failover, as a replacement (control.rs, `satisfiable`). So the n of
        // k-of-n is the number of links in service.
        if let (ReleasePolicy::AtLeast(k), Some(of)) = (spec.policy, spec.of) {
            if usize::from(of) != active {
                let hint = if usize::from(k) <= active {
                    format!("write `{k}-of-{active}`")
                } else {
                    format!("it needs {k} links in service")
                };
                let msg = if standby > 0 {
                    format!(
                        "`{text}`: n counts the backup links in service, {active} of the {n} here ({standby} standby, which join only by failover); {hint}"
                    )
                } else {
                    format!("`{text}` names {of} backup links, but {n} are configured; {hint}")
                };
                return Err(at.err("release.policy", msg));
            }
        }
        spec.validate(active).map_err(|e| {
            at.err(
                "release.policy",
                format!("`{text}` with {active} link(s) in service: {e}"),
            )
        })?;
        match self.secondary_mode {
            SecondaryMode::Failover if standby == 0 => {
                return Err(at.err(
                    "secondary_mode",
                    "failover puts a standby link in service, and no backup link is `standby: true`: without one it can only halt; add a standby link, or write `halt`",
                ));
            }
            SecondaryMode::Journal if self.local_journal.is_none() => {
                return Err(at.err(
                    "secondary_mode",
                    "journal needs a `local_journal: {dir: ...}` section",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Addresses: ours must be unicast and usable; the destination's must be
    /// somewhere a frame can go.
    fn check_addresses(&self, at: &At) -> Result<(), ConfigError> {
        let p = &self.primary;
        own_mac(at, "primary.mac", p.mac)?;
        let ip = p.ip;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(at.err(
                "primary.ip",
                format!("{ip} cannot be our address: P answers ARP for it and sources send to it, so it must be a unicast address"),
            ));
        }
        if p.mode == PrimaryMode::Gateway {
            return self.check_gateway(at);
        }
        if self.gateway.is_some() {
            return Err(at.err(
                "gateway",
                "is for primary.mode: gateway; in listener mode released messages go to `destination`",
            ));
        }
        if p.udp_port == 0 {
            return Err(at.err(
                "primary.udp_port",
                "0 is not a port a source can send to: give the UDP port messages arrive on",
            ));
        }
        let Some(d) = &self.destination else {
            return Err(at.err(
                "destination",
                "missing: in listener mode released messages go to the destination's mac, ip and udp_port",
            ));
        };
        if d.mac.0.is_multicast() {
            return Err(at.err(
                "destination.mac",
                format!("{} is a group address: released messages would go to every member; give the next hop's unicast MAC (for a multicast destination, the router's)", d.mac.0),
            ));
        }
        if d.mac.0 == EthernetAddress([0; 6]) {
            return Err(at.err(
                "destination.mac",
                "00:00:00:00:00:00 is not a next hop's MAC",
            ));
        }
        if d.mac == p.mac {
            return Err(at.err(
                "destination.mac",
                "is primary.mac: released messages would be addressed back to us; give the next hop's MAC",
            ));
        }
        if d.ip.is_unspecified() {
            return Err(at.err(
                "destination.ip",
                "0.0.0.0 is no destination: give the address released messages go to",
            ));
        }
        if d.udp_port == 0 {
            return Err(at.err(
                "destination.udp_port",
                "0 is not a port a datagram can be sent to: give the destination's UDP port",
            ));
        }
        if let Some(port) = d.target_confirm_port {
            let field = "destination.target_confirm_port";
            if port == 0 || port == p.udp_port {
                return Err(at.err(
                    field,
                    format!("{port}: target confirmations need a UDP port of their own on primary.ip, not 0 and not primary.udp_port ({})", p.udp_port),
                ));
            }
            if d.framing != Framing::Taphold {
                return Err(at.err(
                    field,
                    "needs destination.framing: taphold: an arbiter confirms messages by (stream, epoch, seq), which only the delivery header tells it",
                ));
            }
        }
        for (i, l) in self.backup_links.iter().enumerate() {
            if let Some(m) = l.mac {
                own_mac(at, &format!("backup_links.{i}.mac"), m)?;
            }
            let peer = format!("backup_links.{i}.peer_mac");
            if l.peer_mac.0.is_multicast() || l.peer_mac.0 == EthernetAddress([0; 6]) {
                return Err(at.err(
                    &peer,
                    format!("{} is not a unicast address: give the backup node's MAC on this link (its config's `mac`)", l.peer_mac.0),
                ));
            }
            if l.mac == Some(l.peer_mac) {
                return Err(at.err(
                    &peer,
                    "is the link's own `mac`: the backup node's MAC must differ from ours",
                ));
            }
        }
        Ok(())
    }

    /// What released datagrams carry (gateway mode forwards segments as they came).
    pub fn framing(&self) -> Framing {
        self.destination
            .as_ref()
            .map_or(Framing::Raw, |d| d.framing)
    }

    pub fn unconfirmed_alert_ms(&self) -> u64 {
        self.destination
            .as_ref()
            .map_or_else(default_unconfirmed_alert_ms, |d| d.unconfirmed_alert_ms)
    }

    /// Gateway mode's second port, if configured (and in gateway mode).
    pub fn port2(&self) -> Option<&Port2Config> {
        (self.primary.mode == PrimaryMode::Gateway)
            .then_some(self.gateway.as_ref())
            .flatten()
            .and_then(|g| g.port2.as_ref())
    }

    /// Gateway mode: routes, neighbours and protection rules that can work.
    fn check_gateway(&self, at: &At) -> Result<(), ConfigError> {
        let ours = self.primary.ip;
        if self.link_security == LinkSecurity::Aead {
            return Err(at.err(
                "link_security",
                "gateway mode does not encrypt TCP segments (content modes 2 and 3) yet: use link_security: mac",
            ));
        }
        if self.destination.is_some() {
            return Err(at.err(
                "destination",
                "is for listener mode: in gateway mode packets go where their IPv4 destination and gateway.routes say; remove it",
            ));
        }
        if self.release.content != ContentText::Full {
            return Err(at.err(
                "release.content",
                "gateway mode backs up segments as gateway.content says (tcp or fix-compact): leave release.content at full",
            ));
        }
        let Some(g) = &self.gateway else {
            return Err(at.err(
                "gateway",
                "missing: primary.mode: gateway needs gateway.routes and gateway.protect",
            ));
        };
        if g.protect.len() > 255 {
            return Err(at.err("gateway.protect", "at most 255 rules"));
        }
        for (i, r) in g.protect.iter().enumerate() {
            if let Some(c) = &r.confirm_to {
                let f = format!("gateway.protect.{i}.confirm_to");
                if c.port == 0 {
                    return Err(at.err(
                        &format!("{f}.port"),
                        "0 is not a port a datagram can be sent to",
                    ));
                }
                if c.ip.is_unspecified() {
                    return Err(at.err(&format!("{f}.ip"), "0.0.0.0 is no listener"));
                }
                if c.mac.0.is_multicast() || c.mac.0 == EthernetAddress([0; 6]) {
                    return Err(at.err(
                        &format!("{f}.mac"),
                        format!("{} is not a unicast MAC", c.mac.0),
                    ));
                }
            }
        }
        if g.routes.is_empty() {
            return Err(at.err("gateway.routes", "needs at least one route"));
        }
        if g.protect.is_empty() {
            return Err(at.err(
                "gateway.protect",
                "needs at least one rule: without one nothing is protected and taphold is only a router",
            ));
        }
        let q_addresses = g.port2.as_ref().map_or(&[][..], |q| &q.addresses[..]);
        if let Some(q) = &g.port2 {
            if q.mac.0.is_multicast() || q.mac.0 == EthernetAddress([0; 6]) {
                return Err(at.err(
                    "gateway.port2.mac",
                    format!("{} is not a unicast MAC", q.mac.0),
                ));
            }
            if q.addresses.is_empty() {
                return Err(at.err(
                    "gateway.port2.addresses",
                    "needs at least one address of ours on Q: Q answers ARP for it and asks from it",
                ));
            }
            for (i, a) in q.addresses.iter().enumerate() {
                if *a == ours
                    || g.addresses.contains(a)
                    || q.addresses[..i].contains(a)
                    || a.is_unspecified()
                    || a.is_broadcast()
                    || a.is_multicast()
                {
                    return Err(at.err(
                        &format!("gateway.port2.addresses.{i}"),
                        format!("{a} cannot be an address of ours on Q: unicast, and not already ours (primary.ip, gateway.addresses or an earlier one)"),
                    ));
                }
            }
        }
        for (i, r) in g.routes.iter().enumerate() {
            if r.port == RoutePort::Q && g.port2.is_none() {
                return Err(at.err(
                    &format!("gateway.routes.{i}.port"),
                    "q needs gateway.port2 (the second port): configure it or route on p",
                ));
            }
            if let Some(via) = r.via {
                if via == ours
                    || g.addresses.contains(&via)
                    || q_addresses.contains(&via)
                    || via.is_unspecified()
                    || via.is_broadcast()
                    || via.is_multicast()
                {
                    return Err(at.err(
                        &format!("gateway.routes.{i}.via"),
                        format!("{via} cannot be a next hop: give a unicast router address other than primary.ip"),
                    ));
                }
                // The connected route that reaches it: the longest, as ingress picks.
                let Some(link) = g
                    .routes
                    .iter()
                    .filter(|o| o.via.is_none() && o.prefix.0.contains(via.octets()))
                    .max_by_key(|o| o.prefix.0.len)
                else {
                    return Err(at.err(
                        &format!("gateway.routes.{i}.via"),
                        format!("{via} is on no directly connected route (one without `via`): taphold could not reach it by ARP"),
                    ));
                };
                if link.port != r.port {
                    return Err(at.err(
                        &format!("gateway.routes.{i}.port"),
                        format!("{via} is reached on port {} (its directly connected route's): a route's port is its router's", match link.port { RoutePort::P => "p", RoutePort::Q => "q" }),
                    ));
                }
            }
        }
        for (i, a) in g.addresses.iter().enumerate() {
            if *a == ours || a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                return Err(at.err(
                    &format!("gateway.addresses.{i}"),
                    format!("{a} cannot be an address of ours: unicast, and not primary.ip again"),
                ));
            }
        }
        for (i, n) in g.neighbors.iter().enumerate() {
            if n.mac.0.is_multicast() || n.mac.0 == EthernetAddress([0; 6]) {
                return Err(at.err(
                    &format!("gateway.neighbors.{i}.mac"),
                    format!("{} is not a unicast MAC", n.mac.0),
                ));
            }
        }
        if g.neighbors.len() > g.max_neighbors as usize {
            return Err(at.err(
                "gateway.max_neighbors",
                format!(
                    "{} is fewer than the {} static neighbors",
                    g.max_neighbors,
                    g.neighbors.len()
                ),
            ));
        }
        for (field, v) in [
            ("gateway.max_flows", g.max_flows),
            ("gateway.max_neighbors", g.max_neighbors),
        ] {
            if !(1..=4096).contains(&v) {
                return Err(at.err(field, format!("{v} must be 1 to 4096")));
            }
        }
        if !(1..=60_000).contains(&g.arp_retry_ms) {
            return Err(at.err(
                "gateway.arp_retry_ms",
                format!("{} must be 1 to 60000", g.arp_retry_ms),
            ));
        }
        if !(1..=yaml::HOUR_US).contains(&g.flow_ack_interval_us) {
            return Err(at.err(
                "gateway.flow_ack_interval_us",
                format!(
                    "{} must be 1 to {} (an hour)",
                    g.flow_ack_interval_us,
                    yaml::HOUR_US
                ),
            ));
        }
        Ok(())
    }

    /// Every size that DPDK or our rings would refuse after EAL.
    fn check_sizes(&self, at: &At) -> Result<(), ConfigError> {
        let n = self.backup_links.len() as u32;
        let cap = self.hold_ring.capacity;
        let max = hold_ring::MAX_CAPACITY as u32;
        if !cap.is_power_of_two() || !(2..=max).contains(&cap) {
            return Err(at.err(
                "hold_ring.capacity",
                format!("{cap} must be a power of two between 2 and {max} (2^24)"),
            ));
        }
        let m = &self.mempool;
        let needed = cap * (1 + n) + MBUF_RESERVE;
        if m.mbufs < needed {
            return Err(at.err(
                "mempool.mbufs",
                format!("{} is too few: a full hold ring ({cap}) with a backup frame per link in flight, plus rx descriptors, needs at least {needed}", m.mbufs),
            ));
        }
        yaml::check_mempool_cache(m.cache, m.mbufs).map_err(|e| at.err("mempool.cache", e))?;
        if usize::from(m.data_room) < MIN_DATA_ROOM {
            return Err(at.err(
                "mempool.data_room",
                format!(
                    "{} is below DPDK's {MIN_DATA_ROOM}-byte default",
                    m.data_room
                ),
            ));
        }
        let p = &self.primary;
        if p.max_payload == 0 {
            return Err(at.err("primary.max_payload", "must be at least 1"));
        }
        // A released datagram carries the delivery header too (framing: taphold).
        let (room, with) = match self.framing() {
            Framing::Raw => (MAX_UDP_PAYLOAD, ""),
            Framing::Taphold => (
                MAX_UDP_PAYLOAD - delivery::HEADER_LEN,
                " less the delivery header of framing: taphold",
            ),
        };
        if usize::from(p.max_payload) > room {
            return Err(at.err(
                "primary.max_payload",
                format!(
                    "{} does not fit a UDP datagram over IPv4: at most {room} bytes (65507{with})",
                    p.max_payload
                ),
            ));
        }
        // The largest frame in an mbuf: Ethernet, IPv4 with options, UDP, the
        // delivery header (prepended into the headroom) and the payload; or the
        // backup frame of that payload.
        let overhead = 14 + 60 + 8 + delivery::HEADER_LEN + taphold::HEADER_LEN + 8;
        let need = overhead + usize::from(p.max_payload) + MBUF_HEADROOM;
        if need > usize::from(m.data_room) {
            return Err(at.err(
                "primary.max_payload",
                format!(
                    "a {}-byte message with its headers and DPDK's headroom needs {need}-byte mbufs, more than mempool.data_room ({}): raise data_room to {need}, or lower max_payload to {}",
                    p.max_payload,
                    m.data_room,
                    usize::from(m.data_room).saturating_sub(overhead + MBUF_HEADROOM)
                ),
            ));
        }
        if !(1..=2).contains(&p.tx_queues) {
            return Err(at.err("primary.tx_queues", "must be 1 or 2"));
        }
        let ev = self.events.ring;
        let max = spsc::MAX_CAPACITY as u32;
        if !ev.is_power_of_two() || ev > max {
            return Err(at.err(
                "events.ring",
                format!("{ev} must be a power of two between 1 and {max} (2^24)"),
            ));
        }
        if !(16..=1 << 30).contains(&self.events.csv_max_kb) {
            return Err(at.err(
                "events.csv_max_kb",
                format!(
                    "{} must be 16 to 1073741824 (1 TiB)",
                    self.events.csv_max_kb
                ),
            ));
        }
        if self.events.csv_keep > 1000 {
            return Err(at.err(
                "events.csv_keep",
                format!("{}: at most 1000 rotated files", self.events.csv_keep),
            ));
        }
        if let Some(j) = &self.local_journal {
            if j.dir.is_empty() {
                return Err(at.err("local_journal.dir", "must name a directory"));
            }
            // One whole record (the largest backup frame) fits a segment, so
            // a segment is never a file per message.
            let record = journal_record::OVERHEAD
                + taphold::HEADER_LEN
                + taphold::BACKUP_BODY_PREFIX_LEN
                + usize::from(p.max_payload)
                + taphold::DIGEST_LEN;
            let min = record.max(4096) as u64;
            if j.segment_bytes < min {
                return Err(at.err(
                    "local_journal.segment_bytes",
                    format!("{} is below the minimum of {min}: a segment holds at least 4096 bytes and one whole record (a {}-byte message's is {record})", j.segment_bytes, p.max_payload),
                ));
            }
        }
        Ok(())
    }

    /// Every time in the config: in range, so that it converts to ns without
    /// overflow and is not a unit mistake.
    fn check_times(&self, at: &At) -> Result<(), ConfigError> {
        const HEALTH: &str = "no health threshold or period is longer than an hour (the patent's are 350 us to 10 ms); check the unit";
        let h = &self.health;
        let us = [
            (
                "hold_ring.confirm_timeout_us",
                self.hold_ring.confirm_timeout_us,
                1,
                "a confirmation takes microseconds; check the unit",
            ),
            ("health.ack_timeout_us", h.ack_timeout_us, 1, HEALTH),
            (
                "health.peer_heartbeat_period_us",
                h.peer_heartbeat_period_us,
                1,
                HEALTH,
            ),
            ("health.heartbeat_grace_us", h.heartbeat_grace_us, 0, HEALTH),
            ("health.tap_timeout_us", h.tap_timeout_us, 1, HEALTH),
            ("health.down_after_us", h.down_after_us, 0, HEALTH),
            ("health.up_after_us", h.up_after_us, 0, HEALTH),
            (
                "health.heartbeat_interval_us",
                h.heartbeat_interval_us,
                1,
                HEALTH,
            ),
        ];
        for (path, v, min, why) in us {
            yaml::check_time(v, min, yaml::HOUR_US, "us", why).map_err(|e| at.err(path, e))?;
        }
        let ms = [
            (
                "stats_interval_ms",
                self.stats_interval_ms,
                "a stats line at most hourly; check the unit",
            ),
            (
                "latency_monitor.window_ms",
                self.latency_monitor.window_ms,
                "a latency window of more than an hour never alerts in time; check the unit",
            ),
            (
                "hold_ring.backpressure_alert_ms",
                self.hold_ring.backpressure_alert_ms,
                "an alert an hour after the ring filled comes too late; check the unit",
            ),
            (
                "destination.unconfirmed_alert_ms",
                self.unconfirmed_alert_ms(),
                "an alert an hour after the destination stopped confirming comes too late; check the unit",
            ),
        ];
        for (path, v, why) in ms {
            yaml::check_time(v, 1, yaml::HOUR_MS, "ms", why).map_err(|e| at.err(path, e))?;
        }
        use taphold_core::latency::MonitorConfigError as M;
        self.latency_monitor
            .monitor_config()
            .validate()
            .map_err(|e| {
                let field = match e {
                    M::ZeroWindow => "window_ms",
                    M::Quantile(_) => "quantile",
                    M::Factor(_) => "factor",
                    M::BaselineWindows(_) => "baseline_windows",
                    M::ZeroMinSamples => "min_samples",
                };
                at.err(&format!("latency_monitor.{field}"), e.to_string())
            })?;
        if !(1..=MAX_TAP_RETRANSMITS).contains(&h.tap_retransmits) {
            return Err(at.err(
                "health.tap_retransmits",
                format!(
                    "{} must be 1 to {MAX_TAP_RETRANSMITS}: a lost tap copy needs at least one re-launch, and a link that loses more is failing (its health check takes it down)",
                    h.tap_retransmits
                ),
            ));
        }
        if let Some(hs) = &self.harness {
            for (i, hl) in hs.links.iter().enumerate() {
                yaml::check_time(
                    hl.fibre_delay_us,
                    0,
                    MAX_FIBRE_DELAY_US,
                    "us",
                    "1 s of fibre is 200,000 km; check the unit",
                )
                .map_err(|e| at.err(&format!("harness.links.{i}.fibre_delay_us"), e))?;
                if let Some([from, to]) = hl.tap_cut_ms {
                    if from >= to || to > yaml::HOUR_MS {
                        return Err(at.err(
                            &format!("harness.links.{i}.tap_cut_ms"),
                            format!("[{from}, {to}]: want [from, to] ms with from < to ≤ an hour"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every hot role runs exactly once, each lcore is one entry with
    /// something to do, and the roles the config relies on are mapped.
    fn check_lcores(&self, at: &At) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        let mut ids: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, l) in self.lcores.iter().enumerate() {
            if let Some(first) = ids.insert(l.lcore, i) {
                return Err(at.err(
                    &format!("lcores.{i}.lcore"),
                    format!("lcore {} is already lcores.{first}: list all its roles in that one entry (roles: [a, b])", l.lcore),
                ));
            }
            if l.roles.is_empty() {
                return Err(at.err(
                    &format!("lcores.{i}.roles"),
                    format!(
                        "lcore {} has no roles: it would only spin; drop the entry",
                        l.lcore
                    ),
                ));
            }
            for r in &l.roles {
                if !seen.insert(*r) {
                    return Err(at.err(
                        &format!("lcores.{i}.roles"),
                        format!("role {r} is mapped more than once"),
                    ));
                }
            }
        }
        for r in [RoleName::Ingress, RoleName::TapRx, RoleName::Egress] {
            if !seen.contains(&r) {
                return Err(at.err("lcores", format!("role {r} is not mapped to any lcore")));
            }
        }
        // link-rx reads the backup node's acks and heartbeats; without it
        // every link would be judged silent, and gate: ack release nothing.
        if !seen.contains(&RoleName::LinkRx) {
            let why = if self.release.gate == Gate::Ack {
                Some("release.gate: ack releases on the backup node's acks, which link-rx reads: map link-rx (it may share an lcore)")
            } else if self.health.require_peer {
                Some("health.require_peer judges each link on the backup node's acks and heartbeats, which link-rx reads: map link-rx (it may share an lcore), or set require_peer: false for a tap-only setup")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(at.err("lcores", format!("role link-rx is not mapped, but {why}")));
            }
        }
        match (&self.harness, seen.contains(&RoleName::TapModel)) {
            (Some(_), false) => Err(at.err(
                "lcores",
                "a harness is configured but role tap-model is not mapped",
            )),
            (None, true) => Err(at.err("lcores", "role tap-model needs a `harness` section")),
            _ => Ok(()),
        }
    }

    /// The replay harness: each modelled link once, rings DPDK can create.
    fn check_harness(&self, at: &At) -> Result<(), ConfigError> {
        let Some(h) = &self.harness else {
            return Ok(());
        };
        let mut modelled: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, hl) in h.links.iter().enumerate() {
            let path = format!("harness.links.{i}.link");
            let Some(k) = self.backup_links.iter().position(|l| l.name == hl.link) else {
                return Err(at.err(&path, format!("no backup link named `{}`", hl.link)));
            };
            if let Some(from) = &hl.tap_injects_from {
                if !self.backup_links.iter().any(|l| l.name == *from) {
                    return Err(at.err(
                        &format!("harness.links.{i}.tap_injects_from"),
                        format!("no backup link named `{from}`"),
                    ));
                }
            }
            if let Some(first) = modelled.insert(&hl.link, i) {
                return Err(at.err(
                    &path,
                    format!("`{}` is already modelled by harness.links.{first}", hl.link),
                ));
            }
            // The link's port and tap become ring ports: `port>port_fibre`
            // and `tap>tap_feed` (crates/dpdk EthRingPair).
            let l = &self.backup_links[k];
            for (what, name, peer) in [("port", &l.port, "_fibre"), ("tap", &l.tap, "_feed")] {
                let ring = format!("{name}>{name}{peer}");
                if ring.len() > RING_NAME_MAX {
                    return Err(at.err(
                        &format!("backup_links.{k}.{what}"),
                        format!("`{name}` is too long for a harness ring port: its DPDK ring `{ring}` has {} characters, DPDK allows {RING_NAME_MAX}; name it in at most {} characters", ring.len(), (RING_NAME_MAX - 1 - peer.len()) / 2),
                    ));
                }
            }
        }
        let r = h.ring_size;
        if !r.is_power_of_two() || !(HARNESS_RING_MIN..=HARNESS_RING_MAX).contains(&r) {
            return Err(at.err(
                "harness.ring_size",
                format!("{r} must be a power of two between {HARNESS_RING_MIN} and {HARNESS_RING_MAX} (2^24): a ring holds size - 1 frames, a burst is 32"),
            ));
        }
        Ok(())
    }

    /// The release check over every configured link; egress narrows it to
    /// the links in service. Validation has checked the policy against those.
    pub fn release_check(&self) -> Result<PolicyCheck, PolicyError> {
        PolicyCheck::new(self.release.policy.0.policy, self.backup_links.len())
    }
}

/// Our own MAC on a port: a frame's source, so unicast and not zero.
fn own_mac(at: &At, path: &str, m: Mac) -> Result<(), ConfigError> {
    if m.0.is_multicast() {
        return Err(at.err(
            path,
            format!("{} is a group address and cannot be a frame's source: our MAC must be unicast (first octet even, e.g. 02:...)", m.0),
        ));
    }
    if m.0 == EthernetAddress([0; 6]) {
        return Err(at.err(path, "00:00:00:00:00:00 is not a usable MAC"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD: &str = include_str!("../../../config/default.yaml");

    #[test]
    fn the_shipped_default_config_is_valid() {
        let c = Config::parse("default.yaml", GOOD).unwrap();
        assert_eq!(c.backup_links.len(), 1);
        assert_eq!(c.primary.udp_port, 9000);
    }

    fn bad(edit: impl Fn(&str) -> String) -> ConfigError {
        Config::parse("t.yaml", &edit(GOOD)).unwrap_err()
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = bad(|s| s.replace("  udp_port: 9000\n", "  udp_port: 9000\n  udp_prot: 9001\n"));
        assert!(e.message.contains("udp_prot"), "{e}");
        let want = GOOD
            .lines()
            .position(|l| l.contains("udp_port: 9000"))
            .unwrap()
            + 2;
        assert_eq!(e.line, Some(want), "{e}");
    }

    #[test]
    fn malformed_values_are_named_with_their_line() {
        let e = bad(|s| s.replace("mac: 02:00:00:00:00:01", "mac: 02:00:00:zz:00:01"));
        assert!(
            e.to_string().contains("primary.mac") && e.to_string().contains("not a MAC"),
            "{e}"
        );
        assert_eq!(
            e.line,
            Some(
                GOOD.lines()
                    .position(|l| l.contains("mac: 02:00:00:00:00:01"))
                    .unwrap()
                    + 1
            )
        );
        let e = bad(|s| s.replace("ip: 198.51.100.1", "ip: 198.51.100.300"));
        assert!(e.to_string().contains("primary.ip"), "{e}");
        let e = bad(|s| s.replace("digest_key: \"", "digest_key: \"ab"));
        assert!(
            e.to_string().contains("digest_key") && e.to_string().contains("32 hex"),
            "{e}"
        );
        assert_eq!(
            e.line,
            Some(
                GOOD.lines()
                    .position(|l| l.starts_with("digest_key"))
                    .unwrap()
                    + 1
            )
        );
        let e = bad(|s| s.replace("policy: any", "policy: most"));
        assert!(e.to_string().contains("release.policy"), "{e}");
        let e = bad(|s| s.replace("idle: backoff", "idle: nap"));
        assert!(e.to_string().contains("idle"), "{e}");
    }

    #[test]
    fn semantic_errors_name_field_and_line() {
        let e = bad(|s| s.replace("capacity: 4096", "capacity: 1000"));
        assert_eq!(e.field, "hold_ring.capacity");
        assert_eq!(
            e.line,
            Some(
                GOOD.lines()
                    .position(|l| l.contains("capacity: 4096"))
                    .unwrap()
                    + 1
            )
        );
        let e = bad(|s| s.replace("policy: any", "policy: 2-of-1"));
        assert_eq!(e.field, "release.policy", "{e}");
        assert!(e.line.is_some());
        let e = bad(|s| {
            s.replace(
                "roles: [ingress, tap-rx, egress, link-rx, tap-model]",
                "roles: [ingress, tap-rx, link-rx, tap-model]",
            )
        });
        assert!(e.message.contains("egress"), "{e}");
        let e = bad(|s| {
            s.replace(
                "roles: [ingress, tap-rx, egress, link-rx, tap-model]",
                "roles: [ingress, tap-rx, egress, egress, tap-model]",
            )
        });
        assert_eq!(e.field, "lcores.0.roles", "{e}");
        assert!(e.line.is_some());
        let e = bad(|s| s.replace("  - link: b1", "  - link: b9"));
        assert_eq!(e.field, "harness.links.0.link", "{e}");
        assert_eq!(
            e.line,
            Some(GOOD.lines().position(|l| l.contains("- link: b1")).unwrap() + 1)
        );
        let e = bad(|s| s.replace("mbufs: 16383", "mbufs: 100"));
        assert_eq!(e.field, "mempool.mbufs", "{e}");
    }

    #[test]
    fn secondary_mode_and_monitor_settings_are_checked() {
        let e = bad(|s| s.replace("secondary_mode: halt", "secondary_mode: journal"));
        assert_eq!(e.field, "secondary_mode", "{e}");
        assert!(e.message.contains("local_journal"), "{e}");
        assert!(e.line.is_some());
        let e = bad(|s| format!("{s}latency_monitor:\n  factor: 0.5\n"));
        assert_eq!(e.field, "latency_monitor.factor", "{e}");
        let e = bad(|s| s.replace("secondary_mode: halt", "secondary_mode: pray"));
        assert!(e.to_string().contains("secondary_mode"), "{e}");
        let e = bad(|s| {
            s.replace(
                "    peer_mac: 02:00:00:00:0c:01",
                "    peer_mac: 02:00:00:00:0c:01\n    standby: true",
            )
        });
        assert_eq!(e.field, "backup_links", "every link a standby: {e}");
        let ok = Config::parse(
            "t.yaml",
            &GOOD.replace(
                "secondary_mode: halt",
                "secondary_mode: journal\nlocal_journal:\n  dir: /tmp/j",
            ),
        )
        .unwrap();
        assert_eq!(ok.secondary_mode, SecondaryMode::Journal);
    }

    /// The 1-based line of the first line of GOOD containing `needle`.
    fn line(needle: &str) -> usize {
        GOOD.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn missing_required_field_is_named_at_its_mapping() {
        let e = bad(|s| s.replace("  udp_port: 9100\n", ""));
        assert_eq!(e.field, "destination.udp_port", "{e}");
        assert_eq!(e.line, Some(line("destination:")), "{e}");
        assert!(e.message.contains("missing field"), "{e}");
        let e = bad(|s| s.replace("  udp_port: 9000\n", ""));
        assert_eq!(e.field, "primary.udp_port", "{e}");
        assert_eq!(e.line, Some(line("primary:")), "{e}");
        let e = bad(|s| s.replace("    peer_mac: 02:00:00:00:0c:01\n", ""));
        assert_eq!(e.field, "backup_links.0.peer_mac", "{e}");
        assert_eq!(e.line, Some(line("- name: b1")), "{e}");
        let e = bad(|s| s.replace("  capacity: 4096\n", ""));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("hold_ring.capacity", Some(line("hold_ring:"))),
            "{e}"
        );
    }

    #[test]
    fn duplicate_and_unknown_fields_are_named_with_their_line() {
        let e = bad(|s| s.replace("  udp_port: 9000\n", "  udp_port: 9000\n  udp_port: 9001\n"));
        assert_eq!(e.field, "primary.udp_port", "{e}");
        assert_eq!(e.line, Some(line("udp_port: 9000") + 1), "{e}");
        let e = bad(|s| {
            s.replace(
                "    sink: net_pcap1\n",
                "    sink: net_pcap1\n    tap: cut\n",
            )
        });
        assert_eq!(e.field, "harness.links.0.tap", "{e}");
        assert_eq!(e.line, Some(line("sink: net_pcap1") + 1), "{e}");
        let e = bad(|s| s.replace("  udp_port: 9000\n", "  udp_port: 9000\n  udp_prot: 9001\n"));
        assert_eq!(e.field, "primary", "{e}");
        assert_eq!(e.line, Some(line("udp_port: 9000") + 1), "{e}");
        // A bad MAC in a later mapping is found there, not in an earlier one.
        let e = bad(|s| s.replace("peer_mac: 02:00:00:00:0c:01", "peer_mac: 02:00:00:00:00:1"));
        assert_eq!(e.field, "backup_links.0.peer_mac", "{e}");
        assert_eq!(e.line, Some(line("peer_mac:")), "{e}");
    }

    /// Edits GOOD with `(from, to)` pairs (each must match), expects an error
    /// on `field` at the line of the first edited line containing `at`, and
    /// returns the error for its message.
    fn refused(edits: &[(&str, &str)], field: &str, at: &str) -> ConfigError {
        refused_nth(edits, field, at, 1)
    }

    /// As `refused`, at the `nth` (1-based) line containing `at`.
    fn refused_nth(edits: &[(&str, &str)], field: &str, at: &str, nth: usize) -> ConfigError {
        let mut text = GOOD.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "no `{from}` to edit");
            text = text.replacen(from, to, 1);
        }
        let e = match Config::parse("t.yaml", &text) {
            Err(e) => e,
            Ok(_) => panic!("accepted: {edits:?}"),
        };
        let want = line_in(&text, at, nth);
        assert_eq!((e.field.as_str(), e.line), (field, want), "{e}");
        e
    }

    fn accepted(edits: &[(&str, &str)]) -> Config {
        let mut text = GOOD.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "no `{from}` to edit");
            text = text.replacen(from, to, 1);
        }
        Config::parse("t.yaml", &text).unwrap_or_else(|e| panic!("{edits:?}: {e}"))
    }

    const B1_PEER: &str = "    peer_mac: 02:00:00:00:0c:01\n";

    /// A second backup link b2, a standby or not.
    fn b2(standby: bool) -> (&'static str, String) {
        (
            B1_PEER,
            format!("{B1_PEER}  - name: b2\n    port: b2\n    tap: t2\n    mac: 02:00:00:00:0b:02\n    peer_mac: 02:00:00:00:0c:02\n    standby: {standby}\n"),
        )
    }

    #[test]
    fn a_target_confirm_port_needs_the_delivery_header_and_a_port_of_its_own() {
        let framed = ("framing: raw ", "framing: taphold ");
        let port = |p: &str| {
            (
                "  udp_port: 9100\n",
                format!("  udp_port: 9100\n  target_confirm_port: {p}\n"),
            )
        };
        let (from, to) = port("9001");
        let c = accepted(&[framed, (from, &to)]);
        assert_eq!(
            c.destination.as_ref().unwrap().target_confirm_port,
            Some(9001)
        );
        assert_eq!(c.destination.as_ref().unwrap().unconfirmed_alert_ms, 1000);
        let e = refused(
            &[(from, &to)],
            "destination.target_confirm_port",
            "target_confirm_port",
        );
        assert!(e.message.contains("framing: taphold"), "{e}");
        for bad in ["0", "9000"] {
            let (from, to) = port(bad);
            let e = refused(
                &[framed, (from, &to)],
                "destination.target_confirm_port",
                "target_confirm_port",
            );
            assert!(e.message.contains("port of their own"), "{e}");
        }
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        Config::parse("default.yaml", GOOD).unwrap();
        let lab = Config::parse("lab.yaml", include_str!("../../../config/lab.yaml")).unwrap();
        assert_eq!(lab.backup_links.len(), 2);
        Config::parse(
            "production.example.yaml",
            &include_str!("../../../config/production.example.yaml").replace(
                "/etc/taphold/digest.key",
                key_file("prod", FILE_KEY, 0o600).to_str().unwrap(),
            ),
        )
        .unwrap();
    }

    #[test]
    fn k_of_n_counts_the_links_in_service() {
        // b1 in service, b2 standby: n is 1.
        let (from, to) = b2(true);
        let failover = ("secondary_mode: halt", "secondary_mode: failover");
        let c = accepted(&[(from, &to), failover, ("policy: any", "policy: 1-of-1")]);
        let check = c.release_check().unwrap();
        assert_eq!(
            check.links(),
            0b11,
            "egress narrows it to the links in service"
        );
        let e = refused(
            &[(from, &to), failover, ("policy: any", "policy: 1-of-2")],
            "release.policy",
            "policy: 1-of-2",
        );
        assert!(
            e.message.contains("1 standby") && e.message.contains("`1-of-1`"),
            "{e}"
        );
        let e = refused(
            &[(from, &to), failover, ("policy: any", "policy: 2-of-2")],
            "release.policy",
            "policy: 2-of-2",
        );
        assert!(e.message.contains("needs 2 links in service"), "{e}");
        // Both in service: 2-of-2 is fine, 1-of-1 names the wrong n.
        let (from, to) = b2(false);
        accepted(&[(from, &to), ("policy: any", "policy: 2-of-2")]);
        let e = refused(
            &[(from, &to), ("policy: any", "policy: 1-of-1")],
            "release.policy",
            "policy: 1-of-1",
        );
        assert!(e.message.contains("`1-of-2`"), "{e}");
    }

    #[test]
    fn failover_needs_a_standby_and_link_rx_is_mapped_when_needed() {
        let e = refused(
            &[("secondary_mode: halt", "secondary_mode: failover")],
            "secondary_mode",
            "secondary_mode: failover",
        );
        assert!(e.message.contains("standby"), "{e}");
        let (from, to) = b2(true);
        accepted(&[
            (from, &to),
            ("secondary_mode: halt", "secondary_mode: failover"),
        ]);
        let no_link_rx = ("egress, link-rx, tap-model", "egress, tap-model");
        let e = refused(&[no_link_rx], "lcores", "lcores:");
        assert!(e.message.contains("require_peer"), "{e}");
        let e = refused(
            &[
                no_link_rx,
                ("gate: tap", "gate: ack"),
                (
                    "heartbeat_interval_us: 1000\n",
                    "heartbeat_interval_us: 1000\n  require_peer: false\n",
                ),
            ],
            "lcores",
            "lcores:",
        );
        assert!(e.message.contains("gate: ack"), "{e}");
        accepted(&[
            no_link_rx,
            (
                "heartbeat_interval_us: 1000\n",
                "heartbeat_interval_us: 1000\n  require_peer: false\n",
            ),
        ]);
    }

    #[test]
    fn sizes_dpdk_or_our_rings_refuse_are_refused_before_eal() {
        let e = refused(
            &[("ring: 65536", "ring: 33554432")],
            "events.ring",
            "ring: 33554432",
        );
        assert!(e.message.contains("2^24"), "{e}");
        refused(&[("ring: 65536", "ring: 0")], "events.ring", "ring: 0");
        refused(
            &[("csv_max_kb: 262144", "csv_max_kb: 8")],
            "events.csv_max_kb",
            "csv_max_kb: 8",
        );
        refused(
            &[("csv_keep: 4", "csv_keep: 5000")],
            "events.csv_keep",
            "csv_keep: 5000",
        );
        refused(
            &[("capacity: 4096", "capacity: 33554432")],
            "hold_ring.capacity",
            "capacity:",
        );
        let e = refused(
            &[("cache: 256", "cache: 513")],
            "mempool.cache",
            "cache: 513",
        );
        assert!(e.message.contains("512"), "{e}");
        // The largest cache DPDK allows, on the smallest pool we allow
        // (1.5 x cache <= mbufs holds: yaml.rs tests the rule itself).
        let c = accepted(&[
            ("capacity: 4096", "capacity: 2"),
            ("mbufs: 16383", "mbufs: 2052"),
            ("cache: 256", "cache: 512"),
        ]);
        assert_eq!(c.mempool.cache, 512);
        refused(
            &[("ring_size: 4096", "ring_size: 1")],
            "harness.ring_size",
            "ring_size:",
        );
        refused(
            &[("ring_size: 4096", "ring_size: 2147483648")],
            "harness.ring_size",
            "ring_size:",
        );
        refused(
            &[("ring_size: 4096", "ring_size: 4095")],
            "harness.ring_size",
            "ring_size:",
        );
        // A harness link listed twice: named at the second.
        let e = refused_nth(
            &[(
                "    backup_node: true     # model a backup node (acks, heartbeats)\n",
                "    backup_node: true\n  - link: b1\n",
            )],
            "harness.links.1.link",
            "- link: b1",
            2,
        );
        assert!(
            e.message.contains("already modelled by harness.links.0"),
            "{e}"
        );
        // A harness port's DPDK ring name must fit 28 characters.
        let e = refused(
            &[("    port: b1\n", "    port: abcdefghijk\n")],
            "backup_links.0.port",
            "port: abcdefghijk",
        );
        assert!(e.message.contains("at most 10"), "{e}");
        accepted(&[("    port: b1\n", "    port: abcdefghij\n")]);
    }

    #[test]
    fn max_payload_must_fit_a_datagram_and_an_mbuf() {
        let e = refused(
            &[("max_payload: 8900", "max_payload: 65508")],
            "primary.max_payload",
            "max_payload:",
        );
        assert!(e.message.contains("65507"), "{e}");
        let e = refused(
            &[
                ("max_payload: 8900", "max_payload: 65500"),
                ("framing: raw", "framing: taphold"),
            ],
            "primary.max_payload",
            "max_payload:",
        );
        assert!(e.message.contains("65467"), "{e}");
        let e = refused(
            &[("max_payload: 8900", "max_payload: 10000")],
            "primary.max_payload",
            "max_payload:",
        );
        assert!(
            e.message.contains("mempool.data_room (10240)")
                && e.message.contains("lower max_payload to 9934"),
            "{e}"
        );
        accepted(&[("max_payload: 8900", "max_payload: 9934")]);
        refused(
            &[("max_payload: 8900", "max_payload: 0")],
            "primary.max_payload",
            "max_payload:",
        );
    }

    #[test]
    fn local_journal_segments_hold_a_record() {
        let j = |seg: &str| {
            format!(
                "secondary_mode: journal\nlocal_journal:\n  dir: /tmp/j\n  segment_bytes: {seg}"
            )
        };
        for seg in ["0", "100", "8999"] {
            let e = refused(
                &[("secondary_mode: halt", &j(seg))],
                "local_journal.segment_bytes",
                "segment_bytes:",
            );
            assert!(e.message.contains("minimum of 9008"), "{e}");
        }
        accepted(&[("secondary_mode: halt", &j("9008"))]);
        // In a flow mapping: the section's line.
        refused(
            &[(
                "secondary_mode: halt",
                "secondary_mode: journal\nlocal_journal: {dir: /tmp/j, segment_bytes: 0}",
            )],
            "local_journal.segment_bytes",
            "local_journal:",
        );
        refused(
            &[(
                "secondary_mode: halt",
                "secondary_mode: journal\nlocal_journal:\n  dir: \"\"",
            )],
            "local_journal.dir",
            "  dir: \"\"",
        );
    }

    #[test]
    fn group_and_zero_addresses_are_refused() {
        for (from, to, field) in [
            (
                "mac: 02:00:00:00:00:01",
                "mac: 01:00:5e:00:00:01",
                "primary.mac",
            ),
            (
                "mac: 02:00:00:00:00:01",
                "mac: ff:ff:ff:ff:ff:ff",
                "primary.mac",
            ),
            (
                "mac: 02:00:00:00:00:01",
                "mac: 00:00:00:00:00:00",
                "primary.mac",
            ),
            (
                "mac: 02:00:00:00:00:02",
                "mac: 33:33:00:00:00:01",
                "destination.mac",
            ),
            // Tested below: the same text as primary.mac.
            (
                "mac: 02:00:00:00:0b:01",
                "mac: 03:00:00:00:0b:01",
                "backup_links.0.mac",
            ),
            (
                "peer_mac: 02:00:00:00:0c:01",
                "peer_mac: ff:ff:ff:ff:ff:ff",
                "backup_links.0.peer_mac",
            ),
            (
                "peer_mac: 02:00:00:00:0c:01",
                "peer_mac: 02:00:00:00:0b:01",
                "backup_links.0.peer_mac",
            ),
            ("ip: 198.51.100.1", "ip: 0.0.0.0", "primary.ip"),
            ("ip: 198.51.100.1", "ip: 255.255.255.255", "primary.ip"),
            ("ip: 198.51.100.1", "ip: 239.1.2.3", "primary.ip"),
            ("ip: 203.0.113.10", "ip: 0.0.0.0", "destination.ip"),
            ("udp_port: 9000", "udp_port: 0", "primary.udp_port"),
            ("udp_port: 9100", "udp_port: 0", "destination.udp_port"),
        ] {
            let e = refused(&[(from, to)], field, to);
            assert!(!e.message.is_empty());
        }
        let e = refused_nth(
            &[("mac: 02:00:00:00:00:02", "mac: 02:00:00:00:00:01")],
            "destination.mac",
            "mac: 02:00:00:00:00:01",
            2,
        );
        assert!(e.message.contains("primary.mac"), "{e}");
        // A multicast destination is fine: its next hop is a router.
        accepted(&[("ip: 203.0.113.10", "ip: 239.1.2.3")]);
    }

    #[test]
    fn every_port_and_tap_is_a_device_of_its_own() {
        let (from, to) = b2(false);
        let two = |a: &str, b: &str| {
            let t = to.replace(a, b);
            refused_text(&GOOD.replacen(from, &t, 1))
        };
        let (e, t) = two("    port: b2\n", "    port: b1\n");
        assert_eq!(
            (e.field.as_str(), e.line),
            ("backup_links.1.port", line_in(&t, "    port: b1", 2)),
            "{e}"
        );
        assert!(e.message.contains("backup_links.0.port"), "{e}");
        let (e, t) = two("    tap: t2\n", "    tap: t1\n");
        assert_eq!(
            (e.field.as_str(), e.line),
            ("backup_links.1.tap", line_in(&t, "    tap: t1", 2)),
            "{e}"
        );
        let (e, t) = two("    tap: t2\n", "    tap: b1\n");
        assert_eq!(
            (e.field.as_str(), e.line),
            ("backup_links.1.tap", line_in(&t, "    tap: b1", 1)),
            "{e}"
        );
        let (e, _) = two("    port: b2\n", "    port: t1\n");
        assert_eq!(e.field, "backup_links.1.port", "{e}");
        refused_nth(
            &[("    port: b1\n", "    port: net_pcap0\n")],
            "backup_links.0.port",
            "port: net_pcap0",
            2,
        );
        refused(
            &[("    tap: t1\n", "    tap: net_pcap0\n")],
            "backup_links.0.tap",
            "tap: net_pcap0",
        );
        let e = refused(
            &[("    tap: t1\n", "    tap: b1\n")],
            "backup_links.0.tap",
            "tap: b1",
        );
        assert!(e.message.contains("different device"), "{e}");
        refused(
            &[("sink: net_pcap1", "sink: net_pcap0")],
            "harness.links.0.sink",
            "sink:",
        );
        refused(
            &[("sink: net_pcap1", "sink: t1")],
            "harness.links.0.sink",
            "sink:",
        );
    }

    fn refused_text(text: &str) -> (ConfigError, String) {
        (Config::parse("t.yaml", text).unwrap_err(), text.to_string())
    }

    /// The line of the `nth` (1-based) line of `text` containing `needle`.
    fn line_in(text: &str, needle: &str, nth: usize) -> Option<usize> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .nth(nth - 1)
            .map(|(i, _)| i + 1)
    }

    const GATEWAY: &str = include_str!("../../../config/gateway.yaml");

    /// config/gateway.yaml with `edits`, refused for `field` on the line of `at`.
    fn gateway_refused(edits: &[(&str, &str)], field: &str, at: &str) -> ConfigError {
        let mut text = GATEWAY.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "no `{from}` to edit");
            text = text.replacen(from, to, 1);
        }
        let e = match Config::parse("g.yaml", &text) {
            Err(e) => e,
            Ok(_) => panic!("accepted: {edits:?}"),
        };
        assert_eq!(
            (e.field.as_str(), e.line),
            (field, line_in(&text, at, 1)),
            "{e}"
        );
        e
    }

    #[test]
    fn the_gateway_configs_are_valid_and_resolve() {
        let c = Config::parse("gateway.yaml", GATEWAY).unwrap();
        assert_eq!(c.primary.mode, PrimaryMode::Gateway);
        let g = c.gateway.as_ref().unwrap();
        assert_eq!(g.routes.len(), 2);
        assert_eq!(g.protect[0].ports, PortRange(9878, 9879));
        Config::parse(
            "gateway.example.yaml",
            &include_str!("../../../config/gateway.example.yaml").replace(
                "/etc/taphold/digest.key",
                key_file("gw", FILE_KEY, 0o600).to_str().unwrap(),
            ),
        )
        .unwrap();
    }

    /// config/gateway.yaml made two-port: the exchange's subnet on Q.
    fn two_port_gateway() -> String {
        let text = GATEWAY
            .replacen(
                "  addresses: [10.71.2.1]  # the exchange's gateway, on the same segment",
                "  port2:\n    port: net_pcap2\n    mac: 02:00:00:00:00:02\n    addresses: [10.71.2.1]",
                1,
            )
            .replacen(
                "    - prefix: 10.71.2.0/24   # directly connected: the exchange",
                "    - prefix: 10.71.2.0/24   # directly connected: the exchange\n      port: q",
                1,
            );
        assert!(text.contains("port2:") && text.contains("port: q"));
        text
    }

    /// two_port_gateway() with `edits`, refused for `field` on the `nth` line with `at`.
    fn two_port_refused(edits: &[(&str, &str)], field: &str, at: &str, nth: usize) {
        let mut text = two_port_gateway();
        for (from, to) in edits {
            assert!(text.contains(from), "no `{from}` to edit");
            text = text.replacen(from, to, 1);
        }
        let e = match Config::parse("g2.yaml", &text) {
            Err(e) => e,
            Ok(_) => panic!("accepted: {edits:?}"),
        };
        assert_eq!(
            (e.field.as_str(), e.line),
            (field, line_in(&text, at, nth)),
            "{e}"
        );
    }

    #[test]
    fn a_two_port_gateway_is_valid_and_resolves() {
        let c = Config::parse("g2.yaml", &two_port_gateway()).unwrap();
        let q = c.port2().unwrap();
        assert_eq!(q.port, "net_pcap2");
        assert_eq!(c.gateway.as_ref().unwrap().routes[1].port, RoutePort::Q);
        // (What the plan makes of it: plan.rs, the_two_port_gateway_resolves.)
        // A router on Q, reached on Q.
        Config::parse(
            "g2.yaml",
            &two_port_gateway().replacen(
                "  neighbors:",
                "    - prefix: 10.9.0.0/16\n      via: 10.71.2.254\n      port: q\n  neighbors:",
                1,
            ),
        )
        .unwrap();
        // config/gateway.example.yaml's two-port option, as its comment says.
        let ex = include_str!("../../../config/gateway.example.yaml")
            .replace(
                "/etc/taphold/digest.key",
                key_file("gw2", FILE_KEY, 0o600).to_str().unwrap(),
            )
            .replacen("  addresses: [10.20.2.1]  # our address", "  # was", 1)
            .replacen("  #   port2:", "  port2:", 1)
            .replacen("  #     port: ", "    port: ", 1)
            .replacen("  #     mac: ", "    mac: ", 1)
            .replacen("  #     addresses: ", "    addresses: ", 1)
            .replacen(
                "    - prefix: 10.20.2.0/24      # the colo router: directly connected",
                "    - prefix: 10.20.2.0/24\n      port: q",
                1,
            )
            .replacen(
                "      via: 10.20.2.254",
                "      via: 10.20.2.254\n      port: q",
                1,
            );
        let c = Config::parse("gateway.example.yaml", &ex).unwrap();
        assert_eq!(c.port2().unwrap().port, "0000:3b:00.2");
        // Not in gateway mode, no Q.
        assert!(Config::parse("gateway.yaml", GATEWAY)
            .unwrap()
            .port2()
            .is_none());
    }

    #[test]
    fn two_port_gateway_errors_name_field_and_line() {
        // Q is a device of its own: not P, not a backup link's or tap's.
        two_port_refused(
            &[("    port: net_pcap2", "    port: net_pcap0")],
            "gateway.port2.port",
            "    port: net_pcap0",
            1,
        );
        two_port_refused(
            &[("    port: net_pcap2", "    port: b1")],
            "backup_links.0.port",
            "    port: b1",
            2,
        );
        two_port_refused(
            &[("    mac: 02:00:00:00:00:02", "    mac: 01:00:5e:00:00:02")],
            "gateway.port2.mac",
            "    mac: 01:00:5e:00:00:02",
            1,
        );
        two_port_refused(
            &[("    addresses: [10.71.2.1]", "    addresses: []")],
            "gateway.port2.addresses",
            "    addresses: []",
            1,
        );
        // Already ours on P.
        two_port_refused(
            &[("    addresses: [10.71.2.1]", "    addresses: [10.71.1.1]")],
            "gateway.port2.addresses.0",
            "    addresses: [10.71.1.1]",
            1,
        );
        two_port_refused(
            &[(
                "    addresses: [10.71.2.1]",
                "    addresses: [10.71.2.1, 10.71.2.1]",
            )],
            "gateway.port2.addresses.1",
            "    addresses: [10.71.2.1, 10.71.2.1]",
            1,
        );
        two_port_refused(
            &[("      port: q", "      port: r")],
            "gateway.routes.1.port",
            "      port: r",
            1,
        );
        // A route's port is its router's: 10.71.1.254 is on P.
        two_port_refused(
            &[(
                "  neighbors:",
                "    - prefix: 10.9.0.0/16\n      via: 10.71.1.254\n      port: q # its router is on P\n  neighbors:",
            )],
            "gateway.routes.2.port",
            "port: q # its router is on P",
            1,
        );
        // port: q needs Q.
        gateway_refused(
            &[(
                "    - prefix: 10.71.2.0/24   # directly connected: the exchange",
                "    - prefix: 10.71.2.0/24\n      port: q",
            )],
            "gateway.routes.1.port",
            "      port: q",
        );
    }

    #[test]
    fn gateway_mode_errors_name_field_and_line() {
        gateway_refused(
            &[("      ports: 9878-9879", "      ports: 9879-9878")],
            "gateway.protect.0.ports",
            "ports: 9879-9878",
        );
        gateway_refused(
            &[("      ports: 9878-9879", "      ports: http")],
            "gateway.protect.0.ports",
            "ports: http",
        );
        gateway_refused(
            &[("    - prefix: 10.71.2.0/24", "    - prefix: 10.71.2.0/33")],
            "gateway.routes.1.prefix",
            "10.71.2.0/33",
        );
        gateway_refused(
            &[("    - prefix: 10.71.2.0/24", "    - prefix: 10.71.2.0")],
            "gateway.routes.1.prefix",
            "prefix: 10.71.2.0 ",
        );
        // A router the appliance could not reach by ARP.
        gateway_refused(
            &[(
                "    - prefix: 10.71.2.0/24   # directly connected: the exchange",
                "    - prefix: 10.71.2.0/24\n      via: 192.0.2.1",
            )],
            "gateway.routes.1.via",
            "via: 192.0.2.1",
        );
        gateway_refused(
            &[("  addresses: [10.71.2.1]", "  addresses: [10.71.1.1]")],
            "gateway.addresses.0",
            "addresses: [10.71.1.1]",
        );
        gateway_refused(
            &[(
                "      mac: 02:00:00:00:0e:01",
                "      mac: 01:00:5e:00:00:01",
            )],
            "gateway.neighbors.0.mac",
            "01:00:5e:00:00:01",
        );
        gateway_refused(
            &[("  other: forward", "  other: drop")],
            "gateway.other",
            "other: drop",
        );
        gateway_refused(
            &[("  content: tcp ", "  content: digest ")],
            "gateway.content",
            "content: digest",
        );
        // release.content is gateway.content's business.
        gateway_refused(
            &[("  content: full ", "  content: digest ")],
            "release.content",
            "content: digest",
        );
        // Listener mode's sections do not mix with gateway mode's.
        gateway_refused(
            &[(
                "gateway:\n",
                "destination:\n  mac: 02:00:00:00:00:02\n  ip: 203.0.113.10\n  udp_port: 9100\ngateway:\n",
            )],
            "destination",
            "destination:",
        );
        gateway_refused(
            &[("  mode: gateway ", "  mode: listener ")],
            "gateway",
            "gateway:",
        );
        gateway_refused(
            &[("  mode: gateway ", "  mode: router ")],
            "primary.mode",
            "mode: router",
        );
        let e = gateway_refused(
            &[(
                "  protect:\n    - dst: 10.71.2.0/24   # the exchange's FIX order-entry gateways\n      ports: 9878-9879\n",
                "  protect: []\n",
            )],
            "gateway.protect",
            "protect: []",
        );
        assert!(e.message.contains("nothing is protected"), "{e}");
        gateway_refused(
            &[("  flow_ack_interval_us: 1000", "  flow_ack_interval_us: 0")],
            "gateway.flow_ack_interval_us",
            "flow_ack_interval_us: 0",
        );
    }

    #[test]
    fn gateway_mode_refuses_aead_it_does_not_apply() {
        let payload = key_file(
            "gw-payload",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
            0o600,
        );
        let text = GATEWAY.replacen(
            "stream_id: 1\n",
            &format!(
                "stream_id: 1\nlink_security: aead\npayload_key_file: {}\n",
                payload.display()
            ),
            1,
        );
        let (e, text) = refused_text(&text);
        assert_eq!(
            (e.field.as_str(), e.line),
            ("link_security", line_in(&text, "link_security: aead", 1)),
            "{e}"
        );
        assert!(e.message.contains("does not encrypt TCP segments"), "{e}");
    }

    #[test]
    fn listener_mode_still_needs_its_destination() {
        let text = GOOD.replace(
            "destination:\n  mac: 02:00:00:00:00:02\n  ip: 203.0.113.10\n  udp_port: 9100\n  framing: raw            # raw (the payload alone) | taphold (delivery header first)\n",
            "",
        );
        assert_ne!(text, GOOD);
        let (e, _) = refused_text(&text);
        assert_eq!(e.field, "destination", "{e}");
    }

    #[test]
    fn lcores_are_one_entry_each_with_roles() {
        let split = "  - lcore: 1\n    roles: [ingress, tap-rx, egress]\n  - lcore: 1\n    roles: [link-rx, tap-model]\n";
        let text = GOOD.replace(
            "  - lcore: 1\n    roles: [ingress, tap-rx, egress, link-rx, tap-model]\n",
            split,
        );
        let (e, t) = refused_text(&text);
        assert_eq!(
            (e.field.as_str(), e.line),
            ("lcores.1.lcore", line_in(&t, "- lcore: 1", 2)),
            "{e}"
        );
        assert!(e.message.contains("lcores.0"), "{e}");
        let text = GOOD.replace("    roles: [ingress, tap-rx, egress, link-rx, tap-model]\n", "    roles: [ingress, tap-rx, egress, link-rx, tap-model]\n  - lcore: 2\n    roles: []\n");
        let (e, t) = refused_text(&text);
        assert_eq!(
            (e.field.as_str(), e.line),
            ("lcores.1.roles", line_in(&t, "roles: []", 1)),
            "{e}"
        );
    }

    #[test]
    fn retransmits_backpressure_alert_and_the_harness_faults_are_checked() {
        let e = refused(
            &[(
                "heartbeat_interval_us: 1000",
                "heartbeat_interval_us: 1000\n  tap_retransmits: 0",
            )],
            "health.tap_retransmits",
            "tap_retransmits: 0",
        );
        assert!(e.message.contains("1 to 16"), "{e}");
        refused(
            &[(
                "heartbeat_interval_us: 1000",
                "heartbeat_interval_us: 1000\n  tap_retransmits: 17",
            )],
            "health.tap_retransmits",
            "tap_retransmits: 17",
        );
        let c = accepted(&[(
            "heartbeat_interval_us: 1000",
            "heartbeat_interval_us: 1000\n  tap_retransmits: 5",
        )]);
        assert_eq!(c.health.tap_retransmits, 5);
        assert_eq!(
            Config::parse("t.yaml", GOOD)
                .unwrap()
                .health
                .tap_retransmits,
            3
        );
        let e = refused(
            &[(
                "confirm_timeout_us: 500",
                "confirm_timeout_us: 500\n  backpressure_alert_ms: 0",
            )],
            "hold_ring.backpressure_alert_ms",
            "backpressure_alert_ms: 0",
        );
        assert!(e.message.contains("at least 1 ms"), "{e}");
        let e = refused(
            &[(
                "fibre_delay_us: 0",
                "fibre_delay_us: 0\n    tap_cut_ms: [200, 100]",
            )],
            "harness.links.0.tap_cut_ms",
            "tap_cut_ms",
        );
        assert!(e.message.contains("from < to"), "{e}");
        let c = accepted(&[(
            "fibre_delay_us: 0",
            "fibre_delay_us: 0\n    tap_cut_ms: [0, 150]\n    lose_tap_copies: [7, \"100-120\"]",
        )]);
        let hl = &c.harness.unwrap().links[0];
        assert_eq!(hl.tap_cut_ms, Some([0, 150]));
        assert_eq!(hl.lose_tap_copies, [SeqRange(7, 7), SeqRange(100, 120)]);
        let e = Config::parse(
            "t.yaml",
            &GOOD.replace(
                "fibre_delay_us: 0",
                "fibre_delay_us: 0\n    lose_tap_copies: [\"9-3\"]",
            ),
        )
        .unwrap_err();
        assert!(e.message.contains("FROM-TO"), "{e}");
    }

    #[test]
    fn times_are_bounded_so_they_convert_without_overflow() {
        let max = u64::MAX.to_string();
        let over = (u64::MAX / 1000 + 1).to_string();
        let fields = [
            ("confirm_timeout_us: 500", "hold_ring.confirm_timeout_us"),
            ("ack_timeout_us: 20000", "health.ack_timeout_us"),
            (
                "peer_heartbeat_period_us: 10000",
                "health.peer_heartbeat_period_us",
            ),
            ("heartbeat_grace_us: 10000", "health.heartbeat_grace_us"),
            ("tap_timeout_us: 20000", "health.tap_timeout_us"),
            ("down_after_us: 30000", "health.down_after_us"),
            ("up_after_us: 100000", "health.up_after_us"),
            (
                "heartbeat_interval_us: 1000",
                "health.heartbeat_interval_us",
            ),
            ("fibre_delay_us: 0", "harness.links.0.fibre_delay_us"),
            ("stats_interval_ms: 1000", "stats_interval_ms"),
        ];
        for (from, field) in fields {
            let key = from.split(':').next().unwrap();
            for v in [max.as_str(), over.as_str(), "3600000001"] {
                let to = format!("{key}: {v}");
                let e = refused(&[(from, &to)], field, &to);
                assert!(e.message.contains("more than"), "{e}");
            }
        }
        // The upper bound itself is accepted, and converts exactly.
        let c = accepted(&[
            (
                "heartbeat_interval_us: 1000",
                "heartbeat_interval_us: 3600000000",
            ),
            ("confirm_timeout_us: 500", "confirm_timeout_us: 3600000000"),
        ]);
        assert_eq!(c.health.heartbeat_interval_ns(), 3_600_000_000_000);
        assert_eq!(c.hold_ring.confirm_timeout_ns(), 3_600_000_000_000);
        let c = accepted(&[("fibre_delay_us: 0", "fibre_delay_us: 1000000")]);
        assert_eq!(c.harness.unwrap().links[0].ack_delay_ns(), 2_000_000_000);
        for (from, field) in [
            ("stats_interval_ms: 1000", "stats_interval_ms"),
            (
                "heartbeat_interval_us: 1000",
                "health.heartbeat_interval_us",
            ),
            ("tap_timeout_us: 20000", "health.tap_timeout_us"),
            ("confirm_timeout_us: 500", "hold_ring.confirm_timeout_us"),
        ] {
            let to = format!("{}: 0", from.split(':').next().unwrap());
            let e = refused(&[(from, &to)], field, &to);
            assert!(e.message.contains("at least 1"), "{e}");
        }
        let e = refused(
            &[(
                "stats_interval_ms: 1000",
                &format!("stats_interval_ms: 1000\nlatency_monitor:\n  window_ms: {max}"),
            )],
            "latency_monitor.window_ms",
            "window_ms",
        );
        assert!(e.message.contains("more than"), "{e}");
        // Conversions saturate even on a config that skipped validation.
        let h = HealthSection {
            heartbeat_interval_us: u64::MAX,
            ..HealthSection::default()
        };
        assert_eq!(h.heartbeat_interval_ns(), u64::MAX);
    }

    #[test]
    fn not_yaml_at_all_is_an_error_not_a_panic() {
        for junk in ["", ":::", "[1,2", "primary: [", "\u{0}\u{1}"] {
            assert!(Config::parse("t.yaml", junk).is_err(), "{junk:?}");
        }
    }

    const FILE_KEY: &str = "000102030405060708090a0b0c0d0e0f";

    /// A key file in a directory of its own, holding `content`, with `mode`.
    fn key_file(name: &str, content: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("taphold-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// The shipped config with `digest_key` replaced by `with` (on the same line).
    fn key_edit(with: &str) -> String {
        let line = GOOD.lines().find(|l| l.starts_with("digest_key:")).unwrap();
        GOOD.replace(line, with)
    }

    fn key_line() -> usize {
        GOOD.lines()
            .position(|l| l.starts_with("digest_key:"))
            .unwrap()
            + 1
    }

    #[test]
    fn the_key_can_come_from_a_file_of_the_owner_alone() {
        let p = key_file("good", &format!("{FILE_KEY}\n"), 0o600);
        let c = Config::parse(
            "t.yaml",
            &key_edit(&format!("digest_key_file: {}", p.display())),
        )
        .unwrap();
        assert_eq!(
            c.digest_key.0,
            taphold_wire::digest::DigestKey::from_hex(FILE_KEY).unwrap()
        );
        assert!(!taphold_runtime::key::is_demo(&c.digest_key.0));
        // The shipped configs run on the demo key (and so warn at start-up).
        let c = Config::parse("default.yaml", GOOD).unwrap();
        assert!(taphold_runtime::key::is_demo(&c.digest_key.0));
    }

    #[test]
    fn a_key_file_missing_malformed_or_not_private_is_refused_by_field_and_line() {
        let cases = [
            (
                key_file("absent", "", 0o600).with_extension("none"),
                "No such file",
            ),
            (key_file("short", &FILE_KEY[..31], 0o600), "32 hex digits"),
            (
                key_file("junk", "not a key at all, not at all!!!!", 0o600),
                "32 hex digits",
            ),
            (key_file("empty", "", 0o600), "32 hex digits"),
            (key_file("group", FILE_KEY, 0o640), "mode 0640"),
            (key_file("others", FILE_KEY, 0o604), "mode 0604"),
            (key_file("writable", FILE_KEY, 0o602), "mode 0602"),
        ];
        for (p, want) in cases {
            let e = Config::parse(
                "t.yaml",
                &key_edit(&format!("digest_key_file: {}", p.display())),
            )
            .unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.line),
                ("digest_key_file", Some(key_line())),
                "{e}"
            );
            assert!(e.message.contains(want), "{}: {e}", p.display());
            assert!(!e.to_string().contains("0102030405"), "quotes the key: {e}");
        }
    }

    #[test]
    fn the_key_is_given_exactly_once() {
        let p = key_file("once", FILE_KEY, 0o600);
        let both = GOOD.replace(
            "digest_key: ",
            &format!("digest_key_file: {}\ndigest_key: ", p.display()),
        );
        let e = Config::parse("t.yaml", &both).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line),
            ("digest_key_file", Some(key_line())),
            "{e}"
        );
        assert!(e.message.contains("not both"), "{e}");
        let e = Config::parse("t.yaml", &key_edit("# no key")).unwrap_err();
        assert_eq!(e.field, "digest_key", "{e}");
        assert!(e.message.contains("digest_key_file"), "{e}");
    }
}

//! The resolved plan: a validated config turned into what the roles and the
//! control loop use, once, before any lcore starts. Units are converted here
//! (every time in ns), sizes derived here (from the wire crate's constants),
//! addresses parsed here; the roles' constructors take their part of it.

use std::time::Duration;

use taphold_core::health::HealthConfig;
use taphold_core::policy::{PolicyCheck, ReleasePolicy};
use taphold_runtime::idle::IdlePolicy;
use taphold_runtime::yaml::us_to_ns;
use taphold_wire::classify::PrimaryAddr;
use taphold_wire::digest::{DigestKey, KeyRing};
use taphold_wire::emit::Endpoint;
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::payload::PayloadKey;
use taphold_wire::taphold::{self, ContentMode};
use taphold_wire::{delivery, ipv4, udp};

use crate::config::{Config, ContentText, Framing, Gate, RoleName, SecondaryMode};

/// The primary port P and who we are on it.
#[derive(Debug, Clone)]
pub struct PrimaryPlan {
    pub port: String,
    /// What the classifier accepts: our MAC, IPv4, UDP port, largest payload.
    pub addr: PrimaryAddr,
    /// The source of what we send on P: released messages and confirmations.
    pub ours: Endpoint,
    /// Transmit queue of released messages, and of confirmations and ARP
    /// replies (the same queue when P has one).
    pub release_q: u16,
    pub confirm_q: u16,
    pub tx_queues: u16,
    /// Our UDP port for the arbiter's target confirmations; 0: none.
    pub target_confirm_port: u16,
    /// The MTU P needs: the largest message in IPv4/UDP, with the delivery
    /// header under `framing: taphold`.
    pub mtu: u16,
}

/// One backup link.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    /// Its index: its confirmation bit, the link field of its PDUs.
    pub index: usize,
    pub port: String,
    pub tap: String,
    /// Our MAC on it, if the config names one (else the port's).
    pub mac: Option<EthernetAddress>,
    pub peer_mac: EthernetAddress,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub stream: u32,
    /// The backup-link keys.
    pub key: KeyRing,
    /// The key that seals confirmations to sources.
    pub confirm_key: DigestKey,
    /// The keys of the arbiter's target confirmations.
    pub arbiter_keys: KeyRing,
    /// `link_security: aead`: the key that encrypts backup frames' payloads.
    pub aead: Option<PayloadKey>,
    pub content: ContentMode,
    pub gate: Gate,
    pub framing: Framing,
    pub policy: ReleasePolicy,
    /// The policy checked against the links in service.
    pub policy_check: PolicyCheck,
    pub secondary: SecondaryMode,
    pub primary: PrimaryPlan,
    pub destination: Endpoint,
    pub links: Vec<LinkPlan>,
    /// The MTU every backup link and tap port needs: the largest backup
    /// frame's PDU (full content).
    pub link_mtu: u16,
    /// Links configured in service (not standby), a mask.
    pub primary_set: u8,
    pub hold_capacity: usize,
    pub events_ring: usize,
    /// Each egress → ingress re-launch ring and the journal hand-off ring:
    /// a re-send round hands over every held message at most once per link.
    pub handoff_ring: u32,
    pub heartbeat_interval_ns: u64,
    pub confirm_timeout_ns: u64,
    /// How long a held message waits for its confirmation on a link before a
    /// re-launch: the tap timeout, or under `gate: ack` the ack timeout.
    pub relaunch_timeout_ns: u64,
    pub max_retransmits: u8,
    pub health: HealthConfig,
    pub backpressure_alert_ns: u64,
    /// Released but not target-confirmed this long: an alert (with a
    /// target-confirm port only).
    pub unconfirmed_alert_ns: u64,
    pub idle: IdlePolicy,
    pub stats_every: Duration,
    /// Roles per worker lcore, in config order (an lcore listed once).
    pub lcores: Vec<(u32, Vec<RoleName>)>,
}

impl Plan {
    /// The plan of a validated config (validation guarantees every
    /// conversion here fits).
    pub fn of(cfg: &Config) -> Result<Plan, String> {
        let h = &cfg.health;
        let policy_check = cfg
            .release_check()
            .map_err(|e| format!("release.policy: {e}"))?;
        let primary_set = cfg
            .backup_links
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.standby)
            .fold(0u8, |m, (k, _)| m | (1 << k));
        let p = &cfg.primary;
        Ok(Plan {
            stream: cfg.stream_id,
            key: cfg.keys.link,
            confirm_key: cfg.keys.confirm,
            arbiter_keys: cfg.keys.arbiter,
            aead: cfg.keys.payload.clone(),
            content: match cfg.release.content {
                ContentText::Full => ContentMode::Full,
                ContentText::Digest => ContentMode::Digest,
            },
            gate: cfg.release.gate,
            framing: cfg.destination.framing,
            policy: cfg.release.policy.0.policy,
            policy_check,
            secondary: cfg.secondary_mode,
            primary: PrimaryPlan {
                port: p.port.clone(),
                addr: PrimaryAddr {
                    mac: p.mac.0,
                    ip: p.ip.octets(),
                    udp_port: p.udp_port,
                    max_payload: p.max_payload,
                },
                ours: Endpoint {
                    mac: p.mac.0,
                    ip: p.ip.octets(),
                    port: p.udp_port,
                },
                release_q: 0,
                confirm_q: p.tx_queues - 1,
                tx_queues: p.tx_queues,
                target_confirm_port: cfg.destination.target_confirm_port.unwrap_or(0),
                mtu: mtu_for(
                    ipv4::HEADER_LEN
                        + udp::HEADER_LEN
                        + usize::from(p.max_payload)
                        + match cfg.destination.framing {
                            Framing::Raw => 0,
                            Framing::Taphold => delivery::HEADER_LEN,
                        },
                ),
            },
            destination: Endpoint {
                mac: cfg.destination.mac.0,
                ip: cfg.destination.ip.octets(),
                port: cfg.destination.udp_port,
            },
            links: cfg
                .backup_links
                .iter()
                .enumerate()
                .map(|(index, l)| LinkPlan {
                    index,
                    port: l.port.clone(),
                    tap: l.tap.clone(),
                    mac: l.mac.map(|m| m.0),
                    peer_mac: l.peer_mac.0,
                })
                .collect(),
            link_mtu: mtu_for(
                taphold::backup_frame_len(usize::from(p.max_payload), ContentMode::Full)
                    + if cfg.keys.payload.is_some() {
                        taphold_wire::payload::TAG_LEN
                    } else {
                        0
                    },
            ),
            primary_set,
            hold_capacity: cfg.hold_ring.capacity as usize,
            events_ring: cfg.events.ring as usize,
            handoff_ring: (2 * cfg.hold_ring.capacity).max(64),
            heartbeat_interval_ns: h.heartbeat_interval_ns(),
            confirm_timeout_ns: cfg.hold_ring.confirm_timeout_ns(),
            relaunch_timeout_ns: us_to_ns(match cfg.release.gate {
                Gate::Tap => h.tap_timeout_us,
                Gate::Ack => h.ack_timeout_us,
            }),
            max_retransmits: u8::try_from(h.tap_retransmits).unwrap_or(u8::MAX),
            health: HealthConfig {
                ack_timeout_ns: us_to_ns(h.ack_timeout_us),
                peer_heartbeat_period_ns: us_to_ns(h.peer_heartbeat_period_us),
                heartbeat_grace_ns: us_to_ns(h.heartbeat_grace_us),
                tap_timeout_ns: us_to_ns(h.tap_timeout_us),
                down_after_ns: us_to_ns(h.down_after_us),
                up_after_ns: us_to_ns(h.up_after_us),
                require_peer: h.require_peer,
            },
            backpressure_alert_ns: cfg
                .hold_ring
                .backpressure_alert_ms
                .saturating_mul(1_000_000),
            unconfirmed_alert_ns: cfg
                .destination
                .unconfirmed_alert_ms
                .saturating_mul(1_000_000),
            idle: cfg.idle,
            stats_every: Duration::from_millis(cfg.stats_interval_ms.max(1)),
            lcores: cfg
                .lcores
                .iter()
                .map(|l| (l.lcore, l.roles.clone()))
                .collect(),
        })
    }

    /// The roles mapped on `lcore`.
    pub fn roles_on(&self, lcore: u32) -> &[RoleName] {
        self.lcores
            .iter()
            .find(|(l, _)| *l == lcore)
            .map_or(&[], |(_, r)| &r[..])
    }
}

/// An MTU for `bytes` of IP packet (or Ethernet payload), saturating: the
/// config bounds max_payload, so the saturation is never reached.
fn mtu_for(bytes: usize) -> u16 {
    u16::try_from(bytes).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_resolves_with_every_unit_converted() {
        let cfg =
            Config::parse("default.yaml", include_str!("../../../config/default.yaml")).unwrap();
        let p = Plan::of(&cfg).unwrap();
        assert_eq!(p.health.tap_timeout_ns, cfg.health.tap_timeout_us * 1000);
        assert_eq!(p.relaunch_timeout_ns, p.health.tap_timeout_ns, "gate: tap");
        assert_eq!(p.heartbeat_interval_ns, 1_000_000);
        assert_eq!(p.primary_set, 0b1);
        assert_eq!(p.links[0].peer_mac, cfg.backup_links[0].peer_mac.0);
        assert_eq!((p.primary.release_q, p.primary.confirm_q), (0, 1));
        assert_eq!(p.handoff_ring, 2 * 4096);
        // MTUs from max_payload (8900): IPv4 + UDP on P; a full backup PDU on
        // the links; the delivery header's 40 bytes more on P when framed.
        assert_eq!(p.primary.mtu, 20 + 8 + 8900);
        assert_eq!(p.link_mtu, 64 + 8900);
        let mut framed = cfg.clone();
        framed.destination.framing = Framing::Taphold;
        assert_eq!(Plan::of(&framed).unwrap().primary.mtu, 20 + 8 + 40 + 8900);
        assert_eq!(p.roles_on(1).len(), 5);
        assert!(p.roles_on(7).is_empty());
    }
}

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

use crate::config::{
    Config, ContentText, Framing, Gate, GatewayContent, OtherTraffic, PrimaryMode, RoleName,
    RoutePort, SecondaryMode,
};
use taphold_wire::gateway::{ProtectRule, Route, PORT_P, PORT_Q};

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

/// Gateway mode: what ingress routes by.
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    /// Our addresses on P besides primary.ip.
    pub addresses: Vec<[u8; 4]>,
    /// The second port Q, if configured (else one-armed on P).
    pub port2: Option<Port2Plan>,
    pub routes: Vec<Route>,
    pub protect: Vec<ProtectRule>,
    /// Per protect rule: where its segments are confirmed, if anywhere.
    pub confirm_to: Vec<Option<Endpoint>>,
    /// Static ARP entries.
    pub neighbors: Vec<([u8; 4], EthernetAddress)>,
    pub forward_other: bool,
    /// Backup frames' content: Tcp or FixCompact.
    pub content: ContentMode,
    pub max_flows: usize,
    pub max_neighbors: usize,
    pub arp_retry_ns: u64,
    pub flow_ack_interval_ns: u64,
}

/// The second gateway port Q: its device, our MAC and addresses on it (the
/// first is what we ask ARP from). Its MTU is P's.
#[derive(Debug, Clone)]
pub struct Port2Plan {
    pub port: String,
    pub mac: EthernetAddress,
    pub addresses: Vec<[u8; 4]>,
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
    /// Gateway mode's routes and rules; None in listener mode.
    pub gateway: Option<GatewayPlan>,
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
            framing: cfg.framing(),
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
                target_confirm_port: cfg
                    .destination
                    .as_ref()
                    .and_then(|d| d.target_confirm_port)
                    .unwrap_or(0),
                mtu: mtu_for(
                    ipv4::HEADER_LEN
                        + udp::HEADER_LEN
                        + usize::from(p.max_payload)
                        + match cfg.framing() {
                            Framing::Raw => 0,
                            Framing::Taphold => delivery::HEADER_LEN,
                        },
                ),
            },
            gateway: (p.mode == PrimaryMode::Gateway)
                .then_some(cfg.gateway.as_ref())
                .flatten()
                .map(|g| GatewayPlan {
                    addresses: g.addresses.iter().map(|a| a.octets()).collect(),
                    port2: g.port2.as_ref().map(|q| Port2Plan {
                        port: q.port.clone(),
                        mac: q.mac.0,
                        addresses: q.addresses.iter().map(|a| a.octets()).collect(),
                    }),
                    routes: g
                        .routes
                        .iter()
                        .map(|r| Route {
                            prefix: r.prefix.0,
                            via: r.via.map(|v| v.octets()),
                            port: match r.port {
                                RoutePort::P => PORT_P,
                                RoutePort::Q => PORT_Q,
                            },
                        })
                        .collect(),
                    protect: g
                        .protect
                        .iter()
                        .map(|r| ProtectRule {
                            dst: r.dst.0,
                            ports: (r.ports.0, r.ports.1),
                        })
                        .collect(),
                    confirm_to: g
                        .protect
                        .iter()
                        .map(|r| {
                            r.confirm_to.as_ref().map(|c| Endpoint {
                                mac: c.mac.0,
                                ip: c.ip.octets(),
                                port: c.port,
                            })
                        })
                        .collect(),
                    neighbors: g
                        .neighbors
                        .iter()
                        .map(|n| (n.ip.octets(), n.mac.0))
                        .collect(),
                    forward_other: g.other == OtherTraffic::Forward,
                    content: match g.content {
                        GatewayContent::Tcp => ContentMode::Tcp,
                        GatewayContent::FixCompact => ContentMode::FixCompact,
                    },
                    max_flows: g.max_flows as usize,
                    max_neighbors: g.max_neighbors as usize,
                    arp_retry_ns: g.arp_retry_ms.saturating_mul(1_000_000),
                    flow_ack_interval_ns: us_to_ns(g.flow_ack_interval_us),
                }),
            // Gateway mode has no one destination: it routes (`gateway`).
            destination: cfg.destination.as_ref().map_or(
                Endpoint {
                    mac: EthernetAddress([0; 6]),
                    ip: [0; 4],
                    port: 0,
                },
                |d| Endpoint {
                    mac: d.mac.0,
                    ip: d.ip.octets(),
                    port: d.udp_port,
                },
            ),
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
                taphold::backup_frame_len(
                    usize::from(p.max_payload),
                    match p.mode {
                        PrimaryMode::Listener => ContentMode::Full,
                        // The flow prefix is larger; compact FIX falls back to it.
                        PrimaryMode::Gateway => ContentMode::Tcp,
                    },
                ) + if cfg.keys.payload.is_some() {
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
            unconfirmed_alert_ns: cfg.unconfirmed_alert_ms().saturating_mul(1_000_000),
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
        framed.destination.as_mut().unwrap().framing = Framing::Taphold;
        assert_eq!(Plan::of(&framed).unwrap().primary.mtu, 20 + 8 + 40 + 8900);
        assert_eq!(p.roles_on(1).len(), 5);
        assert!(p.roles_on(7).is_empty());
    }

    #[test]
    fn the_gateway_config_resolves() {
        let cfg =
            Config::parse("gateway.yaml", include_str!("../../../config/gateway.yaml")).unwrap();
        let p = Plan::of(&cfg).unwrap();
        let g = p.gateway.as_ref().unwrap();
        assert_eq!(g.addresses, vec![[10, 71, 2, 1]]);
        assert_eq!(g.routes.len(), 2);
        assert_eq!(g.routes[0].via, None);
        assert_eq!(g.routes[0].port, PORT_P);
        assert!(g.port2.is_none());
        assert_eq!(g.protect[0].ports, (9878, 9879));
        assert_eq!(g.neighbors.len(), 2);
        assert_eq!(g.confirm_to, vec![None]);
        assert!(g.forward_other);
        assert_eq!(g.content, ContentMode::Tcp);
        assert_eq!(g.arp_retry_ns, 100_000_000);
        // The links carry the larger flow prefix of mode 2.
        assert_eq!(usize::from(p.link_mtu), 48 + 20 + 1400 + 8);
        assert!(Plan::of(
            &Config::parse("default.yaml", include_str!("../../../config/default.yaml")).unwrap()
        )
        .unwrap()
        .gateway
        .is_none());
    }

    #[test]
    fn the_two_port_gateway_resolves() {
        let text = include_str!("../../../config/gateway.yaml")
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
        let c = Config::parse("g2.yaml", &text).unwrap();
        let p = Plan::of(&c).unwrap();
        let g = p.gateway.as_ref().unwrap();
        let q2 = g.port2.as_ref().unwrap();
        assert_eq!(q2.addresses, vec![[10, 71, 2, 1]]);
        assert_eq!(q2.mac, EthernetAddress([2, 0, 0, 0, 0, 2]));
        assert!(g.addresses.is_empty());
        assert_eq!(
            g.routes.iter().map(|r| r.port).collect::<Vec<_>>(),
            vec![taphold_wire::gateway::PORT_P, taphold_wire::gateway::PORT_Q]
        );
    }
}

//! Gateway mode's two tables, both owned by ingress alone (one writer, no sharing):
//!
//! - [`Neighbors`]: the ARP cache. Which MAC each next hop is at, from static entries
//!   and from ARP replies; which next hops are still to be asked for, and when to ask
//!   again.
//! - [`Flows`]: the protected TCP flows seen. Per flow, the last hold-ring seq holding
//!   one of its segments (a pure ACK or FIN of the flow must not overtake held data of
//!   the flow) and the highest acknowledgement the exchange sent back (the target's
//!   confirmation, passed to the backup nodes in flow acks).
//!
//! Both are fixed arrays allocated once; a full table refuses, and the caller counts.
//! Lookups are linear: a gateway routes for a handful of next hops and a few order-entry
//! sessions, where a scan of one or two cache lines beats hashing.

/// What happened to an ARP reply offered to [`Neighbors::learn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A next hop we did not know yet.
    New,
    /// A known next hop at a new MAC.
    Moved,
    /// Nothing new.
    Same,
    /// A static entry: never overridden by ARP.
    Static,
    /// No room for it.
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Neighbor {
    ip: [u8; 4],
    mac: Option<[u8; 6]>,
    is_static: bool,
    /// When we last asked for it (0: never).
    asked_ns: u64,
    /// Periodic re-asks since traffic last needed it.
    retries: u8,
}

/// Re-asks of an unresolved next hop after traffic last needed it (as Linux's
/// mcast_solicit): a host that is gone is not asked for forever.
pub const MAX_RETRIES: u8 = 3;

/// The ARP cache.
#[derive(Debug)]
pub struct Neighbors {
    entries: Vec<Neighbor>,
    capacity: usize,
    retry_ns: u64,
}

impl Neighbors {
    /// Room for `capacity` next hops; an unresolved one is asked for again at most
    /// every `retry_ns`.
    pub fn new(capacity: usize, retry_ns: u64) -> Neighbors {
        Neighbors {
            entries: Vec::with_capacity(capacity),
            capacity,
            retry_ns,
        }
    }

    /// Adds a static entry (from the config); false if the table is full.
    pub fn add_static(&mut self, ip: [u8; 4], mac: [u8; 6]) -> bool {
        if let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip) {
            e.mac = Some(mac);
            e.is_static = true;
            return true;
        }
        self.push(Neighbor {
            ip,
            mac: Some(mac),
            is_static: true,
            asked_ns: 0,
            retries: 0,
        })
    }

    fn push(&mut self, n: Neighbor) -> bool {
        if self.entries.len() == self.capacity {
            return false;
        }
        self.entries.push(n); // within the capacity reserved at construction
        true
    }

    /// The MAC of `ip`, if resolved.
    #[inline]
    pub fn lookup(&self, ip: [u8; 4]) -> Option<[u8; 6]> {
        self.entries.iter().find(|e| e.ip == ip).and_then(|e| e.mac)
    }

    /// Takes an ARP reply: `ip` is at `mac`.
    pub fn learn(&mut self, ip: [u8; 4], mac: [u8; 6]) -> Learned {
        let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip) else {
            let added = self.push(Neighbor {
                ip,
                mac: Some(mac),
                is_static: false,
                asked_ns: 0,
                retries: 0,
            });
            return if added { Learned::New } else { Learned::Full };
        };
        if e.is_static {
            Learned::Static
        } else if e.mac == Some(mac) {
            Learned::Same
        } else if e.mac.replace(mac).is_some() {
            Learned::Moved
        } else {
            Learned::New
        }
    }

    /// Whether to send an ARP request for `ip` now: it is unresolved and was not asked
    /// for within the retry interval. Remembers the ask. False when the table is full
    /// (the caller counts the unresolvable next hop).
    pub fn should_ask(&mut self, ip: [u8; 4], now_ns: u64) -> bool {
        let retry = self.retry_ns;
        let Some(e) = self.entries.iter_mut().find(|e| e.ip == ip) else {
            return self.push(Neighbor {
                ip,
                mac: None,
                is_static: false,
                asked_ns: now_ns.max(1),
                retries: 0,
            });
        };
        // Traffic wants it: the periodic re-asks start over.
        e.retries = 0;
        if e.mac.is_some() || (e.asked_ns != 0 && now_ns.saturating_sub(e.asked_ns) < retry) {
            return false;
        }
        e.asked_ns = now_ns.max(1);
        true
    }

    /// Next hops still unresolved whose retry interval has passed, remembered as
    /// asked now: the periodic re-ask, at most [`MAX_RETRIES`] times after
    /// traffic last needed the next hop.
    pub fn due(&mut self, now_ns: u64, mut ask: impl FnMut([u8; 4])) {
        for e in self.entries.iter_mut() {
            if e.mac.is_none()
                && e.retries < MAX_RETRIES
                && now_ns.saturating_sub(e.asked_ns) >= self.retry_ns
            {
                e.asked_ns = now_ns.max(1);
                e.retries += 1;
                ask(e.ip);
            }
        }
    }

    /// (ip, mac if resolved, static) of every entry, for the operator's view.
    pub fn iter(&self) -> impl Iterator<Item = ([u8; 4], Option<[u8; 6]>, bool)> + '_ {
        self.entries.iter().map(|e| (e.ip, e.mac, e.is_static))
    }
}

/// One protected flow's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow<K> {
    /// The flow, in the protected direction.
    pub key: K,
    /// Seq of the last hold-ring message holding one of its segments (0: none yet).
    pub last_held: u64,
    /// The exchange's highest acknowledgement number, if it sent one.
    pub acked: Option<u32>,
    /// The `acked` last passed to the backup nodes.
    pub acked_sent: Option<u32>,
}

/// The protected flows.
#[derive(Debug)]
pub struct Flows<K> {
    flows: Vec<Flow<K>>,
    capacity: usize,
}

impl<K: Copy + Eq> Flows<K> {
    /// Room for `capacity` flows.
    pub fn new(capacity: usize) -> Flows<K> {
        Flows {
            flows: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// The flow's state, added if new; None if the table is full.
    pub fn entry(&mut self, key: K) -> Option<&mut Flow<K>> {
        if let Some(i) = self.flows.iter().position(|f| f.key == key) {
            return Some(&mut self.flows[i]);
        }
        if self.flows.len() == self.capacity {
            return None;
        }
        // Within the capacity reserved at construction: no allocation.
        self.flows.push(Flow {
            key,
            last_held: 0,
            acked: None,
            acked_sent: None,
        });
        self.flows.last_mut()
    }

    /// The flow's state, if known.
    pub fn get(&self, key: &K) -> Option<&Flow<K>> {
        self.flows.iter().find(|f| f.key == *key)
    }

    /// Takes the exchange's acknowledgement `ack` of a known flow: kept if it is
    /// beyond the one held (TCP serial arithmetic). Returns whether it advanced.
    pub fn acknowledge(&mut self, key: &K, ack: u32) -> bool {
        let Some(f) = self.flows.iter_mut().find(|f| f.key == *key) else {
            return false;
        };
        match f.acked {
            Some(a) if (ack.wrapping_sub(a) as i32) <= 0 => false,
            _ => {
                f.acked = Some(ack);
                true
            }
        }
    }

    /// Every flow whose acknowledgement advanced since it was last passed on: `send`
    /// returns whether it passed it on (false: try again later).
    pub fn unsent_acks(&mut self, mut send: impl FnMut(&K, u32) -> bool) {
        for f in self.flows.iter_mut() {
            if let Some(a) = f.acked {
                if f.acked_sent != Some(a) && send(&f.key, a) {
                    f.acked_sent = Some(a);
                }
            }
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow was seen.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Every flow.
    pub fn iter(&self) -> impl Iterator<Item = &Flow<K>> + '_ {
        self.flows.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];
    const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn neighbors_learn_move_and_refuse_when_full() {
        let mut n = Neighbors::new(2, 1000);
        assert_eq!(n.lookup(A), None);
        assert_eq!(n.learn(A, M1), Learned::New);
        assert_eq!(n.learn(A, M1), Learned::Same);
        assert_eq!(n.learn(A, M2), Learned::Moved);
        assert_eq!(n.lookup(A), Some(M2));
        assert!(n.add_static(B, M1));
        assert_eq!(n.learn(B, M2), Learned::Static);
        assert_eq!(n.lookup(B), Some(M1));
        assert_eq!(n.learn([10, 0, 0, 3], M1), Learned::Full);
        assert!(!n.add_static([10, 0, 0, 3], M1));
    }

    #[test]
    fn asks_once_per_retry_interval_and_never_when_resolved() {
        let mut n = Neighbors::new(4, 1000);
        assert!(n.should_ask(A, 10));
        assert!(!n.should_ask(A, 500));
        assert!(n.should_ask(A, 1010));
        let mut asked = Vec::new();
        n.due(1500, |ip| asked.push(ip));
        assert!(asked.is_empty());
        n.due(2010, |ip| asked.push(ip));
        assert_eq!(asked, vec![A]);
        // Three re-asks, then silence until traffic wants it again.
        asked.clear();
        for t in [3010, 4010, 5010, 6010] {
            n.due(t, |ip| asked.push(ip));
        }
        assert_eq!(asked, vec![A, A], "two more: three re-asks in all");
        assert!(n.should_ask(A, 7000));
        asked.clear();
        n.due(8000, |ip| asked.push(ip));
        assert_eq!(asked, vec![A]);
        assert_eq!(n.learn(A, M1), Learned::New);
        assert!(!n.should_ask(A, 99_999));
        asked.clear();
        n.due(99_999, |ip| asked.push(ip));
        assert!(asked.is_empty());
        // Asked at time 0 is still an ask.
        assert!(n.should_ask(B, 0));
        assert!(!n.should_ask(B, 1));
    }

    #[test]
    fn flows_track_last_held_and_acks_across_the_wrap() {
        let mut f: Flows<u32> = Flows::new(2);
        f.entry(7).unwrap().last_held = 3;
        assert_eq!(f.get(&7).unwrap().last_held, 3);
        assert!(f.entry(8).is_some());
        assert!(f.entry(9).is_none(), "full");
        assert!(!f.acknowledge(&9, 5), "unknown flow");
        assert!(f.acknowledge(&7, 0xFFFF_FFF0));
        assert!(!f.acknowledge(&7, 0xFFFF_FF00), "older");
        assert!(!f.acknowledge(&7, 0xFFFF_FFF0), "same");
        assert!(f.acknowledge(&7, 5), "after the wrap");
        let mut sent = Vec::new();
        f.unsent_acks(|k, a| {
            sent.push((*k, a));
            true
        });
        assert_eq!(sent, vec![(7, 5)]);
        sent.clear();
        f.unsent_acks(|k, a| {
            sent.push((*k, a));
            false
        });
        assert!(sent.is_empty(), "nothing new");
        assert!(f.acknowledge(&8, 100));
        f.unsent_acks(|k, a| {
            sent.push((*k, a));
            false
        });
        f.unsent_acks(|k, a| {
            sent.push((*k, a));
            true
        });
        assert_eq!(
            sent,
            vec![(8, 100), (8, 100)],
            "refused once, so offered again"
        );
    }
}

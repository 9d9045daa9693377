//! Gateway mode on the backup node: TCP flows and their flow acks.
//!
//! The appliance sends a flow ack (type 7) per protected flow whose TCP acknowledgement
//! from the exchange advanced. The node keeps the highest `acked` per flow and run
//! (stream, epoch) in the run's directory, in the file `flow-acks`, so that `recover`
//! after a kill -9 of the appliance (or of the node) can tell which bytes the exchange
//! acknowledged.
//!
//! `flow-acks` is append-only: one 20-byte record per advance — src_ip (4), src_port
//! (2), dst_ip (4), dst_port (2), acked (4), CRC-32 of those 16 bytes (4), big-endian.
//! The last record of a flow is its highest (a record is written only when `acked`
//! advances, in serial arithmetic). Records are written as flow acks arrive and
//! fdatasync'ed after the burst, with the journal's sync ([`FlowAckLog::sync`]); a torn
//! or damaged tail (a crash mid-write) ends the file when it is read, and is cut off when
//! the node reopens the run, before it appends.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::str::FromStr;

use taphold_runtime::alloc_count;
use taphold_wire::taphold::{FlowAckRepr, TcpSegmentRepr};

/// The side file of a run directory.
pub const FLOW_ACKS_FILE: &str = "flow-acks";
const RECORD_LEN: usize = 20;

/// A TCP flow, engine → exchange: `SRCIP:SRCPORT-DSTIP:DSTPORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

impl FlowKey {
    pub fn new(src_ip: [u8; 4], src_port: u16, dst_ip: [u8; 4], dst_port: u16) -> FlowKey {
        FlowKey {
            src: SocketAddrV4::new(Ipv4Addr::from(src_ip), src_port),
            dst: SocketAddrV4::new(Ipv4Addr::from(dst_ip), dst_port),
        }
    }

    pub fn of_ack(a: &FlowAckRepr) -> FlowKey {
        FlowKey::new(a.src_ip, a.src_port, a.dst_ip, a.dst_port)
    }

    pub fn of_segment(s: &TcpSegmentRepr) -> FlowKey {
        FlowKey::new(s.src_ip, s.src_port, s.dst_ip, s.dst_port)
    }

    fn bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.src.ip().octets());
        b[4..6].copy_from_slice(&self.src.port().to_be_bytes());
        b[6..10].copy_from_slice(&self.dst.ip().octets());
        b[10..12].copy_from_slice(&self.dst.port().to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> FlowKey {
        FlowKey::new(
            [b[0], b[1], b[2], b[3]],
            u16::from_be_bytes([b[4], b[5]]),
            [b[6], b[7], b[8], b[9]],
            u16::from_be_bytes([b[10], b[11]]),
        )
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.src, self.dst)
    }
}

impl FromStr for FlowKey {
    type Err = String;

    fn from_str(s: &str) -> Result<FlowKey, String> {
        let bad = || {
            format!("`{s}` is not a flow SRCIP:SRCPORT-DSTIP:DSTPORT (e.g. 10.1.0.2:40000-10.2.0.2:9878)")
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        Ok(FlowKey {
            src: a.parse().map_err(|_| bad())?,
            dst: b.parse().map_err(|_| bad())?,
        })
    }
}

/// `a` is after `b` in serial arithmetic (RFC 1982 on u32).
pub fn seq_gt(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// Sequence numbers this far apart belong to two connections of the same flow (a
/// reconnect from the same port, a new ISN): no window reaches that far.
pub const NEW_CONNECTION_DISTANCE: u32 = 1 << 28;

/// Whether a flow ack of `acked` supersedes the kept `old`: later in serial arithmetic,
/// or in another connection's sequence space (then it is the new connection's, which
/// may lie "behind" the old one).
pub fn supersedes(acked: u32, old: u32) -> bool {
    seq_gt(acked, old) || (acked.wrapping_sub(old) as i32).unsigned_abs() > NEW_CONNECTION_DISTANCE
}

fn encode(key: &FlowKey, acked: u32) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[..12].copy_from_slice(&key.bytes());
    r[12..16].copy_from_slice(&acked.to_be_bytes());
    let crc = taphold_journal::record::crc(&r[..16], &[]);
    r[16..].copy_from_slice(&crc.to_be_bytes());
    r
}

/// What a `flow-acks` file holds: the latest acked per flow (in file order of first
/// appearance), every record in order, and the byte length of its valid prefix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlowAcks {
    pub flows: Vec<(FlowKey, u32)>,
    /// Every valid record, in file order: a flow reconnected within a run has the acks
    /// of each connection here, only the last one's in `flows`.
    pub records: Vec<(FlowKey, u32)>,
    pub valid_len: u64,
    /// Bytes after the valid prefix (a torn or damaged tail).
    pub tail_bytes: u64,
}

impl FlowAcks {
    #[cfg(test)]
    pub fn get(&self, key: &FlowKey) -> Option<u32> {
        self.flows.iter().find(|(k, _)| k == key).map(|&(_, a)| a)
    }

    fn note(&mut self, key: FlowKey, acked: u32) -> bool {
        match self.flows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, a)) if supersedes(acked, *a) => {
                *a = acked;
                true
            }
            Some(_) => false,
            None => {
                // A new flow: once per flow, not per frame.
                alloc_count::set_hot(false);
                self.flows.push((key, acked));
                alloc_count::set_hot(true);
                true
            }
        }
    }
}

/// Reads the `flow-acks` file of run directory `dir` (none: empty).
pub fn read_flow_acks(dir: &Path) -> io::Result<FlowAcks> {
    let mut bytes = Vec::new();
    match File::open(dir.join(FLOW_ACKS_FILE)) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FlowAcks::default()),
        Err(e) => return Err(e),
    }
    let mut out = FlowAcks::default();
    for r in bytes.chunks(RECORD_LEN) {
        let ok = r.len() == RECORD_LEN
            && taphold_journal::record::crc(&r[..16], &[]).to_be_bytes() == r[16..20];
        if !ok {
            break;
        }
        let key = FlowKey::from_bytes(&r[..12]);
        let acked = u32::from_be_bytes([r[12], r[13], r[14], r[15]]);
        // Records are only written when they supersede, so the last one is the latest;
        // the check keeps a hand-edited file from going backwards.
        match out.flows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, a)) => {
                if supersedes(acked, *a) {
                    *a = acked
                }
            }
            None => out.flows.push((key, acked)),
        }
        out.records.push((key, acked));
        out.valid_len += RECORD_LEN as u64;
    }
    out.tail_bytes = bytes.len() as u64 - out.valid_len;
    Ok(out)
}

/// The flow acks of one run, as the node keeps them: in memory and appended to the run's
/// `flow-acks`.
#[derive(Debug)]
pub struct FlowAckLog {
    file: File,
    acks: FlowAcks,
    dirty: bool,
}

impl FlowAckLog {
    /// Opens (creating) the file of run directory `dir`, reading what it holds and
    /// cutting a torn or damaged tail (logged) so that appends follow valid records.
    pub fn open(dir: &Path) -> io::Result<FlowAckLog> {
        let path = dir.join(FLOW_ACKS_FILE);
        let acks = read_flow_acks(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if acks.tail_bytes > 0 {
            log::warn!(
                "{}: cut {} bytes of a torn or damaged tail after {} valid flow-ack records",
                path.display(),
                acks.tail_bytes,
                acks.valid_len / RECORD_LEN as u64
            );
            file.set_len(acks.valid_len)?;
            file.sync_all()?;
        }
        Ok(FlowAckLog {
            file,
            acks,
            dirty: false,
        })
    }

    /// A flow ack: whether it advanced the flow's highest (then it is written; durable
    /// after the next [`FlowAckLog::sync`]).
    pub fn note(&mut self, key: FlowKey, acked: u32) -> io::Result<bool> {
        if !self.acks.note(key, acked) {
            return Ok(false);
        }
        self.file.write_all(&encode(&key, acked))?;
        self.dirty = true;
        Ok(true)
    }

    /// fdatasync if anything was written since the last.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    pub fn acks(&self) -> &FlowAcks {
        &self.acks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        "10.1.0.2:40000-10.2.0.2:9878"
            .parse::<FlowKey>()
            .map(|k| FlowKey {
                src: SocketAddrV4::new(*k.src.ip(), port),
                ..k
            })
            .unwrap()
    }

    #[test]
    fn flow_names_round_trip_and_bad_ones_are_refused() {
        let k: FlowKey = "10.1.0.2:40000-10.2.0.2:9878".parse().unwrap();
        assert_eq!(k.to_string(), "10.1.0.2:40000-10.2.0.2:9878");
        assert_eq!(k, FlowKey::new([10, 1, 0, 2], 40000, [10, 2, 0, 2], 9878));
        for bad in [
            "",
            "10.1.0.2:40000",
            "10.1.0.2-10.2.0.2",
            "a:1-b:2",
            "10.1.0.2:70000-10.2.0.2:1",
        ] {
            assert!(bad.parse::<FlowKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serial_arithmetic() {
        assert!(seq_gt(1, 0));
        assert!(!seq_gt(0, 0));
        assert!(seq_gt(3, u32::MAX - 2), "wrapped");
        assert!(!seq_gt(u32::MAX - 2, 3));
        // Another connection's sequence space supersedes, ahead or behind.
        assert!(supersedes(1000, 1000 + (1 << 29)));
        assert!(
            !supersedes(1000, 1000 + (1 << 20)),
            "an old ack of the same connection"
        );
        assert!(supersedes(1000 + (1 << 29), 1000));
    }

    #[test]
    fn the_highest_survives_a_reopen_and_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let mut log = FlowAckLog::open(d.path()).unwrap();
        assert!(log.note(key(1), 100).unwrap());
        assert!(log.note(key(1), 200).unwrap());
        assert!(!log.note(key(1), 150).unwrap(), "backwards");
        assert!(!log.note(key(1), 200).unwrap(), "the same");
        assert!(log.note(key(2), u32::MAX - 5).unwrap());
        assert!(log.note(key(2), 10).unwrap(), "past the wrap");
        log.sync().unwrap();
        drop(log);
        let r = read_flow_acks(d.path()).unwrap();
        assert_eq!(r.flows, vec![(key(1), 200), (key(2), 10)]);
        assert_eq!(
            r.records,
            vec![
                (key(1), 100),
                (key(1), 200),
                (key(2), u32::MAX - 5),
                (key(2), 10)
            ]
        );
        assert_eq!(r.valid_len, 4 * RECORD_LEN as u64);
        // A torn record at the end: ignored when read, cut when reopened, and appends
        // after it are read back.
        let p = d.path().join(FLOW_ACKS_FILE);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&encode(&key(1), 300)[..7]).unwrap();
        drop(f);
        let r = read_flow_acks(d.path()).unwrap();
        assert_eq!((r.get(&key(1)), r.tail_bytes), (Some(200), 7));
        let mut log = FlowAckLog::open(d.path()).unwrap();
        assert_eq!(log.acks().get(&key(2)), Some(10));
        assert!(log.note(key(1), 300).unwrap());
        log.sync().unwrap();
        let r = read_flow_acks(d.path()).unwrap();
        assert_eq!((r.get(&key(1)), r.tail_bytes), (Some(300), 0));
        // A flipped byte: the file ends before that record.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[RECORD_LEN + 13] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let r = read_flow_acks(d.path()).unwrap();
        assert_eq!(r.flows, vec![(key(1), 100)]);
        // No file: nothing.
        let e = tempfile::tempdir().unwrap();
        assert_eq!(read_flow_acks(e.path()).unwrap(), FlowAcks::default());
    }
}

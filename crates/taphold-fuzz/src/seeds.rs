//! The seed corpus, derived at run time from what the repository ships: the frames of
//! `test-pcaps/*.pcap`, the messages inside them (the UDP payloads the classifier
//! accepts), taphold PDUs and delivery headers built from those messages by the
//! product's own emitters, a journal run written by the product's own journal, and the
//! shipped config files. Regenerating the captures regenerates the seeds.

use std::fs;
use std::path::{Path, PathBuf};

use taphold_journal::{FsyncPolicy, Journal, JournalConfig, RunId};
use taphold_wire::classify::{classify, Classified, PrimaryAddr};
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::taphold::{AckRepr, ConfirmRepr, HeartbeatRepr, ResendRepr, TargetConfirmRepr};
use taphold_wire::{BackupRepr, Content, ContentMode, DeliveryRepr, DigestKey, Flags};

/// The key every PDU seed is sealed with, and every PDU target verifies with. Not a
/// deployment's key: the targets re-seal what they mutate anyway (see `targets::pdu`).
pub const KEY: DigestKey = DigestKey(*b"taphold-fuzz-key");

/// The appliance's primary port in the shipped default config (test-pcaps/README.md):
/// the captures' messages are addressed to it.
pub const PRIMARY: PrimaryAddr = PrimaryAddr {
    mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
    ip: [198, 51, 100, 1],
    udp_port: 9000,
    max_payload: 1472,
};

/// The run the journal seeds are written for (`targets::journal_run` opens it).
pub const RUN: RunId = RunId {
    stream: 7,
    epoch: 9,
};

/// Most seeds a target gets from one kind of material: AFL's start-up calibrates each,
/// and a few hundred near-identical order frames teach it nothing the first dozen do not.
const MAX_PER_KIND: usize = 48;

/// What the seeds are cut from.
pub struct Material {
    /// Every distinct frame of every capture, junk first.
    pub frames: Vec<Vec<u8>>,
    /// The frames of test-pcaps/gateway.pcap (gateway mode: TCP, ARP, junk).
    pub gateway_frames: Vec<Vec<u8>>,
    /// The messages the classifier accepts from them: (payload, source IP, source port).
    pub messages: Vec<(Vec<u8>, [u8; 4], u16)>,
    /// Shipped configs of the appliance, the backup node and the arbiter: (path, text).
    pub appliance_configs: Vec<(PathBuf, String)>,
    pub backup_configs: Vec<(PathBuf, String)>,
    pub arbiter_configs: Vec<(PathBuf, String)>,
}

impl Material {
    /// Reads the captures and configs under the repository root.
    pub fn load() -> Material {
        Material::load_from(&crate::repo_root())
    }

    pub fn load_from(root: &Path) -> Material {
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for name in ["junk.pcap", "mixed.pcap", "orders.pcap"] {
            let path = root.join("test-pcaps").join(name);
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for f in pcap_frames(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                if !frames.contains(&f) {
                    frames.push(f);
                }
            }
        }
        let path = root.join("test-pcaps/gateway.pcap");
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let gateway_frames =
            pcap_frames(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut messages = Vec::new();
        for f in &frames {
            if let Classified::Message(m) = classify(f, &PRIMARY) {
                let off = usize::from(m.payload_off);
                let p = f[off..off + usize::from(m.payload_len)].to_vec();
                messages.push((p, m.src_ip, m.src_port));
            }
        }
        let read = |paths: &[&str]| -> Vec<(PathBuf, String)> {
            paths
                .iter()
                .map(|p| {
                    let path = root.join(p);
                    let text = fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    (path, text)
                })
                .collect()
        };
        let mut appliance = Vec::new();
        for e in fs::read_dir(root.join("config")).expect("config/") {
            let p = e.expect("config/ entry").path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let text =
                    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                appliance.push((p, text));
            }
        }
        appliance.sort();
        Material {
            frames,
            gateway_frames,
            messages,
            appliance_configs: appliance,
            backup_configs: read(&["crates/taphold-backup/backup.example.yaml"]),
            arbiter_configs: read(&["crates/taphold-arbiter/arbiter.example.yaml"]),
        }
    }

    /// A spread of the frames: every junk frame (each is a different fault) and the first
    /// frame of each length seen after them.
    pub fn frame_sample(&self) -> Vec<Vec<u8>> {
        spread(&self.frames, 3 * MAX_PER_KIND)
    }

    /// A spread of the message payloads.
    pub fn message_sample(&self) -> Vec<&(Vec<u8>, [u8; 4], u16)> {
        let mut lens = Vec::new();
        self.messages
            .iter()
            .filter(|(p, _, _)| {
                let new = !lens.contains(&p.len());
                lens.push(p.len());
                new
            })
            .take(MAX_PER_KIND)
            .collect()
    }

    /// Every kind of taphold PDU, built from the messages, sealed with [`KEY`].
    pub fn pdus(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, (payload, ip, port)) in self.message_sample().into_iter().enumerate() {
            let i = i as u64;
            for mode in [ContentMode::Full, ContentMode::Digest] {
                let r = BackupRepr {
                    flags: [Flags::RETRANSMIT, Flags::EMPTY][(i % 2) as usize],
                    stream: 7,
                    epoch: 9,
                    seq: i + 1,
                    timestamp_ns: 1_000 * i,
                    watermark: i,
                    link: (i % 4) as u8,
                    src_ip: *ip,
                    src_port: *port,
                    payload_len: payload.len() as u16,
                    content: Content::new(mode, payload, &KEY),
                };
                out.push(emit(r.buffer_len(), |b| r.emit(b, &KEY)));
            }
            let c = ConfirmRepr {
                flags: Flags::EMPTY,
                stream: 7,
                epoch: 9,
                seq: i + 1,
                timestamp_ns: i,
                watermark: i,
                payload_len: payload.len() as u16,
                echo: ConfirmRepr::echo_of(payload),
            };
            out.push(emit(c.buffer_len(), |b| c.emit(b, &KEY)));
        }
        for (n, link) in [0, 3, 0xFF].into_iter().enumerate() {
            let h = HeartbeatRepr {
                link,
                from_node: n == 1,
                epoch: 9,
                seq: 5,
                timestamp_ns: 6,
                watermark: 7,
                stream: 7,
                echo_seq: 4,
                echo_timestamp_ns: 3,
            };
            out.push(emit(h.buffer_len(), |b| h.emit(b, &KEY)));
            let a = AckRepr {
                link,
                stream: 7,
                epoch: 9,
                seq: 100,
                timestamp_ns: 6,
                watermark: 90,
                records: 100,
            };
            out.push(emit(a.buffer_len(), |b| a.emit(b, &KEY)));
        }
        let t = TargetConfirmRepr {
            stream: 7,
            epoch: 9,
            seq: 100,
            timestamp_ns: 1,
            highest_seen: 120,
            skipped: 2,
        };
        out.push(emit(t.buffer_len(), |b| t.emit(b, &KEY)));
        let r = ResendRepr {
            stream: 7,
            epoch: 9,
            seq: 101,
            count: 19,
            timestamp_ns: 1,
            delivered: 100,
        };
        out.push(emit(r.buffer_len(), |b| r.emit(b, &KEY)));
        out
    }

    /// Delivery datagrams (header and payload) for the messages.
    pub fn deliveries(&self) -> Vec<Vec<u8>> {
        self.message_sample()
            .into_iter()
            .enumerate()
            .map(|(i, (payload, ip, port))| {
                let h = DeliveryRepr {
                    flags: [Flags::EMPTY, Flags::RETRANSMIT, Flags::UNPROTECTED][i % 3],
                    stream: 7,
                    epoch: 9,
                    seq: i as u64 + 1,
                    src_ip: *ip,
                    src_port: *port,
                    release_ns: 1_767_225_600_000_000_000 + i as u64,
                };
                let mut d = h.to_bytes().to_vec();
                d.extend_from_slice(payload);
                d
            })
            .collect()
    }

    /// A journal run written by the journal itself from the messages' backup frames, in
    /// small segments so that there are several and a `seals` file: (file name, bytes).
    pub fn journal_run(&self) -> Vec<(String, Vec<u8>)> {
        let scratch = crate::targets::Scratch::new("seeds");
        let dir = scratch.path();
        let mut cfg = JournalConfig::new(dir, RUN);
        cfg.segment_bytes = 2048;
        cfg.fsync = FsyncPolicy::default();
        let (mut j, _) = Journal::open(cfg).expect("journal for the seeds");
        for (seq, pdu) in self.backup_pdus().iter().enumerate() {
            j.append(seq as u64 + 1, 0, seq as u64, pdu)
                .expect("append");
        }
        j.trim_below(7).expect("trim");
        j.close().expect("close");
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .expect("journal dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).expect("journal file"),
                )
            })
            .collect();
        files.sort();
        files
    }

    /// The full-copy backup frames of the sampled messages, in order.
    pub fn backup_pdus(&self) -> Vec<Vec<u8>> {
        self.pdus()
            .into_iter()
            .filter(|p| {
                let v = taphold_wire::taphold::Packet::new_checked(&p[..]);
                v.is_ok_and(|v| {
                    v.msg_type() == taphold_wire::MsgType::Backup
                        && v.content_mode() == ContentMode::Full
                })
            })
            .collect()
    }
}

fn emit(len: usize, f: impl FnOnce(&mut [u8]) -> Result<u64, taphold_wire::WireError>) -> Vec<u8> {
    let mut b = vec![0u8; len];
    f(&mut b).expect("a seed PDU emits");
    b
}

/// The first `max` items of distinct lengths, after every item of the junk capture (which
/// comes first in [`Material::frames`] and is short).
fn spread(items: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
    let mut lens = Vec::new();
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let junk = i < 35;
        if junk || !lens.contains(&it.len()) {
            lens.push(it.len());
            out.push(it.clone());
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

/// The frames of a classic libpcap file (either byte order, Ethernet link type).
pub fn pcap_frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let u32_at = |b: &[u8], le: bool| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if bytes.len() < 24 {
        return Err("shorter than a pcap header".into());
    }
    let le = match u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => return Err(format!("not a pcap file (magic {m:#010x})")),
    };
    if u32_at(&bytes[20..24], le) != 1 {
        return Err("link type is not Ethernet".into());
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off < bytes.len() {
        let rec = bytes.get(off..off + 16).ok_or("truncated record header")?;
        let cap = u32_at(&rec[8..12], le) as usize;
        let frame = bytes
            .get(off + 16..off + 16 + cap)
            .ok_or("truncated record")?;
        out.push(frame.to_vec());
        off += 16 + cap;
    }
    Ok(out)
}

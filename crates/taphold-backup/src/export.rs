//! `taphold-backup journal export`: every journaled message, in order, for a person or a
//! program, without EAL and without changing the journal.
//!
//! Within each run (stream, epoch) the messages come out by seq, once each (a journal
//! holds them in arrival order, which a reordering link may have shuffled, and may hold
//! a seq twice after a crash). Two formats:
//!
//! - `jsonl`: one JSON object per message: stream, epoch, seq, flags, source address and
//!   port, the launch timestamp and the journaling time (UNIX ns), and the payload in
//!   base64; a digest-only record carries the payload's digest and length instead and
//!   says `"replayable": false`, and so does a gateway-mode TCP segment (content mode 2
//!   or 3), with its flow fields (`dst_ip`, `dst_port`, `tcp_flags`, `tcp_seq`,
//!   `content_mode`, `content` in base64): `journal export --flow` (flow_export.rs)
//!   reassembles those.
//! - `pcap`: each message as it would be delivered: Ethernet/IPv4/UDP from its original
//!   source to `--to`, with the delivery header in front of the payload (`--framing
//!   taphold`, the default) or the payload alone (`--framing raw`), stamped with its
//!   launch time at nanosecond resolution. Digest-only records cannot be delivered:
//!   they are skipped and counted on stderr.
//!
//! A segment that stops being readable (a torn tail, corruption) is reported on stderr
//! with its file and offset; what precedes it is exported and the exit code is 1. So
//! is every other sign that records are gone (a sealed segment missing, emptied or
//! cut, an incomplete `seals`, an absurd trim floor, a damaged tail set aside: what
//! `journal inspect` names), since the export is then short of them.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use base64::Engine;
use taphold_journal::{inspect_run, list_runs, read_valid_records, ProblemKind, Record, RunId};
use taphold_runtime::args::Args;
use taphold_wire::delivery::DeliveryRepr;
use taphold_wire::emit::{emit_udp_headers, Endpoint, UDP_FRAME_HEADER_LEN};
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::taphold::{decrypt_backup_frame, BackupRepr, Content, Flags, MsgType, Packet};

pub const USAGE: &str = "usage: taphold-backup journal export DIR [--stream S] [--epoch E] [--from SEQ] [--format jsonl|pcap] [--out FILE] [--to IP:PORT] [--framing taphold|raw]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Pcap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOpts {
    pub dir: PathBuf,
    pub stream: Option<u32>,
    pub epoch: Option<u64>,
    pub from: u64,
    pub format: Format,
    pub out: Option<PathBuf>,
    /// pcap: the destination the datagrams are addressed to.
    pub to: SocketAddrV4,
    /// pcap: with the delivery header (true) or the payload alone.
    pub framed: bool,
    /// Decrypts records journaled encrypted (`journal_ciphertext`): the payload
    /// key file (read when the export starts).
    pub payload_key_file: Option<PathBuf>,
}

impl ExportOpts {
    pub fn parse(args: &[String]) -> Result<ExportOpts, String> {
        let (dir, rest) = args
            .split_first()
            .ok_or_else(|| format!("journal export needs a directory\n{USAGE}"))?;
        if dir.starts_with("--") {
            return Err(format!("journal export needs a directory first\n{USAGE}"));
        }
        let mut o = ExportOpts {
            dir: dir.into(),
            stream: None,
            epoch: None,
            from: 0,
            format: Format::Jsonl,
            out: None,
            to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100),
            framed: true,
            payload_key_file: None,
        };
        let mut a = Args::new(rest, USAGE);
        while let Some(flag) = a.flag() {
            match flag {
                "--stream" => {
                    o.stream = Some(
                        u32::try_from(a.number(flag)?)
                            .map_err(|_| format!("--stream: not a stream id\n{USAGE}"))?,
                    )
                }
                "--epoch" => o.epoch = Some(a.number(flag)?),
                "--from" => o.from = a.number(flag)?,
                "--format" => {
                    o.format = match a.value(flag)?.as_str() {
                        "jsonl" => Format::Jsonl,
                        "pcap" => Format::Pcap,
                        other => return Err(format!("--format: `{other}` (want jsonl or pcap)")),
                    }
                }
                "--out" => o.out = Some(a.value(flag)?.into()),
                "--payload-key-file" => o.payload_key_file = Some(a.value(flag)?.into()),
                "--to" => {
                    let v = a.value(flag)?;
                    o.to = v
                        .parse()
                        .map_err(|_| format!("--to: `{v}` is not IPv4:PORT"))?;
                }
                "--framing" => {
                    o.framed = match a.value(flag)?.as_str() {
                        "taphold" => true,
                        "raw" => false,
                        other => return Err(format!("--framing: `{other}` (want taphold or raw)")),
                    }
                }
                other => return Err(a.unknown(other)),
            }
        }
        if o.format == Format::Pcap && o.out.is_none() {
            return Err(format!("--format pcap needs --out FILE\n{USAGE}"));
        }
        Ok(o)
    }
}

/// What an export did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub runs: u64,
    pub messages: u64,
    /// Digest-only records (no payload): listed in jsonl, skipped in pcap.
    pub not_replayable: u64,
    /// Second records of a seq already exported.
    pub duplicates: u64,
    /// Records that are not backup frames at all (never expected).
    pub unparsable: u64,
    /// Records journaled encrypted that were not exported (no payload key, or
    /// the wrong one).
    pub encrypted: u64,
    /// Segments that stopped being readable: file, offset, why.
    pub unreadable: Vec<String>,
}

impl ExportReport {
    pub fn is_clean(&self) -> bool {
        self.unparsable == 0 && self.unreadable.is_empty()
    }
}

/// Exports as `opts` says; the report goes to the caller (stderr).
pub fn export(opts: &ExportOpts) -> io::Result<ExportReport> {
    // An absent directory is an error, not an empty export.
    std::fs::read_dir(&opts.dir)?;
    let payload_key = opts
        .payload_key_file
        .as_deref()
        .map(taphold_runtime::key::read_payload_key_file)
        .transpose()
        .map_err(|e| io::Error::other(format!("--payload-key-file: {e}")))?;
    let runs = list_runs(&opts.dir)?;
    let mut out: Box<dyn Write> = match &opts.out {
        Some(p) => Box::new(io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    if opts.format == Format::Pcap {
        write_pcap_header(&mut out)?;
    }
    let mut report = ExportReport::default();
    for (run, dir) in &runs.runs {
        if opts.stream.is_some_and(|s| s != run.stream)
            || opts.epoch.is_some_and(|e| e != run.epoch)
        {
            continue;
        }
        report.runs += 1;
        export_run(
            *run,
            dir,
            (opts, payload_key.as_ref()),
            &mut out,
            &mut report,
        )?;
    }
    out.flush()?;
    Ok(report)
}

fn export_run(
    run: RunId,
    dir: &Path,
    (opts, payload_key): (&ExportOpts, Option<&taphold_wire::payload::PayloadKey>),
    out: &mut dyn Write,
    report: &mut ExportReport,
) -> io::Result<()> {
    let (mut records, unreadable) = read_valid_records(dir)?;
    for (file, offset, defect) in unreadable {
        report.unreadable.push(format!(
            "{}: byte offset {offset}: {defect}; the records after it are not exported",
            file.display()
        ));
    }
    // Records gone with no defect in what is read (a segment deleted, emptied or cut
    // at a record boundary): inspect's rules find them.
    for p in inspect_run(dir, Some(run))?.problems {
        use ProblemKind::*;
        if matches!(
            p.kind,
            MissingSegment | EmptySegment | ChangedSegment | BadSeals | FloorTooHigh | DamagedTail
        ) {
            report.unreadable.push(format!(
                "run {run}: {p}; the records it names are not exported"
            ));
        }
    }
    // By seq; the first record of a seq wins (stable sort keeps file order).
    records.sort_by_key(|r| r.seq);
    let mut last = None;
    for r in &records {
        if r.seq < opts.from {
            continue;
        }
        if last == Some(r.seq) {
            report.duplicates += 1;
            continue;
        }
        last = Some(r.seq);
        // Journaled encrypted: decrypted with the payload key, if given.
        let mut plain;
        let mut pdu = &r.pdu[..];
        let encrypted = Packet::new_checked(pdu)
            .is_ok_and(|p| p.msg_type() == MsgType::Backup && p.flags().contains(Flags::ENCRYPTED));
        if encrypted {
            let Some(k) = payload_key else {
                report.encrypted += 1;
                report.unreadable.push(format!(
                    "run {run} seq {}: journaled encrypted; give --payload-key-file",
                    r.seq
                ));
                continue;
            };
            plain = r.pdu.clone();
            match decrypt_backup_frame(&mut plain, k, None) {
                Ok(n) => pdu = &plain[..n],
                Err(_) => {
                    report.encrypted += 1;
                    report.unreadable.push(format!(
                        "run {run} seq {}: the payload key does not open it",
                        r.seq
                    ));
                    continue;
                }
            }
        }
        let Some(b) = Packet::new_checked(pdu)
            .ok()
            .and_then(|p| BackupRepr::parse_verified_earlier(&p).ok())
        else {
            report.unparsable += 1;
            report.unreadable.push(format!(
                "{}: byte offset {}: run {run} seq {}: the record is not a backup frame",
                r.file.display(),
                r.offset,
                r.seq
            ));
            continue;
        };
        let replayable = matches!(b.content, Content::Full(_));
        if !replayable {
            report.not_replayable += 1;
        }
        match opts.format {
            Format::Jsonl => writeln!(out, "{}", json_line(run, r, &b))?,
            Format::Pcap if replayable => write_pcap_record(out, &b, opts)?,
            Format::Pcap => continue,
        }
        report.messages += 1;
    }
    Ok(())
}

pub fn flag_names(f: Flags) -> Vec<&'static str> {
    [
        (Flags::POSSIBLE_DUPLICATE, "POSSIBLE_DUPLICATE"),
        (Flags::UNPROTECTED, "UNPROTECTED"),
        (Flags::RETRANSMIT, "RETRANSMIT"),
    ]
    .into_iter()
    .filter(|(bit, _)| f.contains(*bit))
    .map(|(_, name)| name)
    .collect()
}

fn json_line(run: RunId, r: &Record, b: &BackupRepr) -> serde_json::Value {
    let mut v = serde_json::json!({
        "stream": run.stream,
        "epoch": run.epoch,
        "seq": r.seq,
        "flags": flag_names(b.flags),
        "src_ip": Ipv4Addr::from(b.src_ip).to_string(),
        "src_port": b.src_port,
        "timestamp_ns": b.timestamp_ns,
        "journaled_ns": r.timestamp_ns,
        "payload_len": b.payload_len,
    });
    match b.content {
        Content::Full(p) => {
            v["replayable"] = true.into();
            v["payload"] = base64::engine::general_purpose::STANDARD.encode(p).into();
        }
        Content::Digest(d) => {
            v["replayable"] = false.into();
            v["payload_digest"] = format!("{d:016x}").into();
        }
        Content::Tcp(s) | Content::FixCompact(s) => {
            // A TCP segment is part of a byte stream, not a datagram to replay:
            // `journal export --flow` reassembles it.
            v["replayable"] = false.into();
            v["content_mode"] = match b.content {
                Content::Tcp(_) => "tcp",
                _ => "fix-compact",
            }
            .into();
            v["dst_ip"] = Ipv4Addr::from(s.dst_ip).to_string().into();
            v["dst_port"] = s.dst_port.into();
            v["tcp_flags"] = s.tcp_flags.into();
            v["tcp_seq"] = s.tcp_seq.into();
            v["content"] = base64::engine::general_purpose::STANDARD
                .encode(s.content)
                .into();
        }
    }
    v
}

const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Locally administered placeholders: a capture of deliveries, not of a real segment.
const SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const DST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

fn write_pcap_header(out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&PCAP_MAGIC_NS.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&[0; 8])?;
    out.write_all(&65535u32.to_le_bytes())?;
    out.write_all(&1u32.to_le_bytes())
}

fn write_pcap_record(out: &mut dyn Write, b: &BackupRepr, opts: &ExportOpts) -> io::Result<()> {
    let Content::Full(payload) = b.content else {
        return Ok(());
    };
    let header = DeliveryRepr {
        flags: b.flags,
        stream: b.stream,
        epoch: b.epoch,
        seq: b.seq,
        src_ip: b.src_ip,
        src_port: b.src_port,
        release_ns: b.timestamp_ns,
    }
    .to_bytes();
    let prefix: &[u8] = if opts.framed { &header } else { &[] };
    let body = prefix.len() + payload.len();
    let mut frame = vec![0u8; UDP_FRAME_HEADER_LEN + body];
    frame[UDP_FRAME_HEADER_LEN..][..prefix.len()].copy_from_slice(prefix);
    frame[UDP_FRAME_HEADER_LEN + prefix.len()..].copy_from_slice(payload);
    let from = Endpoint {
        mac: SRC_MAC,
        ip: b.src_ip,
        port: b.src_port,
    };
    let to = Endpoint {
        mac: DST_MAC,
        ip: opts.to.ip().octets(),
        port: opts.to.port(),
    };
    emit_udp_headers(&mut frame, &from, &to, body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let (s, ns) = (
        b.timestamp_ns / 1_000_000_000,
        b.timestamp_ns % 1_000_000_000,
    );
    out.write_all(&(s as u32).to_le_bytes())?;
    out.write_all(&(ns as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(&(frame.len() as u32).to_le_bytes())?;
    out.write_all(&frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = ExportOpts::parse(&v("/j --stream 2 --epoch 9 --from 5")).unwrap();
        assert_eq!(o.dir, PathBuf::from("/j"));
        assert_eq!((o.stream, o.epoch, o.from), (Some(2), Some(9), 5));
        assert_eq!(o.format, Format::Jsonl);
        let o = ExportOpts::parse(&v(
            "/j --format pcap --out x.pcap --to 10.0.0.1:7000 --framing raw",
        ))
        .unwrap();
        assert_eq!(o.format, Format::Pcap);
        assert_eq!(o.to, "10.0.0.1:7000".parse().unwrap());
        assert!(!o.framed);
        for (bad, want) in [
            ("", "needs a directory"),
            ("--stream 1", "directory first"),
            ("/j --format xml", "`xml`"),
            ("/j --format pcap", "needs --out"),
            ("/j --to nowhere", "not IPv4:PORT"),
            ("/j --stream 99999999999", "not a stream id"),
            ("/j --bogus", "--bogus"),
        ] {
            let e = ExportOpts::parse(&v(bad)).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn flag_names_are_the_protocols() {
        assert!(flag_names(Flags::EMPTY).is_empty());
        assert_eq!(
            flag_names(Flags::UNPROTECTED | Flags::RETRANSMIT),
            ["UNPROTECTED", "RETRANSMIT"]
        );
    }

    #[test]
    fn a_tcp_segment_is_listed_with_its_flow_and_not_replayable() {
        use taphold_wire::taphold::TcpSegmentRepr;
        let seg = TcpSegmentRepr {
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            payload_len: 3,
            dst_ip: [10, 2, 0, 2],
            dst_port: 9878,
            tcp_flags: 0x18,
            tcp_seq: 77,
            content: b"abc",
        };
        let b = BackupRepr {
            link: 0,
            flags: Flags::EMPTY,
            stream: 1,
            epoch: 2,
            seq: 3,
            timestamp_ns: 4,
            watermark: 0,
            src_ip: seg.src_ip,
            src_port: seg.src_port,
            payload_len: 3,
            content: Content::Tcp(seg),
        };
        let r = Record {
            seq: 3,
            stream: 1,
            epoch: 2,
            flags: 0,
            timestamp_ns: 5,
            pdu: Vec::new(),
            file: PathBuf::new(),
            offset: 0,
        };
        let v = json_line(
            RunId {
                stream: 1,
                epoch: 2,
            },
            &r,
            &b,
        );
        assert_eq!(v["replayable"], false);
        assert_eq!(v["content_mode"], "tcp");
        assert_eq!(v["dst_ip"], "10.2.0.2");
        assert_eq!(v["dst_port"], 9878);
        assert_eq!(v["tcp_seq"], 77);
        assert_eq!(v["tcp_flags"], 0x18);
        assert_eq!(v["content"], "YWJj");
        let b = BackupRepr {
            content: Content::FixCompact(seg),
            ..b
        };
        assert_eq!(
            json_line(
                RunId {
                    stream: 1,
                    epoch: 2
                },
                &r,
                &b
            )["content_mode"],
            "fix-compact"
        );
    }
}

//! Gateway mode from the journal: `journal flows`, `journal export --flow` and
//! `recover --flow`, without EAL and without changing the journal.
//!
//! Every run's backup frames of content mode 2 (tcp) and 3 (fix-compact) are gathered
//! per TCP flow, run by run in (stream, epoch) order and within a run by seq, once each;
//! the flow's byte stream is laid out by TCP sequence number (`taphold_fix::stream`: the
//! first copy of a byte wins, a differing later copy is a conflict, what nobody sent is
//! a hole). A SYN, or a jump of more than 2^28 in sequence numbers (a reconnect whose SYN
//! was not journaled), starts a new connection of the same flow. Compact records (mode 3) hold no bytes: each FIX message is placed at
//! its original extent and rebuilt when asked for (marked `"rebuilt": true`).
//!
//! What the exchange acknowledged is the highest `acked` the node kept from flow acks
//! (`flows.rs`), per run; a connection takes the highest of them that falls within it.
//! A FIX message is acknowledged when its last byte is below `acked` (serial
//! arithmetic).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use taphold_fix::compact::{rebuild, records, Resend};
use taphold_fix::frame::{split, Message, Piece};
use taphold_fix::resend::poss_dup_copy;
use taphold_fix::stream::{Reassembled, Reassembler, Run};
use taphold_journal::{list_runs, read_valid_records, RunId};
use taphold_runtime::args::Args;
use taphold_wire::taphold::{BackupRepr, Content, Packet};

use crate::flows::{read_flow_acks, FlowKey, NEW_CONNECTION_DISTANCE};

pub const FLOWS_USAGE: &str = "usage: taphold-backup journal flows DIR";
pub const EXPORT_USAGE: &str =
    "usage: taphold-backup journal export DIR --flow SRCIP:SRCPORT-DSTIP:DSTPORT [--decode fix] [--out FILE]";
pub const RECOVER_USAGE: &str =
    "usage: taphold-backup recover DIR --flow SRCIP:SRCPORT-DSTIP:DSTPORT --decode fix [--out FILE]";

const SYN: u8 = 0x02;

/// One journaled TCP segment of a flow.
#[derive(Debug, Clone)]
struct Segment {
    run: RunId,
    tcp_seq: u32,
    tcp_flags: u8,
    payload_len: u16,
    /// Mode 2: the payload; mode 3: the compact content.
    content: Vec<u8>,
    compact: bool,
}

/// Everything the journal says about gateway flows.
#[derive(Debug, Default)]
struct Gathered {
    flows: BTreeMap<FlowKey, Vec<Segment>>,
    /// Highest acked per (run, flow).
    acks: Vec<(RunId, FlowKey, u32)>,
    /// What could not be read: file, offset, why.
    pub problems: Vec<String>,
}

fn gather(dir: &Path) -> io::Result<Gathered> {
    std::fs::read_dir(dir)?;
    let mut g = Gathered::default();
    for (run, rdir) in list_runs(dir)?.runs {
        let (mut recs, unreadable) = read_valid_records(&rdir)?;
        for (file, offset, defect) in unreadable {
            g.problems.push(format!(
                "{}: byte offset {offset}: {defect}; the records after it are not read",
                file.display()
            ));
        }
        recs.sort_by_key(|r| r.seq);
        let mut last = None;
        for r in &recs {
            if last == Some(r.seq) {
                continue;
            }
            last = Some(r.seq);
            let Some(b) = Packet::new_checked(&r.pdu[..])
                .ok()
                .and_then(|p| BackupRepr::parse_verified_earlier(&p).ok())
            else {
                g.problems.push(format!(
                    "{}: byte offset {}: run {run} seq {}: the record is not a backup frame",
                    r.file.display(),
                    r.offset,
                    r.seq
                ));
                continue;
            };
            let (s, compact) = match b.content {
                Content::Tcp(s) => (s, false),
                Content::FixCompact(s) => (s, true),
                Content::Full(_) | Content::Digest(_) => continue,
            };
            g.flows
                .entry(FlowKey::of_segment(&s))
                .or_default()
                .push(Segment {
                    run,
                    tcp_seq: s.tcp_seq,
                    tcp_flags: s.tcp_flags,
                    payload_len: s.payload_len,
                    content: s.content.to_vec(),
                    compact,
                });
        }
        match read_flow_acks(&rdir) {
            Ok(a) => {
                if a.tail_bytes > 0 {
                    g.problems.push(format!(
                        "{}: {} bytes of a torn or damaged tail after {} bytes of flow acks; what precedes is used",
                        rdir.join(crate::flows::FLOW_ACKS_FILE).display(),
                        a.tail_bytes,
                        a.valid_len
                    ));
                }
                // Every record: a reconnect within the run left each connection's.
                g.acks
                    .extend(a.records.into_iter().map(|(k, acked)| (run, k, acked)));
            }
            Err(e) => g.problems.push(format!(
                "{}: {e}",
                rdir.join(crate::flows::FLOW_ACKS_FILE).display()
            )),
        }
    }
    Ok(g)
}

/// One connection of a flow, laid out.
struct Connection {
    stream: Reassembled,
    runs: Vec<RunId>,
    segments: u64,
    compact_segments: u64,
    bytes: u64,
    /// Compact records, by the opaque id the reassembler knows them by.
    compact: Vec<Vec<u8>>,
    /// Problems of this connection's segments (bad compact content).
    problems: Vec<String>,
    acked: Option<u32>,
}

fn connections(
    flow: &FlowKey,
    segs: &[Segment],
    acks: &[(RunId, FlowKey, u32)],
) -> Result<Vec<Connection>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    // The end of the last segment, to see a jump to another sequence space.
    let mut last_end = segs.first().map_or(0, Segment::end);
    for i in 1..=segs.len() {
        let new_space = segs.get(i).is_some_and(|s| {
            let d = s.tcp_seq.wrapping_sub(last_end) as i32;
            s.tcp_flags & SYN != 0 || d.unsigned_abs() > NEW_CONNECTION_DISTANCE
        });
        if i == segs.len() || new_space {
            out.push(connection(flow, &segs[start..i], acks)?);
            start = i;
        }
        if let Some(s) = segs.get(i) {
            last_end = s.end();
        }
    }
    Ok(out)
}

impl Segment {
    /// The sequence number after its bytes.
    fn end(&self) -> u32 {
        self.tcp_seq
            .wrapping_add(u32::from(self.tcp_flags & SYN != 0))
            .wrapping_add(u32::from(self.payload_len))
    }
}

fn connection(
    flow: &FlowKey,
    segs: &[Segment],
    acks: &[(RunId, FlowKey, u32)],
) -> Result<Connection, String> {
    let mut r = Reassembler::new();
    let mut c = Connection {
        stream: Reassembler::new().finish()?,
        runs: Vec::new(),
        segments: 0,
        compact_segments: 0,
        bytes: 0,
        compact: Vec::new(),
        problems: Vec::new(),
        acked: None,
    };
    for s in segs {
        c.segments += 1;
        c.bytes += u64::from(s.payload_len);
        if !c.runs.contains(&s.run) {
            c.runs.push(s.run);
        }
        let syn = s.tcp_flags & SYN != 0;
        if !s.compact {
            r.push(s.tcp_seq, syn, &s.content);
            continue;
        }
        c.compact_segments += 1;
        let mut at = s.tcp_seq.wrapping_add(u32::from(syn));
        if syn {
            r.push(s.tcp_seq, true, b"");
        }
        let mut placed = 0u32;
        let mut rest = &s.content[..];
        for rec in records(&s.content) {
            let Ok(m) = rec else {
                c.problems.push(format!(
                    "run {} flow {flow}: the compact content at tcp seq {} is malformed after {placed} bytes; the rest of that segment is a hole",
                    s.run, s.tcp_seq
                ));
                break;
            };
            // The record's own bytes, to read it back later.
            let len = 4 + usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            c.compact.push(rest[..len].to_vec());
            rest = &rest[len..];
            r.push_opaque(at, u32::from(m.orig_len), c.compact.len() - 1);
            at = at.wrapping_add(u32::from(m.orig_len));
            placed += u32::from(m.orig_len);
        }
        if placed != u32::from(s.payload_len) && c.problems.is_empty() {
            c.problems.push(format!(
                "run {} flow {flow}: the compact records at tcp seq {} cover {placed} bytes, the segment {}",
                s.run, s.tcp_seq, s.payload_len
            ));
        }
    }
    c.stream = r.finish()?;
    // The highest acked of this flow within the connection (serial arithmetic from its
    // start). It may lie beyond the last byte journaled — the exchange acknowledged
    // segments this node never got, or lost in a crash before they reached its disk —
    // but not as far as another connection's sequence space.
    let span = c.stream.end_seq.wrapping_sub(c.stream.start_seq);
    let reach = span.saturating_add(NEW_CONNECTION_DISTANCE);
    c.acked = acks
        .iter()
        .filter(|(_, k, _)| k == flow)
        .map(|&(_, _, a)| a)
        .filter(|a| a.wrapping_sub(c.stream.start_seq) <= reach)
        .max_by_key(|a| a.wrapping_sub(c.stream.start_seq));
    Ok(c)
}

/// A FIX message (or bytes that are not one) of a connection, in stream order.
enum Item {
    Message {
        seq: u32,
        raw: Vec<u8>,
        len: u32,
        rebuilt: bool,
    },
    Bad {
        seq: u32,
        len: u32,
        error: &'static str,
    },
}

fn items(c: &Connection) -> Vec<Item> {
    let mut out = Vec::new();
    for run in &c.stream.runs {
        match run {
            Run::Bytes { seq, data } => {
                for p in split(data) {
                    match p {
                        Piece::Message { at, message } => out.push(Item::Message {
                            seq: seq.wrapping_add(at as u32),
                            raw: message.raw().to_vec(),
                            len: message.len() as u32,
                            rebuilt: false,
                        }),
                        Piece::Bad { range, error } => out.push(Item::Bad {
                            seq: seq.wrapping_add(range.start as u32),
                            len: range.len() as u32,
                            error: error.name(),
                        }),
                    }
                }
            }
            Run::Opaque {
                seq,
                len,
                id,
                whole,
            } => {
                let rec = records(&c.compact[*id]).next().and_then(Result::ok);
                match rec {
                    Some(m) if *whole => out.push(Item::Message {
                        seq: *seq,
                        raw: rebuild(&m, None),
                        len: *len,
                        rebuilt: true,
                    }),
                    _ => out.push(Item::Bad {
                        seq: *seq,
                        len: *len,
                        error: "partial_compact",
                    }),
                }
            }
            Run::Hole { .. } => {}
        }
    }
    out
}

fn text(v: Option<&[u8]>) -> serde_json::Value {
    v.map_or(serde_json::Value::Null, |b| {
        String::from_utf8_lossy(b).into_owned().into()
    })
}

fn message_json(
    flow: &FlowKey,
    conn: usize,
    seq: u32,
    len: u32,
    raw: &[u8],
    rebuilt: bool,
) -> serde_json::Value {
    let m = Message::parse_at(raw).expect("split and rebuild give valid messages");
    let s = m.summary();
    serde_json::json!({
        "flow": flow.to_string(),
        "connection": conn,
        "tcp_seq": seq,
        "tcp_end": seq.wrapping_add(len),
        "msg_seq_num": s.msg_seq_num(),
        "msg_type": text(s.msg_type),
        "cl_ord_id": text(s.cl_ord_id),
        "side": text(s.side),
        "symbol": text(s.symbol),
        "order_qty": text(s.order_qty),
        "price": text(s.price),
        "sending_time": text(s.sending_time),
        "raw": String::from_utf8_lossy(raw),
        "rebuilt": rebuilt,
    })
}

/// Bytes of the connection from `acked` (or its start) to its end; 0 when acked is
/// beyond it.
fn unacked_bytes(r: &Reassembled, acked: Option<u32>) -> u64 {
    let len = r.end_seq.wrapping_sub(r.start_seq);
    let done = acked.map_or(0, |a| a.wrapping_sub(r.start_seq));
    u64::from(len.saturating_sub(done))
}

fn holes_text(r: &Reassembled) -> Vec<String> {
    r.holes().map(|(a, b)| format!("{a}..{b}")).collect()
}

/// `journal flows DIR`: one JSON line per flow (per connection), a summary on stderr.
/// 0 clean, 1 something could not be read, 2 usage or an unreadable directory.
pub fn flows_command(args: &[String]) -> i32 {
    let [dir] = args else {
        eprintln!("{FLOWS_USAGE}");
        return 2;
    };
    let g = match gather(Path::new(dir)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("taphold-backup: journal {dir}: {e}");
            return 2;
        }
    };
    let mut problems = g.problems.clone();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for (flow, segs) in &g.flows {
        let conns = match connections(flow, segs, &g.acks) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("flow {flow}: {e}"));
                continue;
            }
        };
        for (i, c) in conns.iter().enumerate() {
            problems.extend(c.problems.iter().cloned());
            let mut epochs: Vec<u64> = c.runs.iter().map(|r| r.epoch).collect();
            epochs.dedup();
            let v = serde_json::json!({
                "flow": flow.to_string(),
                "connection": i,
                "streams": c.runs.iter().map(|r| r.stream).collect::<std::collections::BTreeSet<_>>(),
                "epochs": epochs,
                "segments": c.segments,
                "compact_segments": c.compact_segments,
                "bytes": c.bytes,
                "first_tcp_seq": c.stream.start_seq,
                "last_tcp_seq": c.stream.end_seq,
                "acked": c.acked,
                "unacked_bytes": unacked_bytes(&c.stream, c.acked),
                "holes": holes_text(&c.stream),
                "conflicts": c.stream.conflicts.len(),
            });
            if writeln!(out, "{v}").is_err() {
                return 2;
            }
        }
    }
    // Flows with flow acks but no segment journaled.
    for (run, k, a) in &g.acks {
        if !g.flows.contains_key(k) {
            eprintln!("taphold-backup: journal flows: run {run}: flow {k} acked up to {a}, but no segment of it is journaled");
        }
    }
    for p in &problems {
        eprintln!("taphold-backup: journal flows: {p}");
    }
    eprintln!("{} flow(s)", g.flows.len());
    i32::from(!problems.is_empty())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowOpts {
    pub dir: PathBuf,
    pub flow: FlowKey,
    pub decode_fix: bool,
    pub out: Option<PathBuf>,
}

impl FlowOpts {
    /// `DIR --flow F [--decode fix] [--out FILE]`.
    pub fn parse(args: &[String], usage: &'static str) -> Result<FlowOpts, String> {
        let (dir, rest) = args
            .split_first()
            .filter(|(d, _)| !d.starts_with("--"))
            .ok_or_else(|| format!("a journal directory first\n{usage}"))?;
        let mut flow = None;
        let mut decode_fix = false;
        let mut out = None;
        let mut a = Args::new(rest, usage);
        while let Some(flag) = a.flag() {
            match flag {
                "--flow" => {
                    flow = Some(
                        a.value(flag)?
                            .parse::<FlowKey>()
                            .map_err(|e| format!("--flow: {e}"))?,
                    )
                }
                "--decode" => match a.value(flag)?.as_str() {
                    "fix" => decode_fix = true,
                    other => return Err(format!("--decode: `{other}` (want fix)")),
                },
                "--out" => out = Some(a.value(flag)?.into()),
                other => return Err(a.unknown(other)),
            }
        }
        let flow = flow.ok_or_else(|| format!("--flow is required\n{usage}"))?;
        Ok(FlowOpts {
            dir: dir.into(),
            flow,
            decode_fix,
            out,
        })
    }
}

/// Whether any arg asks for a flow (then `journal export` is this module's).
pub fn wants_flow(args: &[String]) -> bool {
    args.iter().any(|a| a == "--flow")
}

/// What an export or recover of one flow found.
#[derive(Debug, Default)]
pub struct FlowReport {
    pub connections: usize,
    pub bytes_written: u64,
    pub messages: u64,
    pub rebuilt: u64,
    pub acknowledged: u64,
    pub unacknowledged: u64,
    pub bad: Vec<String>,
    pub holes: Vec<String>,
    pub conflicts: Vec<String>,
    pub problems: Vec<String>,
}

fn open_out(out: &Option<PathBuf>) -> io::Result<Box<dyn Write>> {
    Ok(match out {
        Some(p) => Box::new(io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    })
}

fn run_flow(opts: &FlowOpts, recover: bool) -> io::Result<FlowReport> {
    let g = gather(&opts.dir)?;
    let mut rep = FlowReport {
        problems: g.problems.clone(),
        ..FlowReport::default()
    };
    let segs = g.flows.get(&opts.flow).map(Vec::as_slice).unwrap_or(&[]);
    if segs.is_empty() {
        rep.problems
            .push(format!("no segment of flow {} in the journal", opts.flow));
    }
    let conns = if segs.is_empty() {
        Vec::new()
    } else {
        connections(&opts.flow, segs, &g.acks).map_err(io::Error::other)?
    };
    let mut out = open_out(&opts.out)?;
    rep.connections = conns.len();
    for (i, c) in conns.iter().enumerate() {
        rep.problems.extend(c.problems.iter().cloned());
        for h in holes_text(&c.stream) {
            rep.holes.push(format!("connection {i}: tcp seq {h}"));
        }
        for (s, l) in &c.stream.conflicts {
            rep.conflicts.push(format!(
                "connection {i}: tcp seq {s}..{} differs from its first copy (first kept)",
                s.wrapping_add(*l)
            ));
        }
        if !opts.decode_fix {
            // The byte stream; compact messages as rebuilt (not byte-identical).
            for it in items_or_bytes(c) {
                match it {
                    Chunk::Bytes(b) => {
                        out.write_all(b)?;
                        rep.bytes_written += b.len() as u64;
                    }
                    Chunk::Rebuilt(b) => {
                        out.write_all(&b)?;
                        rep.bytes_written += b.len() as u64;
                        rep.rebuilt += 1;
                    }
                    Chunk::Missing(seq, len) => rep.bad.push(format!(
                        "connection {i}: tcp seq {seq}..{}: a compact message only partly held",
                        seq.wrapping_add(len)
                    )),
                }
            }
            continue;
        }
        for it in items(c) {
            match it {
                Item::Message {
                    seq,
                    raw,
                    len,
                    rebuilt,
                } => {
                    rep.messages += 1;
                    rep.rebuilt += u64::from(rebuilt);
                    let mut v = message_json(&opts.flow, i, seq, len, &raw, rebuilt);
                    if recover {
                        let end = seq.wrapping_add(len);
                        let acked = c.acked.is_some_and(|a| {
                            a.wrapping_sub(c.stream.start_seq)
                                >= end.wrapping_sub(c.stream.start_seq)
                        });
                        v["acknowledged"] = acked.into();
                        if acked {
                            rep.acknowledged += 1;
                        } else {
                            rep.unacknowledged += 1;
                            // Ready for the firm's FIX engine to send again.
                            let m = Message::parse_at(&raw).expect("valid");
                            let resend = if rebuilt {
                                records_resend(c, seq).unwrap_or_else(|| poss_dup_copy(&m, None))
                            } else {
                                poss_dup_copy(&m, None)
                            };
                            v["resend"] = String::from_utf8_lossy(&resend).into();
                        }
                    }
                    writeln!(out, "{v}")?;
                }
                Item::Bad { seq, len, error } => rep.bad.push(format!(
                    "connection {i}: tcp seq {seq}..{}: {error}",
                    seq.wrapping_add(len)
                )),
            }
        }
        if recover {
            let v = serde_json::json!({
                "summary": true,
                "flow": opts.flow.to_string(),
                "connection": i,
                "first_tcp_seq": c.stream.start_seq,
                "last_tcp_seq": c.stream.end_seq,
                "acked": c.acked,
                "acknowledged": rep.acknowledged,
                "unacknowledged": rep.unacknowledged,
                "holes": holes_text(&c.stream),
            });
            writeln!(out, "{v}")?;
        }
    }
    out.flush()?;
    Ok(rep)
}

/// [`run_flow`] for the tests: the report (panics on an I/O error).
#[cfg(test)]
pub fn run_flow_for_test(opts: &FlowOpts, recover: bool) -> FlowReport {
    run_flow(opts, recover).unwrap()
}

/// The resend of the compact message at `seq`: rebuilt with 43=Y and 122.
fn records_resend(c: &Connection, seq: u32) -> Option<Vec<u8>> {
    c.stream.runs.iter().find_map(|r| match r {
        Run::Opaque { seq: s, id, .. } if *s == seq => records(&c.compact[*id])
            .next()
            .and_then(Result::ok)
            .map(|m| rebuild(&m, Some(Resend { sending_time: None }))),
        _ => None,
    })
}

enum Chunk<'a> {
    Bytes(&'a [u8]),
    Rebuilt(Vec<u8>),
    Missing(u32, u32),
}

fn items_or_bytes(c: &Connection) -> Vec<Chunk<'_>> {
    c.stream
        .runs
        .iter()
        .filter_map(|r| match r {
            Run::Bytes { data, .. } => Some(Chunk::Bytes(data)),
            Run::Opaque {
                seq,
                len,
                id,
                whole,
            } => match records(&c.compact[*id]).next().and_then(Result::ok) {
                Some(m) if *whole => Some(Chunk::Rebuilt(rebuild(&m, None))),
                _ => Some(Chunk::Missing(*seq, *len)),
            },
            Run::Hole { .. } => None,
        })
        .collect()
}

/// `journal export DIR --flow F [--decode fix]` and `recover DIR --flow F --decode fix`:
/// 0 clean, 1 holes, conflicts, bytes that are not FIX, or damage (named on stderr),
/// 2 usage or an unreadable directory.
pub fn flow_command(args: &[String], recover: bool) -> i32 {
    let usage = if recover { RECOVER_USAGE } else { EXPORT_USAGE };
    let opts = match FlowOpts::parse(args, usage) {
        Ok(o) if recover && !o.decode_fix => {
            eprintln!("taphold-backup: recover needs --decode fix\n{usage}");
            return 2;
        }
        Ok(o) => o,
        Err(e) => {
            eprintln!("taphold-backup: {e}");
            return 2;
        }
    };
    let what = if recover { "recover" } else { "journal export" };
    let rep = match run_flow(&opts, recover) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("taphold-backup: {what} {}: {e}", opts.dir.display());
            return 2;
        }
    };
    for p in rep.problems.iter().chain(&rep.bad).chain(&rep.conflicts) {
        eprintln!("taphold-backup: {what}: {p}");
    }
    for h in &rep.holes {
        eprintln!("taphold-backup: {what}: hole: {h}");
    }
    if opts.decode_fix {
        eprintln!(
            "flow {}: {} connection(s), {} FIX message(s) ({} rebuilt from compact records){}; {} stretch(es) not FIX; holes: [{}]; {} conflict(s)",
            opts.flow,
            rep.connections,
            rep.messages,
            rep.rebuilt,
            if recover {
                format!(", {} acknowledged by the exchange, {} not", rep.acknowledged, rep.unacknowledged)
            } else {
                String::new()
            },
            rep.bad.len(),
            rep.holes.join(", "),
            rep.conflicts.len()
        );
    } else {
        eprintln!(
            "flow {}: {} connection(s), {} bytes written ({} compact message(s) rebuilt, not byte-identical); holes: [{}]; {} conflict(s)",
            opts.flow,
            rep.connections,
            rep.bytes_written,
            rep.rebuilt,
            rep.holes.join(", "),
            rep.conflicts.len()
        );
    }
    let clean = rep.problems.is_empty()
        && rep.bad.is_empty()
        && rep.holes.is_empty()
        && rep.conflicts.is_empty();
    i32::from(!clean)
}

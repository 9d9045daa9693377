//! FIX as the live lab reads it: a tag=value message checked the way a FIX
//! engine checks it (BeginString first, BodyLength second, CheckSum last and
//! right), and the two message logs QuickFIX writes — the screen log of its
//! example executor (the lab's exchange) and the file log of our initiator
//! (the lab's trading engine). The gateway tests compare what the engine sent
//! with what the exchange received, message by message and byte by byte.
//!
//! Pure: no process, no file. tests/common/fix.rs runs the two ends.

use std::fmt;

/// The FIX field delimiter.
pub const SOH: u8 = 0x01;

/// Why bytes are not one well-formed FIX message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixError {
    /// A field is not `tag=value` with a decimal tag, or does not end in SOH.
    BadField { at: usize },
    /// The first field is not BeginString (8).
    NoBeginString,
    /// The second field is not a decimal BodyLength (9).
    NoBodyLength,
    /// The last field is not a three-digit CheckSum (10).
    NoCheckSum,
    /// BodyLength disagrees with the bytes between it and the CheckSum field.
    BodyLength { declared: usize, actual: usize },
    /// CheckSum disagrees with the byte sum (mod 256) before it.
    CheckSum { declared: u8, computed: u8 },
}

impl fmt::Display for FixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixError::BadField { at } => write!(f, "malformed field at byte {at}"),
            FixError::NoBeginString => write!(f, "first field is not BeginString (8)"),
            FixError::NoBodyLength => write!(f, "second field is not BodyLength (9)"),
            FixError::NoCheckSum => write!(f, "last field is not a CheckSum (10=NNN)"),
            FixError::BodyLength { declared, actual } => {
                write!(f, "BodyLength {declared}, body has {actual} bytes")
            }
            FixError::CheckSum { declared, computed } => {
                write!(f, "CheckSum {declared:03}, computed {computed:03}")
            }
        }
    }
}

impl std::error::Error for FixError {}

/// One FIX message: its bytes as they were on the wire and its fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub raw: Vec<u8>,
    pub fields: Vec<(u32, String)>,
}

impl Message {
    /// Parses and checks exactly one message (the bytes must end with the
    /// CheckSum field's SOH).
    pub fn parse(raw: &[u8]) -> Result<Message, FixError> {
        let mut fields = Vec::new();
        // Byte offset where each field starts, for BodyLength and CheckSum.
        let mut starts = Vec::new();
        let mut at = 0;
        while at < raw.len() {
            let end = raw[at..]
                .iter()
                .position(|&b| b == SOH)
                .map(|i| at + i)
                .ok_or(FixError::BadField { at })?;
            let field = &raw[at..end];
            let eq = field
                .iter()
                .position(|&b| b == b'=')
                .ok_or(FixError::BadField { at })?;
            let tag = std::str::from_utf8(&field[..eq])
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u32>().ok())
                .ok_or(FixError::BadField { at })?;
            fields.push((tag, String::from_utf8_lossy(&field[eq + 1..]).into_owned()));
            starts.push(at);
            at = end + 1;
        }
        if fields.first().map(|f| f.0) != Some(8) {
            return Err(FixError::NoBeginString);
        }
        let declared_len = match fields.get(1) {
            Some((9, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                v.parse::<usize>().map_err(|_| FixError::NoBodyLength)?
            }
            _ => return Err(FixError::NoBodyLength),
        };
        let declared_sum = match fields.last() {
            Some((10, v)) if v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()) => {
                v.parse::<u16>()
                    .ok()
                    .filter(|s| *s < 256)
                    .ok_or(FixError::NoCheckSum)? as u8
            }
            _ => return Err(FixError::NoCheckSum),
        };
        if fields.len() < 3 {
            return Err(FixError::NoCheckSum);
        }
        let checksum_at = *starts.last().unwrap();
        let body = checksum_at - starts[2];
        if body != declared_len {
            return Err(FixError::BodyLength {
                declared: declared_len,
                actual: body,
            });
        }
        let computed = raw[..checksum_at]
            .iter()
            .fold(0u8, |s, &b| s.wrapping_add(b));
        if computed != declared_sum {
            return Err(FixError::CheckSum {
                declared: declared_sum,
                computed,
            });
        }
        Ok(Message {
            raw: raw.to_vec(),
            fields,
        })
    }

    /// The first value of `tag` (header, body or trailer).
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.0 == tag)
            .map(|f| f.1.as_str())
    }

    /// MsgType (35).
    pub fn msg_type(&self) -> Option<&str> {
        self.get(35)
    }

    /// MsgSeqNum (34).
    pub fn seq(&self) -> Option<u64> {
        self.get(34).and_then(|v| v.parse().ok())
    }

    /// SenderCompID (49).
    pub fn sender(&self) -> Option<&str> {
        self.get(49)
    }

    /// ClOrdID (11).
    pub fn clordid(&self) -> Option<&str> {
        self.get(11)
    }

    /// The message with SOH shown as `|`, for failure messages.
    pub fn show(&self) -> String {
        show(&self.raw)
    }
}

/// Bytes with SOH shown as `|`.
pub fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace('\u{1}', "|")
}

/// Which way a logged message went, as the logging side saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// One message of a QuickFIX screen log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// QuickFIX's UTC timestamp, as logged.
    pub time: String,
    /// The session, e.g. `FIX.4.2:EXCHANGE->ENGINE`.
    pub session: String,
    pub direction: Direction,
    pub message: Message,
}

/// A QuickFIX `ScreenLog` (what the example executor prints on stdout): each
/// entry a `<TIME, SESSION, incoming|outgoing|event>` line and its value on
/// the next line as `  (VALUE)`. Returns the messages, in log order; events
/// and other lines (the executor's "Type Ctrl-C to quit") are skipped. A
/// message that fails `Message::parse`, or an entry cut short, is an error
/// naming its line.
pub fn parse_screen_log(text: &[u8]) -> Result<Vec<Logged>, String> {
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(head) = line
            .strip_prefix(b"<")
            .and_then(|l| l.strip_suffix(b">"))
            .map(String::from_utf8_lossy)
        else {
            continue;
        };
        let parts: Vec<&str> = head.splitn(3, ", ").collect();
        if parts.len() != 3 {
            continue;
        }
        let direction = match parts[2] {
            "incoming" => Direction::Incoming,
            "outgoing" => Direction::Outgoing,
            _ => continue,
        };
        let value = lines
            .get(i)
            .and_then(|l| l.strip_prefix(b"  ("))
            .and_then(|l| l.strip_suffix(b")"))
            .ok_or_else(|| format!("line {}: {} entry without its message", i, parts[2]))?;
        let message =
            Message::parse(value).map_err(|e| format!("line {}: {e}: {}", i + 1, show(value)))?;
        i += 1;
        out.push(Logged {
            time: parts[0].to_string(),
            session: parts[1].to_string(),
            direction,
            message,
        });
    }
    Ok(out)
}

/// A QuickFIX `FileLog` messages log (`*.messages.current.log`): one
/// `TIME : MESSAGE` line per message, both directions (tell them apart by
/// SenderCompID). Blank lines are skipped; anything else malformed is an
/// error naming its line.
pub fn parse_file_log(text: &[u8]) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let sep = line
            .windows(3)
            .position(|w| w == b" : ")
            .ok_or_else(|| format!("line {}: no ` : ` after the time", n + 1))?;
        let value = &line[sep + 3..];
        out.push(
            Message::parse(value).map_err(|e| format!("line {}: {e}: {}", n + 1, show(value)))?,
        );
    }
    Ok(out)
}

/// One direction of a TCP flow's byte stream from its segments
/// `(sequence number, payload)` in any order, repeated or overlapping (as a
/// backup node journals them: retransmissions included). Sequence numbers are
/// taken relative to the first segment's, modulo 2^32, so a stream across
/// the wrap reassembles; the stream starts at the lowest. Overlaps must agree
/// byte for byte. A hole is an error naming where.
pub fn reassemble(segments: &[(u32, &[u8])]) -> Result<Vec<u8>, String> {
    let Some(&(base, _)) = segments.first() else {
        return Ok(Vec::new());
    };
    // Offsets from the first segment, as signed distances within ±2^31.
    let mut parts: Vec<(i64, &[u8])> = segments
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|&(seq, p)| (seq.wrapping_sub(base) as i32 as i64, p))
        .collect();
    parts.sort_by_key(|p| p.0);
    let Some(&(start, _)) = parts.first() else {
        return Ok(Vec::new());
    };
    let mut out: Vec<u8> = Vec::new();
    for (off, p) in parts {
        let at = (off - start) as usize;
        if at > out.len() {
            return Err(format!(
                "hole of {} bytes at stream offset {} (TCP seq {})",
                at - out.len(),
                out.len(),
                base.wrapping_add((start + out.len() as i64) as u32)
            ));
        }
        let overlap = (out.len() - at).min(p.len());
        if out[at..at + overlap] != p[..overlap] {
            return Err(format!(
                "segment at stream offset {at} disagrees with bytes already seen"
            ));
        }
        out.extend_from_slice(&p[overlap..]);
    }
    Ok(out)
}

/// A FIX byte stream split into its messages, each checked as
/// `Message::parse` does. Each message's length comes from its BodyLength;
/// a stream that ends inside a message, or a message that does not check,
/// is an error naming the stream offset.
pub fn split_stream(stream: &[u8]) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let rest = &stream[at..];
        // "8=...<SOH>9=NNN<SOH>": the body starts after the second SOH.
        let fields: Vec<usize> = rest
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == SOH)
            .map(|(i, _)| i)
            .take(2)
            .collect();
        if fields.len() < 2 || !rest.starts_with(b"8=") || !rest[fields[0] + 1..].starts_with(b"9=")
        {
            return Err(format!("stream offset {at}: no BeginString and BodyLength"));
        }
        let body_len: usize = std::str::from_utf8(&rest[fields[0] + 3..fields[1]])
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("stream offset {at}: bad BodyLength"))?;
        // The trailer is "10=NNN<SOH>": 7 bytes.
        let len = fields[1] + 1 + body_len + 7;
        if rest.len() < len {
            return Err(format!(
                "stream offset {at}: message of {len} bytes cut at {}",
                rest.len()
            ));
        }
        out.push(
            Message::parse(&rest[..len])
                .map_err(|e| format!("stream offset {at}: {e}: {}", show(&rest[..len])))?,
        );
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with correct BodyLength and CheckSum around `body`
    /// (`|` for SOH, from MsgType on).
    fn build(body: &str) -> Vec<u8> {
        let body = body.replace('|', "\u{1}");
        let mut m = format!("8=FIX.4.2\u{1}9={}\u{1}{body}", body.len()).into_bytes();
        let sum = m.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        m.extend_from_slice(format!("10={sum:03}\u{1}").as_bytes());
        m
    }

    // Verbatim from the executor's screen log in the lab (SOH as |).
    const LOGON: &str = "8=FIX.4.2|9=69|35=A|34=1|49=ENGINE|52=20261130-07:41:01.282|56=EXCHANGE|98=0|108=30|10=244|";
    const ORDER: &str = "8=FIX.4.2|9=136|35=D|34=2|49=ENGINE|52=20261130-07:41:01.283|56=EXCHANGE|11=O00000001|21=1|38=110|40=2|44=101.01|54=1|55=MSFT|59=0|60=20261130-07:41:01|10=186|";

    fn soh(s: &str) -> Vec<u8> {
        s.replace('|', "\u{1}").into_bytes()
    }

    #[test]
    fn real_quickfix_messages_parse() {
        let m = Message::parse(&soh(ORDER)).unwrap();
        assert_eq!(m.msg_type(), Some("D"));
        assert_eq!(m.seq(), Some(2));
        assert_eq!(m.clordid(), Some("O00000001"));
        assert_eq!(m.sender(), Some("ENGINE"));
        assert_eq!(m.get(44), Some("101.01"));
        assert_eq!(m.get(999), None);
        assert_eq!(m.fields.len(), 17);
        assert_eq!(m.show(), ORDER);
        let l = Message::parse(&soh(LOGON)).unwrap();
        assert_eq!((l.msg_type(), l.seq()), (Some("A"), Some(1)));
    }

    #[test]
    fn built_messages_round_trip() {
        for body in ["35=0|34=7|", "35=D|34=1|11=x=y|", "35=8|34=99999|58=a b c|"] {
            let raw = build(body);
            let m = Message::parse(&raw).unwrap();
            assert_eq!(m.raw, raw);
        }
        // `=` inside a value belongs to the value.
        assert_eq!(
            Message::parse(&build("35=D|11=x=y|")).unwrap().clordid(),
            Some("x=y")
        );
    }

    #[test]
    fn every_defect_is_named() {
        let good = soh(ORDER);
        // One byte of the body changed: the checksum no longer agrees.
        let mut bad = good.clone();
        let i = bad.windows(9).position(|w| w == b"O00000001").unwrap();
        bad[i + 8] = b'2';
        assert_eq!(
            Message::parse(&bad),
            Err(FixError::CheckSum {
                declared: 186,
                computed: 187
            })
        );
        // A field dropped: BodyLength disagrees.
        let short = soh(&ORDER.replace("59=0|", ""));
        assert!(matches!(
            Message::parse(&short),
            Err(FixError::BodyLength {
                declared: 136,
                actual: 131
            })
        ));
        // Truncated: the last field has no SOH.
        assert_eq!(
            Message::parse(&good[..good.len() - 1]),
            Err(FixError::BadField { at: good.len() - 7 })
        );
        assert_eq!(
            Message::parse(&good[..good.len() - 7]),
            Err(FixError::NoCheckSum)
        );
        assert_eq!(
            Message::parse(&soh("9=5|8=FIX.4.2|10=000|")),
            Err(FixError::NoBeginString)
        );
        assert_eq!(
            Message::parse(&soh("8=FIX.4.2|35=0|10=000|")),
            Err(FixError::NoBodyLength)
        );
        assert_eq!(
            Message::parse(&soh("8=FIX.4.2|9=x|10=000|")),
            Err(FixError::NoBodyLength)
        );
        assert_eq!(
            Message::parse(&soh("8=FIX.4.2|9=0|10=1000|")),
            Err(FixError::NoCheckSum)
        );
        assert_eq!(
            Message::parse(&soh("8=FIX.4.2|9=0|10=256|")),
            Err(FixError::NoCheckSum)
        );
        assert_eq!(
            Message::parse(&soh("8=FIX.4.2|x9=0|10=000|")),
            Err(FixError::BadField { at: 10 })
        );
        assert_eq!(
            Message::parse(&soh("8=FIX.4.2|=0|10=000|")),
            Err(FixError::BadField { at: 10 })
        );
        assert_eq!(Message::parse(b""), Err(FixError::NoBeginString));
        assert!(FixError::CheckSum {
            declared: 1,
            computed: 2
        }
        .to_string()
        .contains("CheckSum 001, computed 002"));
    }

    #[test]
    fn screen_log_keeps_messages_and_directions_skips_events() {
        let log = format!(
            "<20261130-07:41:00.780207000, FIX.4.2:EXCHANGE->ENGINE, event>\n  (Created session)\n\
             Type Ctrl-C to quit\n\
             <20261130-07:41:01.282659000, FIX.4.2:EXCHANGE->ENGINE, incoming>\n  ({})\n\
             <20261130-07:41:01.282677000, FIX.4.2:EXCHANGE->ENGINE, event>\n  (Received logon request (with parentheses))\n\
             <20261130-07:41:01.282779000, FIX.4.2:EXCHANGE->ENGINE, outgoing>\n  ({})\n",
            LOGON.replace('|', "\u{1}"),
            ORDER.replace('|', "\u{1}"),
        );
        let got = parse_screen_log(log.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].direction, Direction::Incoming);
        assert_eq!(got[0].session, "FIX.4.2:EXCHANGE->ENGINE");
        assert_eq!(got[0].time, "20261130-07:41:01.282659000");
        assert_eq!(got[0].message.msg_type(), Some("A"));
        assert_eq!(got[1].direction, Direction::Outgoing);
        assert_eq!(got[1].message.clordid(), Some("O00000001"));
    }

    #[test]
    fn screen_log_defects_are_errors_with_the_line() {
        let cut = "<T, S, incoming>\n";
        assert!(parse_screen_log(cut.as_bytes())
            .unwrap_err()
            .contains("incoming entry without its message"));
        let bad = format!(
            "x\n<T, S, outgoing>\n  ({})\n",
            ORDER.replace('|', "\u{1}").replace("MSFT", "MSFX")
        );
        let e = parse_screen_log(bad.as_bytes()).unwrap_err();
        assert!(e.starts_with("line 3: CheckSum"), "{e}");
    }

    #[test]
    fn stream_reassembles_out_of_order_retransmitted_and_across_the_wrap() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let base = u32::MAX - 300; // the stream crosses 2^32
        let seg = |from: usize, to: usize| (base.wrapping_add(from as u32), &data[from..to]);
        // Out of order, a retransmission, an overlap, a pure ACK (empty).
        let segs = [
            seg(100, 400),
            seg(0, 100),
            seg(400, 1000),
            seg(100, 400),
            seg(350, 500),
            (base.wrapping_add(1000), &[][..]),
        ];
        assert_eq!(reassemble(&segs).unwrap(), data);
        // The first segment listed need not be the stream's first.
        assert_eq!(reassemble(&segs[..3]).unwrap(), data);
        assert_eq!(reassemble(&[]).unwrap(), Vec::<u8>::new());
        let e = reassemble(&[seg(0, 100), seg(150, 200)]).unwrap_err();
        assert!(
            e.starts_with("hole of 50 bytes at stream offset 100"),
            "{e}"
        );
        let other = [9u8; 50];
        let e = reassemble(&[seg(0, 100), (base.wrapping_add(60), &other[..])]).unwrap_err();
        assert!(e.contains("disagrees"), "{e}");
    }

    #[test]
    fn stream_splits_into_checked_messages() {
        let (a, b) = (soh(LOGON), soh(ORDER));
        let stream = [a.clone(), b.clone(), a.clone()].concat();
        let got = split_stream(&stream).unwrap();
        assert_eq!(
            got.iter().map(|m| m.raw.clone()).collect::<Vec<_>>(),
            vec![a.clone(), b.clone(), a.clone()]
        );
        let e = split_stream(&stream[..stream.len() - 3]).unwrap_err();
        assert!(
            e.starts_with(&format!("stream offset {}: message", a.len() + b.len())),
            "{e}"
        );
        let mut bad = stream.clone();
        bad[a.len() + 30] ^= 1;
        assert!(split_stream(&bad).unwrap_err().contains("CheckSum"));
        assert!(split_stream(b"junk")
            .unwrap_err()
            .contains("no BeginString"));
        assert!(split_stream(&[]).unwrap().is_empty());
    }

    #[test]
    fn file_log_lines() {
        let log = format!(
            "20261130-07:41:24.377633000 : {}\n\n20261130-07:41:24.377850000 : {}\n",
            LOGON.replace('|', "\u{1}"),
            ORDER.replace('|', "\u{1}")
        );
        let got = parse_file_log(log.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].seq(), Some(2));
        assert_eq!(
            parse_file_log(b"garbage\n").unwrap_err(),
            "line 1: no ` : ` after the time"
        );
        assert!(parse_file_log(b"T : 8=FIX.4.2\x01")
            .unwrap_err()
            .starts_with("line 1: second field"));
    }
}

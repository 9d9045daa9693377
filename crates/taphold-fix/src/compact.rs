//! The compact FIX encoding of content mode 3 (`fix-compact`, seed 000 ¶25-26): per FIX
//! message only what recreates a substitute message. Layout (docs/protocol.md, "The
//! compact FIX encoding"): one record per message, in stream order —
//! `orig_len u16 | fields_len u16 | (tag u8, len u8, value)*` — big-endian.
//!
//! [`encode_compact`] runs on the appliance's worker for every protected segment: it
//! allocates nothing, and refuses a segment that is not whole FIX messages (the appliance
//! then sends mode 2, counted as `fix_compact_fallback`). [`CompactRecords`] reads the
//! records back on the backup node and [`rebuild`] makes valid FIX messages of them.

use core::fmt;

use crate::frame::{checksum, FrameError, Message, Summary, SOH};

/// Tags kept, besides BeginString(8): what recreates the message (MsgType, MsgSeqNum,
/// ClOrdID, Side, Symbol, OrderQty, Price, OrdType, TimeInForce, SendingTime), what a
/// valid message needs (SenderCompID, TargetCompID), and what marks a resend
/// (PossDupFlag, OrigSendingTime).
pub const KEPT_TAGS: [u32; 15] = [8, 35, 34, 11, 54, 55, 38, 44, 40, 59, 52, 49, 56, 43, 122];

/// Header fields of a rebuilt message after 8 and 9, in this order (FIX's standard
/// header order); every other kept field follows in the original's order.
const HEADER_ORDER: [u8; 7] = [35, 49, 56, 34, 43, 52, 122];

/// Bytes of a record before its fields.
pub const RECORD_HEADER_LEN: usize = 4;

/// Why a segment has no compact encoding, or compact bytes do not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompactError {
    /// The segment is not whole FIX messages back to back (the first fault found); the
    /// appliance sends it in mode 2.
    NotWhole(FrameError),
    /// An empty segment: nothing to encode.
    Empty,
    /// A message longer than 65535 bytes, or a kept value longer than 255.
    TooLong,
    /// `out` is too small for the encoding.
    NoRoom,
    /// Compact bytes that are not records as the layout says (reading only).
    Malformed,
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::NotWhole(e) => write!(f, "not whole FIX messages: {e}"),
            CompactError::Empty => f.write_str("empty segment"),
            CompactError::TooLong => f.write_str("a FIX message or kept value too long"),
            CompactError::NoRoom => f.write_str("output buffer too small"),
            CompactError::Malformed => f.write_str("malformed compact record"),
        }
    }
}

impl std::error::Error for CompactError {}

/// Bit `t` set for each kept tag `t` (all below 128): one test per field on the hot path.
const KEPT_MASK: u128 = {
    let mut m = 0u128;
    let mut i = 0;
    while i < KEPT_TAGS.len() {
        m |= 1 << KEPT_TAGS[i];
        i += 1;
    }
    m
};

fn kept(tag: u32) -> bool {
    tag < 128 && KEPT_MASK >> tag & 1 == 1
}

/// Writes `bytes` at `out[*w..]`, advancing `w`.
fn put(out: &mut [u8], w: &mut usize, bytes: &[u8]) -> Result<(), CompactError> {
    let end = w.checked_add(bytes.len()).ok_or(CompactError::NoRoom)?;
    out.get_mut(*w..end)
        .ok_or(CompactError::NoRoom)?
        .copy_from_slice(bytes);
    *w = end;
    Ok(())
}

fn put_field(out: &mut [u8], w: &mut usize, tag: u32, value: &[u8]) -> Result<(), CompactError> {
    let len = u8::try_from(value.len()).map_err(|_| CompactError::TooLong)?;
    // kept() only passes tags ≤ 122.
    put(out, w, &[tag as u8, len])?;
    put(out, w, value)
}

/// Writes the kept fields of a checked message body, in order: one pass over the bytes
/// (the same fields as [`Message::fields`] yields: a field that is not `digits=value`
/// is skipped).
fn put_kept_fields(body: &[u8], out: &mut [u8], w: &mut usize) -> Result<(), CompactError> {
    let mut i = 0;
    while i < body.len() {
        let mut tag = 0u32;
        let mut j = i;
        while j < body.len() && j - i < 9 && body[j].is_ascii_digit() {
            tag = tag * 10 + u32::from(body[j] - b'0');
            j += 1;
        }
        let well_formed = j > i && body.get(j) == Some(&b'=');
        let value_at = if well_formed { j + 1 } else { j };
        let end = body[value_at..]
            .iter()
            .position(|&b| b == SOH)
            .map_or(body.len(), |p| value_at + p);
        if well_formed && kept(tag) {
            put_field(out, w, tag, &body[value_at..end])?;
        }
        i = end + 1;
    }
    Ok(())
}

/// The compact encoding of `segment` (a TCP segment's payload) into `out`; returns its
/// length. Refuses a segment that is not whole FIX messages (`NotWhole`, with the first
/// fault), an empty one, one with a message over 65535 bytes or a kept value over 255
/// (`TooLong`), and an `out` too small (`NoRoom`). Allocates nothing; on error `out`
/// holds garbage.
///
/// The encoding is always shorter than the segment (per message the 4-byte record
/// header costs less than BodyLength and CheckSum save, and each kept field's 2-byte
/// tag and length no more than its `tag=` and SOH), so an `out` of `segment.len()`
/// bytes always has room.
pub fn encode_compact(segment: &[u8], out: &mut [u8]) -> Result<usize, CompactError> {
    if segment.is_empty() {
        return Err(CompactError::Empty);
    }
    let mut at = 0;
    let mut w = 0;
    while at < segment.len() {
        let m = Message::parse_at(&segment[at..]).map_err(|e| match e {
            // A cut message at the start is garbage-free but not whole.
            FrameError::Garbage => CompactError::NotWhole(FrameError::Garbage),
            e => CompactError::NotWhole(e),
        })?;
        let orig_len = u16::try_from(m.len()).map_err(|_| CompactError::TooLong)?;
        let start = w;
        put(out, &mut w, &[0; RECORD_HEADER_LEN])?;
        put_field(out, &mut w, 8, m.begin_string())?;
        put_kept_fields(m.body(), out, &mut w)?;
        let fields_len =
            u16::try_from(w - start - RECORD_HEADER_LEN).map_err(|_| CompactError::TooLong)?;
        out[start..start + 2].copy_from_slice(&orig_len.to_be_bytes());
        out[start + 2..start + 4].copy_from_slice(&fields_len.to_be_bytes());
        at += m.len();
    }
    Ok(w)
}

/// Reads the records of a compact content, in order.
pub fn records(content: &[u8]) -> CompactRecords<'_> {
    CompactRecords { rest: content }
}

/// The iterator of [`records`]: each record, or `Malformed` (then nothing more).
#[derive(Debug, Clone)]
pub struct CompactRecords<'a> {
    rest: &'a [u8],
}

impl<'a> CompactRecords<'a> {
    /// The records of `content`.
    pub fn new(content: &'a [u8]) -> CompactRecords<'a> {
        records(content)
    }
}

impl<'a> Iterator for CompactRecords<'a> {
    type Item = Result<CompactMessage<'a>, CompactError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        let bad = |s: &mut Self| {
            s.rest = &[];
            Some(Err(CompactError::Malformed))
        };
        if r.len() < RECORD_HEADER_LEN {
            return bad(self);
        }
        let orig_len = u16::from_be_bytes([r[0], r[1]]);
        let fields_len = usize::from(u16::from_be_bytes([r[2], r[3]]));
        let Some(fields) = r.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + fields_len) else {
            return bad(self);
        };
        // Every field must be whole and of a kept tag; BeginString first.
        let m = CompactMessage { orig_len, fields };
        let mut n = 0;
        let mut ok = true;
        let mut it = FieldIter { rest: fields };
        for f in &mut it {
            match f {
                Some((tag, _)) if kept(u32::from(tag)) && (n > 0 || tag == 8) => n += 1,
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok || n == 0 || orig_len == 0 {
            return bad(self);
        }
        self.rest = &r[RECORD_HEADER_LEN + fields_len..];
        Some(Ok(m))
    }
}

/// One FIX message in compact form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactMessage<'a> {
    /// Its length in the byte stream (the original's).
    pub orig_len: u16,
    fields: &'a [u8],
}

struct FieldIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for FieldIter<'a> {
    /// `None` inside: a field cut short.
    type Item = Option<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 2 {
            self.rest = &[];
            return Some(None);
        }
        let (tag, len) = (self.rest[0], usize::from(self.rest[1]));
        match self.rest.get(2..2 + len) {
            Some(v) => {
                self.rest = &self.rest[2 + len..];
                Some(Some((tag, v)))
            }
            None => {
                self.rest = &[];
                Some(None)
            }
        }
    }
}

impl<'a> CompactMessage<'a> {
    /// The kept fields, `(tag, value)`, BeginString first, then in the original's order.
    pub fn fields(&self) -> impl Iterator<Item = (u32, &'a [u8])> + 'a {
        FieldIter { rest: self.fields }
            .flatten()
            .map(|(t, v)| (u32::from(t), v))
    }

    /// The first value of `tag`.
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        self.fields().find(|&(t, _)| t == tag).map(|(_, v)| v)
    }

    /// The fields the node reports, as of the original message.
    pub fn summary(&self) -> Summary<'a> {
        let mut s = Summary::default();
        for (tag, v) in self.fields() {
            let slot = match tag {
                8 => {
                    s.begin_string = v;
                    continue;
                }
                35 => &mut s.msg_type,
                34 => &mut s.msg_seq_num_raw,
                49 => &mut s.sender_comp_id,
                56 => &mut s.target_comp_id,
                11 => &mut s.cl_ord_id,
                54 => &mut s.side,
                55 => &mut s.symbol,
                38 => &mut s.order_qty,
                44 => &mut s.price,
                40 => &mut s.ord_type,
                59 => &mut s.time_in_force,
                52 => &mut s.sending_time,
                43 => &mut s.poss_dup_flag,
                122 => &mut s.orig_sending_time,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        }
        s
    }
}

/// How to rebuild a message for a resend by the firm's FIX engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resend<'a> {
    /// The new SendingTime(52); `None` keeps the original's.
    pub sending_time: Option<&'a [u8]>,
}

/// A valid FIX message (BodyLength and CheckSum computed) from compact record `m`:
/// `8=..|9=..|35=|49=|56=|34=|43=|52=|122=|` (those the original had), the other kept
/// fields in the original's order, `10=..|`. With `resend`: PossDupFlag(43)=Y,
/// OrigSendingTime(122) = the original's 122 if it had one, else its SendingTime, and
/// SendingTime(52) = `resend.sending_time` if given.
pub fn rebuild(m: &CompactMessage<'_>, resend: Option<Resend<'_>>) -> Vec<u8> {
    let mut body = Vec::with_capacity(usize::from(m.orig_len));
    let field = |body: &mut Vec<u8>, tag: u32, v: &[u8]| {
        body.extend_from_slice(tag.to_string().as_bytes());
        body.push(b'=');
        body.extend_from_slice(v);
        body.push(SOH);
    };
    let original_52 = m.get(52);
    for tag in HEADER_ORDER {
        let tag = u32::from(tag);
        let value = match (tag, resend) {
            (43, Some(_)) => Some(&b"Y"[..]),
            (
                52,
                Some(Resend {
                    sending_time: Some(t),
                }),
            ) => Some(t),
            (122, Some(_)) => m.get(122).or(original_52),
            _ => m.get(tag),
        };
        if let Some(v) = value {
            field(&mut body, tag, v);
        }
    }
    for (tag, v) in m.fields() {
        if tag != 8 && !HEADER_ORDER.iter().any(|&h| u32::from(h) == tag) {
            field(&mut body, tag, v);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(b"8=");
    out.extend_from_slice(m.get(8).unwrap_or(b"FIX.4.2"));
    out.push(SOH);
    out.extend_from_slice(format!("9={}", body.len()).as_bytes());
    out.push(SOH);
    out.extend_from_slice(&body);
    let ck = checksum(&out);
    out.extend_from_slice(format!("10={ck:03}").as_bytes());
    out.push(SOH);
    out
}

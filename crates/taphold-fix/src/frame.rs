//! FIX tag=value framing: one message is `8=BeginString<SOH>9=BodyLength<SOH>` ...
//! `10=CheckSum<SOH>`, where BodyLength counts the bytes after the SOH that ends field 9
//! up to and including the SOH before `10=`, and CheckSum is the sum of every byte before
//! `10=`, modulo 256, as three digits.
//!
//! [`Message::parse_at`] reads one message at the start of a buffer; [`split`] walks a
//! byte stream and yields each message or each stretch it could not read, by name
//! ([`FrameError`]), resynchronising on the next `8=FIX`. Nothing here allocates.

use core::fmt;
use core::ops::Range;

/// The FIX field separator.
pub const SOH: u8 = 0x01;

/// `10=NNN<SOH>`: the checksum field is always 7 bytes.
const CHECKSUM_FIELD_LEN: usize = 7;

/// Why bytes of a stream are not a FIX message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// Bytes that do not start with `8=` (before the first message, between messages).
    Garbage,
    /// The buffer ends before the message does (its header or the length it claims).
    Truncated,
    /// BodyLength(9) missing as the second field, not a number, or the body it claims
    /// does not end right before `10=`.
    BadBodyLength,
    /// CheckSum(10) not three digits, or not the sum of the bytes before it.
    BadCheckSum,
}

impl FrameError {
    /// The error's name, as the node prints it.
    pub fn name(self) -> &'static str {
        match self {
            FrameError::Garbage => "garbage",
            FrameError::Truncated => "truncated",
            FrameError::BadBodyLength => "bad_body_length",
            FrameError::BadCheckSum => "bad_checksum",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::Garbage => "bytes that are not a FIX message (no 8= where one starts)",
            FrameError::Truncated => "the bytes end before the FIX message does",
            FrameError::BadBodyLength => "BodyLength(9) missing or wrong",
            FrameError::BadCheckSum => "CheckSum(10) missing or wrong",
        })
    }
}

impl std::error::Error for FrameError {}

/// The FIX checksum of `bytes`: their sum modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    // Summed in u32 lanes (vectorised), reduced at the end: a u8 fold is one long chain.
    bytes.iter().map(|&b| u32::from(b)).sum::<u32>() as u8
}

/// A decimal number of 1..=9 digits, nothing else.
fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// One FIX message, checked: BeginString, BodyLength and CheckSum are right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    raw: &'a [u8],
    /// Where the body starts (after `9=...<SOH>`).
    body_start: usize,
}

impl<'a> Message<'a> {
    /// Reads the message at the start of `buf`. `Err(Garbage)` if `buf` does not start
    /// with `8=`, `Truncated` if it ends first, else `BadBodyLength` / `BadCheckSum`.
    pub fn parse_at(buf: &'a [u8]) -> Result<Message<'a>, FrameError> {
        if buf.len() < 2 {
            return Err(if b"8=".starts_with(buf) {
                FrameError::Truncated
            } else {
                FrameError::Garbage
            });
        }
        if &buf[..2] != b"8=" {
            return Err(FrameError::Garbage);
        }
        let bs_end = match buf.iter().position(|&b| b == SOH) {
            Some(i) => i,
            None => return Err(FrameError::Truncated),
        };
        if bs_end == 2 {
            return Err(FrameError::Garbage);
        }
        let rest = &buf[bs_end + 1..];
        // "9=" and its digits, then SOH.
        if rest.len() < 2 {
            return if b"9=".starts_with(rest) {
                Err(FrameError::Truncated)
            } else {
                Err(FrameError::BadBodyLength)
            };
        }
        if &rest[..2] != b"9=" {
            return Err(FrameError::BadBodyLength);
        }
        let bl_end = match rest.iter().position(|&b| b == SOH) {
            Some(i) => i,
            None if rest.len() > 11 || !rest[2..].iter().all(u8::is_ascii_digit) => {
                return Err(FrameError::BadBodyLength)
            }
            None => return Err(FrameError::Truncated),
        };
        let body_len = number(&rest[2..bl_end]).ok_or(FrameError::BadBodyLength)?;
        let body_start = bs_end + 1 + bl_end + 1;
        let body_end = usize::try_from(body_len)
            .ok()
            .and_then(|l| body_start.checked_add(l))
            .ok_or(FrameError::BadBodyLength)?;
        let total = body_end
            .checked_add(CHECKSUM_FIELD_LEN)
            .ok_or(FrameError::BadBodyLength)?;
        if buf.len() < total {
            // A body that ends where it says cannot be told from a wrong length until the
            // bytes are there; but a `10=` before the claimed end is a wrong length.
            return Err(FrameError::Truncated);
        }
        // The body must end with SOH (the last field's) and be followed by "10=".
        if body_len == 0 || buf[body_end - 1] != SOH || &buf[body_end..body_end + 3] != b"10=" {
            return Err(FrameError::BadBodyLength);
        }
        let ck = &buf[body_end + 3..total - 1];
        if buf[total - 1] != SOH || ck.len() != 3 || !ck.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadCheckSum);
        }
        let want = number(ck).ok_or(FrameError::BadCheckSum)?;
        if u64::from(checksum(&buf[..body_end])) != want {
            return Err(FrameError::BadCheckSum);
        }
        Ok(Message {
            raw: &buf[..total],
            body_start,
        })
    }

    /// The whole message, `8=` through the SOH after the checksum.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Its length in the byte stream.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Never: a message has at least its three fields.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// BeginString(8), e.g. `FIX.4.2`.
    pub fn begin_string(&self) -> &'a [u8] {
        let end = self.raw.iter().position(|&b| b == SOH).unwrap_or(2);
        &self.raw[2..end]
    }

    /// The body's bytes: after the SOH that ends BodyLength, through the SOH before
    /// `10=`.
    pub fn body(&self) -> &'a [u8] {
        &self.raw[self.body_start..self.raw.len() - CHECKSUM_FIELD_LEN]
    }

    /// The body's fields (after BodyLength, before CheckSum): `(tag, value)`, or `None`
    /// for a field that is not `digits=value` (it is skipped by [`Message::get`]).
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            rest: &self.raw[self.body_start..self.raw.len() - CHECKSUM_FIELD_LEN],
        }
    }

    /// The value of the first `tag` in the body.
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        self.fields()
            .flatten()
            .find(|&(t, _)| t == tag)
            .map(|(_, v)| v)
    }

    /// The fields the node reports.
    pub fn summary(&self) -> Summary<'a> {
        let mut s = Summary {
            begin_string: self.begin_string(),
            ..Summary::default()
        };
        for (tag, v) in self.fields().flatten() {
            let slot = match tag {
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

/// The fields of a message body, in order.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    /// `Some((tag, value))`, or `None` for a field that is not `digits=value`.
    type Item = Option<(u32, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == SOH)
            .unwrap_or(self.rest.len());
        let field = &self.rest[..end];
        self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
        let parsed = field.iter().position(|&b| b == b'=').and_then(|eq| {
            let tag = number(&field[..eq])?;
            Some((u32::try_from(tag).ok()?, &field[eq + 1..]))
        });
        Some(parsed)
    }
}

/// What the node reports of a FIX message (values as sent, `None` when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary<'a> {
    /// BeginString(8).
    pub begin_string: &'a [u8],
    /// MsgType(35).
    pub msg_type: Option<&'a [u8]>,
    /// MsgSeqNum(34) as sent; [`Summary::msg_seq_num`] reads it.
    pub msg_seq_num_raw: Option<&'a [u8]>,
    /// SenderCompID(49).
    pub sender_comp_id: Option<&'a [u8]>,
    /// TargetCompID(56).
    pub target_comp_id: Option<&'a [u8]>,
    /// ClOrdID(11).
    pub cl_ord_id: Option<&'a [u8]>,
    /// Side(54).
    pub side: Option<&'a [u8]>,
    /// Symbol(55).
    pub symbol: Option<&'a [u8]>,
    /// OrderQty(38).
    pub order_qty: Option<&'a [u8]>,
    /// Price(44).
    pub price: Option<&'a [u8]>,
    /// OrdType(40).
    pub ord_type: Option<&'a [u8]>,
    /// TimeInForce(59).
    pub time_in_force: Option<&'a [u8]>,
    /// SendingTime(52).
    pub sending_time: Option<&'a [u8]>,
    /// PossDupFlag(43).
    pub poss_dup_flag: Option<&'a [u8]>,
    /// OrigSendingTime(122).
    pub orig_sending_time: Option<&'a [u8]>,
}

impl Summary<'_> {
    /// MsgSeqNum(34) as a number.
    pub fn msg_seq_num(&self) -> Option<u64> {
        self.msg_seq_num_raw.and_then(number)
    }

    /// PossDupFlag(43) = Y.
    pub fn poss_dup(&self) -> bool {
        self.poss_dup_flag == Some(b"Y")
    }
}

/// What [`split`] finds in a byte stream: a message, or bytes it could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A checked message at `at` (offset in the buffer).
    Message { at: usize, message: Message<'a> },
    /// Bytes `range` that are not a message, and why (the first error at its start).
    Bad {
        range: Range<usize>,
        error: FrameError,
    },
}

/// Splits `buf` into FIX messages and the stretches that are not (garbage, a message with
/// a wrong BodyLength or CheckSum, a truncated tail), resynchronising after a bad stretch
/// on the next `8=FIX`. Every byte of `buf` is in exactly one piece, in order.
pub fn split(buf: &[u8]) -> Split<'_> {
    Split { buf, at: 0 }
}

/// The iterator of [`split`].
#[derive(Debug, Clone)]
pub struct Split<'a> {
    buf: &'a [u8],
    at: usize,
}

/// The next `8=FIX` at or after `from`, or the end.
fn resync(buf: &[u8], from: usize) -> usize {
    buf.get(from..)
        .and_then(|b| b.windows(5).position(|w| w == b"8=FIX"))
        .map_or(buf.len(), |i| from + i)
}

impl<'a> Iterator for Split<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        if self.at >= self.buf.len() {
            return None;
        }
        let at = self.at;
        match Message::parse_at(&self.buf[at..]) {
            Ok(message) => {
                self.at += message.len();
                Some(Piece::Message { at, message })
            }
            Err(FrameError::Truncated) => {
                // The bytes end before the length it claims. If another message starts
                // before the end, that length was wrong; otherwise the stream is cut.
                let next = resync(self.buf, at + 1);
                self.at = next;
                let error = if next < self.buf.len() {
                    FrameError::BadBodyLength
                } else {
                    FrameError::Truncated
                };
                Some(Piece::Bad {
                    range: at..next,
                    error,
                })
            }
            Err(error) => {
                let next = resync(self.buf, at + 1);
                self.at = next;
                Some(Piece::Bad {
                    range: at..next,
                    error,
                })
            }
        }
    }
}

//! A FIX message made ready for a resend by the firm's FIX engine: PossDupFlag(43)=Y and
//! OrigSendingTime(122), every other field kept as it was (the backup node's `recover`;
//! allocates).

use crate::frame::{checksum, Message, SOH};

/// `m` as a possible duplicate: 43=Y (replacing any 43), 122 = its own 122 if it had
/// one, else its SendingTime(52), placed right after MsgSeqNum(34) (or after the first
/// body field when it has no 34); SendingTime replaced by `sending_time` if given.
/// BodyLength and CheckSum recomputed.
pub fn poss_dup_copy(m: &Message<'_>, sending_time: Option<&[u8]>) -> Vec<u8> {
    let s = m.summary();
    let orig = s.orig_sending_time.or(s.sending_time);
    let mut body = Vec::with_capacity(m.len() + 40);
    let put = |body: &mut Vec<u8>, tag: u32, v: &[u8]| {
        body.extend_from_slice(tag.to_string().as_bytes());
        body.push(b'=');
        body.extend_from_slice(v);
        body.push(SOH);
    };
    let has_34 = s.msg_seq_num_raw.is_some();
    let mut inserted = false;
    for (i, f) in m.fields().enumerate() {
        let Some((tag, v)) = f else { continue };
        match tag {
            43 | 122 => continue,
            52 => put(&mut body, 52, sending_time.unwrap_or(v)),
            _ => put(&mut body, tag, v),
        }
        if !inserted && (tag == 34 || (!has_34 && i == 0)) {
            put(&mut body, 43, b"Y");
            if let Some(t) = orig {
                put(&mut body, 122, t);
            }
            inserted = true;
        }
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(b"8=");
    out.extend_from_slice(m.begin_string());
    out.push(SOH);
    out.extend_from_slice(format!("9={}", body.len()).as_bytes());
    out.push(SOH);
    out.extend_from_slice(&body);
    let ck = checksum(&out);
    out.extend_from_slice(format!("10={ck:03}").as_bytes());
    out.push(SOH);
    out
}

//! Realistic FIX messages, as QuickFIX 1.15 sends them (header: 8, 9, 35, then the other
//! header fields by tag; body fields by tag; `|` is SOH here).
#![allow(dead_code)]

/// A message from `fields` (after 8 and 9), with BodyLength and CheckSum computed.
pub fn make(begin: &str, fields: &str) -> Vec<u8> {
    let body = fields.replace('|', "\u{1}");
    let mut m = format!("8={begin}\u{1}9={}\u{1}{body}", body.len()).into_bytes();
    let ck = m.iter().fold(0u32, |a, &b| a + u32::from(b)) % 256;
    m.extend_from_slice(format!("10={ck:03}\u{1}").as_bytes());
    m
}

/// A Logon, literal (BodyLength 70, CheckSum 092 computed independently in Python).
pub const LOGON_42: &[u8] = b"8=FIX.4.2\x019=70\x0135=A\x0134=1\x0149=CLIENT1\x0152=20261130-07:38:47.123\x0156=EXECUTOR\x0198=0\x01108=30\x0110=092\x01";

pub fn new_order_42(seq: u32, clordid: &str) -> Vec<u8> {
    make(
        "FIX.4.2",
        &format!(
            "35=D|34={seq}|49=CLIENT1|52=20261130-07:38:48.{seq:03}|56=EXECUTOR|11={clordid}|21=1|38=100|40=2|44=101.25|54=1|55=IBM|59=0|60=20261130-07:38:48.000|"
        ),
    )
}

pub fn exec_report_42(seq: u32, clordid: &str) -> Vec<u8> {
    make(
        "FIX.4.2",
        &format!(
            "35=8|34={seq}|49=EXECUTOR|52=20261130-07:38:48.500|56=CLIENT1|6=101.25|11={clordid}|14=100|17={seq}|20=0|31=101.25|32=100|37={seq}|38=100|39=2|44=101.25|54=1|55=IBM|150=2|151=0|"
        ),
    )
}

pub fn heartbeat_44(seq: u32) -> Vec<u8> {
    make(
        "FIX.4.4",
        &format!("35=0|34={seq}|49=CLIENT1|52=20261130-07:39:18.000|56=EXECUTOR|"),
    )
}

pub fn new_order_44(seq: u32, clordid: &str) -> Vec<u8> {
    make(
        "FIX.4.4",
        &format!(
            "35=D|34={seq}|49=CLIENT1|52=20261130-07:38:49.250|56=EXECUTOR|11={clordid}|21=1|38=2500|40=2|44=33.125|54=2|55=MSFT|59=3|60=20261130-07:38:49.250|"
        ),
    )
}

//! Everything taphold puts on or reads from a wire.
//!
//! The appliance sits between a source and a destination on its primary port P. Each
//! message it receives is *classified* ([`mod@classify`]), turned into a *backup frame*
//! ([`taphold`]) that is launched on every backup link Bk, seen again on the passive tap
//! Tk, and only then *released*: rewritten in place for the destination ([`emit`]) and
//! followed by a *confirmation* to the source. This crate holds the byte layouts of all
//! of that, and nothing else: no DPDK, no clocks, no allocation, no `unsafe`.
//!
//! The wire specification lives in `docs/protocol.md`; the `field` modules of each file
//! are the same tables.
//!
//! Each protocol follows the smoltcp pattern: a `Packet<T: AsRef<[u8]>>` view that is
//! checked once by `new_checked` (after which its accessors cannot fail) and a `Repr`
//! of parsed meaning with `parse` / `emit` / `buffer_len`. Every multi-byte field is in
//! network order (big-endian).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arp;
mod bytes;
pub mod checksum;
pub mod classify;
pub mod delivery;
pub mod digest;
pub mod emit;
pub mod ethernet;
pub mod gateway;
pub mod ipv4;
pub mod link;
pub mod payload;
pub mod taphold;
pub mod tcp;
pub mod udp;

use core::fmt;

pub use classify::{classify, Classified, DropReason, MessageMeta, PrimaryAddr};
pub use delivery::DeliveryRepr;
pub use digest::DigestKey;
pub use emit::{
    emit_udp_headers, rewrite_released, rewrite_released_framed, Endpoint, UDP_FRAME_HEADER_LEN,
};
pub use ethernet::{EtherType, EthernetAddress};
pub use taphold::{
    backup_frame_len, AckRepr, BackupRepr, ConfirmRepr, Content, ContentMode, Flags, FlowAckRepr,
    HeartbeatRepr, MsgType, TcpSegmentRepr,
};

/// Why a buffer was refused, or could not be written.
///
/// One variant per kind of fault so that the receiving role can count each separately;
/// none carries data, so the type is `Copy` and costs nothing to return on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the header, or than the length a field claims; or,
    /// when emitting, the output buffer is too small.
    Truncated,
    /// The taphold magic is not `0x5448` ("TH").
    BadMagic,
    /// The protocol version is not one we speak (taphold version 1, IPv4 version 4).
    BadVersion,
    /// The taphold message type is not 1..=7.
    UnknownType,
    /// A well-formed message of another type than the one asked for.
    WrongType,
    /// A flag bit that no version of the protocol defines is set, or a flag on a PDU
    /// type that carries none (heartbeat, ack, target confirmation, resend request).
    BadFlags,
    /// A length field disagrees with what the type requires or with another length field.
    BadLength,
    /// The keyed digest does not match the bytes it covers.
    BadDigest,
    /// An Internet checksum (IPv4 header or UDP) is wrong.
    BadChecksum,
    /// Any other field outside its allowed values (reserved bytes, link index, mode...).
    Malformed,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "buffer too short for the header or the length it claims",
            WireError::BadMagic => "bad taphold magic (expected 0x5448 \"TH\")",
            WireError::BadVersion => "unsupported protocol version",
            WireError::UnknownType => "unknown taphold message type",
            WireError::WrongType => "taphold message of another type than expected",
            WireError::BadFlags => "undefined flag bits set",
            WireError::BadLength => "length field inconsistent with the message",
            WireError::BadDigest => "keyed digest mismatch",
            WireError::BadChecksum => "Internet checksum mismatch",
            WireError::Malformed => "field outside its allowed values",
        })
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_distinct_per_variant() {
        let all = [
            WireError::Truncated,
            WireError::BadMagic,
            WireError::BadVersion,
            WireError::UnknownType,
            WireError::WrongType,
            WireError::BadFlags,
            WireError::BadLength,
            WireError::BadDigest,
            WireError::BadChecksum,
            WireError::Malformed,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.to_string(), b.to_string());
            }
        }
    }
}

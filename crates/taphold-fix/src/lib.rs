//! FIX over TCP, for gateway mode.
//!
//! In gateway mode every protected TCP data segment from the trading engine to the
//! exchange is a message whose backup frame carries the segment (content mode 2) or,
//! with `content: fix-compact` (mode 3), only what recreates its FIX messages. This crate
//! is the FIX side of that, and pure (no DPDK):
//!
//! - [`frame`]: FIX tag=value framing — splitting a byte stream into messages with
//!   BeginString(8), BodyLength(9) and CheckSum(10) checked, resynchronising on the next
//!   `8=FIX` after garbage — and the fields the node reports ([`Summary`]).
//! - [`compact`]: the compact encoding of content mode 3 ([`encode_compact`], on the
//!   appliance's hot path, allocation-free) and the rebuild of valid FIX messages from it
//!   on the backup node ([`rebuild`]). The byte layout is in docs/protocol.md.
//! - [`stream`]: TCP byte-stream reassembly by sequence number (serial arithmetic) for
//!   the node's `journal export --flow` and `recover`: retransmissions and overlaps (first
//!   copy wins, conflicts reported), holes named by sequence range. It lives here rather
//!   than in taphold-journal because only the FIX/flow tools use it: the journal stores
//!   records by (stream, epoch, seq) and knows nothing of flows.

pub mod compact;
pub mod frame;
pub mod resend;
pub mod stream;

pub use compact::{
    encode_compact, rebuild, records, CompactError, CompactMessage, CompactRecords, Resend,
};
pub use frame::{checksum, split, FrameError, Message, Piece, Summary, SOH};
pub use resend::poss_dup_copy;
pub use stream::{seq_ge, Reassembled, Reassembler, Run, SegmentOutcome};

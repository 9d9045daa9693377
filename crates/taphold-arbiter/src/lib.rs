//! The destination's arbiter: the first copy of each message wins, delivery in seq order,
//! gaps re-requested from a backup node, deliveries confirmed.
//!
//! A destination behind taphold (`destination.framing: taphold`) receives every message as a
//! UDP datagram starting with the delivery header, which names it: (stream, epoch, seq). It
//! may receive it more than once, from more than one *input*: A, the appliance; B, a backup
//! node that took over (replaying what the destination may not have, flagged
//! POSSIBLE_DUPLICATE) or a second appliance; and the answers to its own resend requests
//! (flagged RETRANSMIT). The arbiter turns that into one ordered stream:
//!
//! - **First copy wins.** Per (stream, epoch, seq), the first valid copy is delivered; later
//!   ones are dropped and counted by input and flag.
//! - **Order is per (stream, epoch).** Within an epoch, delivery is strictly in seq order,
//!   starting at seq 1 (or at `delivered + 1` of a restored [`Checkpoint`]), through a bounded
//!   reorder window. Epochs are independent sequences: a restarted appliance takes a new,
//!   larger epoch and starts again at seq 1, and the arbiter cannot know where an older epoch
//!   ended, so the messages of two epochs may interleave. An application that needs one total
//!   order across epochs must drain the older one first (its gaps are visible in
//!   [`Arbiter::epochs`]).
//! - **Gaps are asked for.** A seq missing while later ones wait is asked for with a keyed
//!   resend request once it has been missing `gap_timeout`, again every `resend_interval`,
//!   `resend_tries` times; then the gap is reported by name ([`Event::GapExhausted`]) and
//!   [`OnGap`] decides: wait (keep asking, slowly, reporting each time) or skip (never
//!   delivered; counted, reported, and carried in the target confirmation's `skipped`).
//!   A datagram beyond the window is refused and counted; once the window reaches its seq it
//!   is missing like any other, and asked for.
//! - **Deliveries are confirmed.** A keyed target confirmation per epoch, cumulative
//!   (delivered through seq), at most every `confirm_interval` while delivery advances and
//!   as soon as the inputs are idle for `confirm_idle`, tells the appliance and the backup
//!   nodes what they may forget.
//!
//! A gap the arbiter has not seen cannot be asked for: a message lost on every input is
//! noticed when a later one arrives, so the last messages before a long silence wait for the
//! next message (or for the application to ask, with a resend of its own).
//!
//! # Exactly once, and where it stops
//!
//! Within a run the arbiter hands each (stream, epoch, seq) to the application at most once.
//! Across a restart it resumes from a [`Checkpoint`]: a message delivered after the last
//! checkpoint was persisted is delivered again after a crash. The binary persists the
//! checkpoint in a [`StateFile`] before each round of target confirmations, so delivery is
//! *at least once* across an arbiter crash. An application that wants *exactly once* stores
//! [`Arbiter::checkpoint`] (its [`Checkpoint::encode`] text) in the same atomic write as the
//! effects of the messages it covers, and [`Arbiter::restore`]s from it. Either way the
//! checkpoint must be durable before the target confirmations that go with it are sent
//! ([`Arbiter::pending_confirms`]): a node trims its journal below a confirmation.
//!
//! # Use
//!
//! ```
//! use taphold_arbiter::{Arbiter, ArbiterConfig, OnGap, TransmitKind};
//! use taphold_wire::{DeliveryRepr, DigestKey, Flags};
//!
//! let config = ArbiterConfig {
//!     stream: 7,
//!     key: DigestKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap(),
//!     window: 64,
//!     max_payload: 256,
//!     max_epochs: 2,
//!     gap_timeout_ns: 1_000_000,
//!     resend_interval_ns: 5_000_000,
//!     resend_tries: 3,
//!     resend_max_count: 1024,
//!     on_gap: OnGap::Wait,
//!     confirm_interval_ns: 100_000_000,
//!     confirm_idle_ns: 10_000_000,
//! };
//! let mut arb = Arbiter::new(config, &["A", "B"]).unwrap();
//! let a = arb.input("A").unwrap();
//! let datagram = |seq: u64| {
//!     let h = DeliveryRepr {
//!         flags: Flags::EMPTY, stream: 7, epoch: 1, seq, src_ip: [10, 0, 0, 1],
//!         src_port: 4000, release_ns: 0,
//!     };
//!     [&h.to_bytes()[..], b"order"].concat()
//! };
//! let mut got = Vec::new();
//! let mut deliver = |m: &taphold_arbiter::Delivery<'_>| got.push(m.seq);
//! arb.on_datagram(a, &datagram(2), 1_000, &mut deliver); // held: 1 is missing
//! arb.on_datagram(a, &datagram(1), 2_000, &mut deliver); // 1, then 2
//! arb.on_tick(3_000, &mut deliver);
//! assert_eq!(got, [1, 2]);
//! // Persist arb.checkpoint() first, then send what the arbiter emitted.
//! let mut confirms = 0;
//! arb.drain_transmits(|kind, _pdu| confirms += usize::from(kind == TransmitKind::TargetConfirm));
//! assert_eq!(confirms, 1);
//! ```
mod arbiter;
pub mod checkpoint;
pub mod counters;
mod sequence;

pub use arbiter::{
    Arbiter, ArbiterConfig, Delivery, EpochStatus, Event, InputId, OnGap, Refusal, SetupError,
    TransmitKind, Verdict, EVENT_QUEUE, MAX_EPOCHS, MAX_INPUTS, MAX_PAYLOAD_LIMIT, MAX_WINDOW,
};
pub(crate) use arbiter::{Events, Outbox, Rules};
pub use checkpoint::{Checkpoint, EpochMark, StateError, StateFile};
pub use counters::{Counters, InputCounters, Malformed};
pub use sequence::WAIT_SLOWDOWN;

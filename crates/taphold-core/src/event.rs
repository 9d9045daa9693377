//! The per-message event record.
//!
//! Egress fills one [`MessageEvent`] per message it releases (or still holds at shutdown) and
//! hands it to the main lcore through the [`spsc`](crate::spsc) ring; the main lcore writes it
//! as one line of `events.csv`. The record is `Copy` and fixed-size so the hand-off needs no
//! allocation; formatting happens only on the main lcore.

use std::io;

/// How a message left the hold ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Released after the release policy held.
    Released,
    /// Released without the policy holding (pass-through secondary mode, flagged).
    ReleasedUnprotected,
    /// Released without the policy holding once written and synced to the
    /// appliance's local journal (journal secondary mode).
    ReleasedJournaled,
    /// Still held when the appliance shut down.
    HeldAtShutdown,
}

impl MessageStatus {
    /// The `status` column value.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Released => "released",
            MessageStatus::ReleasedUnprotected => "released_unprotected",
            MessageStatus::ReleasedJournaled => "released_journaled",
            MessageStatus::HeldAtShutdown => "held_at_shutdown",
        }
    }
}

/// One message's journey through taphold; all times in UNIX-epoch nanoseconds of the same
/// clock, 0 when the event did not happen (e.g. `tap_ns` of an unprotected release).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageEvent {
    /// Sequence number in the hold ring.
    pub seq: u64,
    /// The source stream the message belongs to.
    pub stream: u32,
    /// The appliance's epoch: (stream, epoch, seq) names the message for good.
    pub epoch: u64,
    /// Received on the primary port.
    pub rx_ns: u64,
    /// Backup frame launched on the backup link.
    pub backup_tx_ns: u64,
    /// Tap copy that satisfied the release policy seen.
    pub tap_ns: u64,
    /// Released to the destination (or shutdown time for [`MessageStatus::HeldAtShutdown`]).
    pub release_ns: u64,
    /// How it left the hold ring.
    pub status: MessageStatus,
}

impl MessageEvent {
    /// The first line of `events.csv`; the column order of [`write_csv_line`](Self::write_csv_line).
    pub const CSV_HEADER: &'static str =
        "seq,stream,epoch,rx_ns,backup_tx_ns,tap_ns,release_ns,status";

    /// Writes this record as one CSV line, newline included. Off the hot path only.
    pub fn write_csv_line(&self, w: &mut impl io::Write) -> io::Result<()> {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{}",
            self.seq,
            self.stream,
            self.epoch,
            self.rx_ns,
            self.backup_tx_ns,
            self.tap_ns,
            self.release_ns,
            self.status.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_line_matches_header() {
        let e = MessageEvent {
            seq: 7,
            stream: 3,
            epoch: 9,
            rx_ns: 100,
            backup_tx_ns: 150,
            tap_ns: 900,
            release_ns: 1_000,
            status: MessageStatus::ReleasedUnprotected,
        };
        let mut out = Vec::new();
        e.write_csv_line(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7,3,9,100,150,900,1000,released_unprotected\n"
        );
        assert_eq!(MessageEvent::CSV_HEADER.split(',').count(), 8);
    }

    #[test]
    fn status_strings() {
        assert_eq!(MessageStatus::Released.as_str(), "released");
        assert_eq!(
            MessageStatus::ReleasedUnprotected.as_str(),
            "released_unprotected"
        );
        assert_eq!(MessageStatus::HeldAtShutdown.as_str(), "held_at_shutdown");
    }
}

//! One record in the ledger: where it stands and what keeping it costs.

use std::sync::Arc;

use eventgateway::v1::Delivery;

use super::DeadLetterJob;
use crate::subscribe::delivery::Record;

/// Where a record not yet settled stands.
#[derive(Debug, Clone)]
pub(super) enum State {
    /// Waiting for the event before it of its key to be settled.
    Held,
    /// To be sent (again) as soon as the stream takes it.
    Ready,
    /// Out with the client until its timer.
    Out,
    /// Given back, to be ready at its timer.
    Waiting,
    /// Being written to the dead-letter topic (`writing`), or waiting for
    /// its timer to try again after `failures` failed writes.
    DeadLettering {
        /// The letter to write.
        job: Box<DeadLetterJob>,
        /// Whether a write is in flight.
        writing: bool,
        /// Writes that failed.
        failures: u32,
    },
    /// Acked or dead-lettered; kept until the commit point passes it.
    Settled,
    /// Given back to the group: its partition is being revoked, and the
    /// partition's next owner delivers it (the commit point stops before it).
    Returned,
}

impl State {
    /// Out with the client, or being written as a dead letter: what a
    /// drain or a revocation waits for.
    pub(super) fn is_out(&self) -> bool {
        matches!(self, Self::Out | Self::DeadLettering { writing: true, .. })
    }
}

/// One record read and not yet committed.
#[derive(Debug)]
pub(super) struct Entry {
    /// The record, for every redelivery and a dead letter.
    pub(super) record: Arc<Record>,
    /// Its first delivery, kept for the next attempts (decoding a record
    /// once is enough); dropped once settled.
    pub(super) first: Option<Box<Delivery>>,
    /// What keeping it costs, in bytes: the record and its first delivery.
    pub(super) weight: usize,
    /// Attempts made: the current (or last) attempt's number, 0 while held.
    pub(super) attempt: u32,
    /// Where it stands.
    pub(super) state: State,
}

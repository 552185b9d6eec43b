//! What one turn of a subscription's loop decides from what it sees: a
//! pure function of plain values, so that every rule of the stream's flow
//! control is tested without Kafka, gRPC or a clock.

use std::time::Duration;

use tokio::time::Instant;

/// How long a client may stay behind before its consumer is paused.
pub(super) const PAUSE_AFTER: Duration = Duration::from_millis(250);

/// What one turn sees.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    /// The time of the turn.
    pub(super) now: Instant,
    /// The size of the message staged for the client, if one is.
    pub(super) staged: Option<usize>,
    /// The bytes the turn needs from the budget (see [`needs`]).
    pub(super) needs: Option<usize>,
    /// Whether the turn wants a record from Kafka: nothing read waits,
    /// nothing is staged and the window has room.
    pub(super) wants_record: bool,
    /// Whether shutdown began (nothing new is taken).
    pub(super) draining: bool,
    /// Whether the ACK_MODE_MANUAL window (records or bytes) is full.
    pub(super) window_full: bool,
    /// Whether the channel to gRPC has no free slot.
    pub(super) channel_full: bool,
    /// Whether the budget has room for what the turn needs.
    pub(super) room: bool,
    /// Whether the bytes held fit the staged message exactly.
    pub(super) fitted: bool,
    /// Whether the bytes held cover a record of the expected size.
    pub(super) covers_record: bool,
    /// Since when the client has been behind, as of the last turn.
    pub(super) behind_since: Option<Instant>,
    /// When the client last read, or last had nothing waiting.
    pub(super) progress_at: Instant,
    /// Whether deliveries wait for the client.
    pub(super) waiting: bool,
    /// How long the client may read nothing while deliveries wait.
    pub(super) stall_timeout: Duration,
}

/// What the turn decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Flow {
    /// Since when the client is behind (its message waits for a channel
    /// slot, or the budget has no room), `None` when it is not.
    pub(super) behind_since: Option<Instant>,
    /// Whether the consumer is paused: draining, a client behind or a
    /// window full for [`PAUSE_AFTER`], or a budget out of room (what
    /// librdkafka prefetches would be held on top of it: the pause drops
    /// it).
    pub(super) pause: bool,
    /// Whether the client read nothing for the stall timeout while
    /// deliveries waited: the stream ends.
    pub(super) stalled: bool,
    /// Whether a record is read: only with room reserved for it, so that
    /// what a stream holds stays within its budget, and streams waiting for
    /// room never each hold one record more. (A paused consumer is polled
    /// too, for rebalances; it fetches nothing.)
    pub(super) read_record: bool,
    /// The bytes to wait for in the budget, if any.
    pub(super) budget_wait: Option<usize>,
    /// Whether the staged message goes as soon as a channel slot is free.
    pub(super) send: bool,
    /// When to look again for the client falling behind.
    pub(super) pause_check: Option<Instant>,
    /// When the stream stalls unless the client reads.
    pub(super) stall_check: Option<Instant>,
}

/// The bytes a turn needs from the budget: the staged message's, or, to
/// read a record, as much as the last delivery took.
pub(super) fn needs(
    staged: Option<usize>,
    wants_record: bool,
    draining: bool,
    expect: usize,
) -> Option<usize> {
    match staged {
        Some(bytes) => Some(bytes),
        None => (wants_record && !draining).then_some(expect),
    }
}

/// Decides one turn.
pub(super) fn flow(facts: &Facts) -> Flow {
    let f = facts;
    // A full window waits for acks as a client behind waits for slots: a
    // pause drops what librdkafka prefetched, and fetching it again after a
    // resume costs a new fetch (most of a quarter second here), so a window that
    // fills and empties (a few deliveries out per stream, as in a share)
    // pauses only once it stays full.
    let blocked = (f.staged.is_some() && f.channel_full) || !f.room || f.window_full;
    let behind_since = blocked.then(|| f.behind_since.unwrap_or(f.now));
    let client_behind = behind_since.is_some_and(|since| f.now >= since + PAUSE_AFTER);
    let stall_check = f.waiting.then(|| f.progress_at + f.stall_timeout);
    Flow {
        behind_since,
        pause: f.draining || client_behind || !f.room,
        stalled: stall_check.is_some_and(|at| f.now >= at),
        read_record: f.wants_record && f.covers_record,
        budget_wait: match f.staged {
            Some(bytes) => (!f.fitted).then_some(bytes),
            None => f.needs.filter(|_| !f.covers_record),
        },
        send: f.fitted,
        pause_check: behind_since
            .filter(|_| !client_behind)
            .map(|since| since + PAUSE_AFTER),
        stall_check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(300);

    /// A turn with a message staged that fits and a client keeping up.
    fn flowing(now: Instant) -> Facts {
        Facts {
            now,
            staged: Some(1_000),
            needs: Some(1_000),
            wants_record: false,
            draining: false,
            window_full: false,
            channel_full: false,
            room: true,
            fitted: true,
            covers_record: false,
            behind_since: None,
            progress_at: now,
            waiting: false,
            stall_timeout: STALL,
        }
    }

    #[test]
    fn a_client_keeping_up_gets_its_message_and_nothing_pauses() {
        let now = Instant::now();
        let flow = flow(&flowing(now));
        assert!(flow.send && !flow.pause && !flow.stalled);
        assert_eq!((flow.behind_since, flow.budget_wait), (None, None));
        assert_eq!((flow.pause_check, flow.stall_check), (None, None));
    }

    #[test]
    fn a_client_behind_is_paused_only_after_the_pause_delay() {
        let start = Instant::now();
        let full = Facts {
            channel_full: true,
            ..flowing(start)
        };
        let first = flow(&full);
        assert_eq!(first.behind_since, Some(start));
        assert!(!first.pause, "a short stall is absorbed by the channel");
        assert_eq!(first.pause_check, Some(start + PAUSE_AFTER));
        let later = flow(&Facts {
            now: start + PAUSE_AFTER,
            behind_since: first.behind_since,
            ..full
        });
        assert!(later.pause);
        assert_eq!(later.behind_since, Some(start), "behind since it began");
        assert_eq!(later.pause_check, None);
        let caught_up = flow(&Facts {
            now: start + PAUSE_AFTER,
            behind_since: later.behind_since,
            ..flowing(start)
        });
        assert!(!caught_up.pause && caught_up.behind_since.is_none());
    }

    #[test]
    fn a_budget_out_of_room_pauses_at_once_and_waits_for_the_bytes() {
        let now = Instant::now();
        let flow = flow(&Facts {
            room: false,
            fitted: false,
            ..flowing(now)
        });
        assert!(flow.pause, "prefetching on top of the budget is dropped");
        assert!(!flow.send);
        assert_eq!(flow.budget_wait, Some(1_000));
    }

    #[test]
    fn a_record_is_read_only_with_room_reserved_for_it() {
        let now = Instant::now();
        let wanting = Facts {
            staged: None,
            needs: needs(None, true, false, 4_096),
            wants_record: true,
            fitted: false,
            ..flowing(now)
        };
        let uncovered = flow(&wanting);
        assert!(!uncovered.read_record);
        assert_eq!(uncovered.budget_wait, Some(4_096));
        let covered = flow(&Facts {
            covers_record: true,
            ..wanting
        });
        assert!(covered.read_record);
        assert_eq!(covered.budget_wait, None);
    }

    #[test]
    fn a_full_window_pauses_once_it_stays_full_a_drain_at_once_and_reserves_nothing() {
        let now = Instant::now();
        let full = Facts {
            window_full: true,
            ..flowing(now)
        };
        let first = flow(&full);
        assert!(!first.pause, "acks may come at once");
        assert_eq!(first.pause_check, Some(now + PAUSE_AFTER));
        let stays = flow(&Facts {
            now: now + PAUSE_AFTER,
            behind_since: first.behind_since,
            ..full
        });
        assert!(stays.pause);
        assert!(
            flow(&Facts {
                draining: true,
                ..flowing(now)
            })
            .pause
        );
        assert_eq!(needs(None, true, true, 4_096), None);
        assert_eq!(needs(Some(10), false, true, 4_096), Some(10));
    }

    #[test]
    fn a_client_reading_nothing_while_deliveries_wait_stalls_at_the_timeout() {
        let start = Instant::now();
        let waiting = Facts {
            waiting: true,
            ..flowing(start)
        };
        let early = flow(&Facts {
            now: start + STALL - Duration::from_millis(1),
            ..waiting
        });
        assert!(!early.stalled);
        assert_eq!(early.stall_check, Some(start + STALL));
        assert!(
            flow(&Facts {
                now: start + STALL,
                ..waiting
            })
            .stalled
        );
        let idle = Facts {
            now: start + 2 * STALL,
            ..flowing(start)
        };
        assert!(
            !flow(&idle).stalled,
            "nothing waits: an idle client is fine"
        );
    }
}

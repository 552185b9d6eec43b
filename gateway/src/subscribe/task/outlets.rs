//! Where a subscription's messages go: its one stream, or the streams of a
//! share, and what the loop watches them for.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::error::Error;
use crate::subscribe::share::{Dispatch, Outlet};
use crate::subscribe::stream::{Deliveries, Message, Parcel};

/// The streams a subscription task feeds.
pub(in crate::subscribe) enum Outlets {
    /// One stream, ended with the task.
    One(Deliveries),
    /// A share's streams, which come and go.
    Shared(Box<Dispatch>),
}

/// What the loop waits on besides a free slot: the one stream's client
/// leaving, or any change among a share's streams.
pub(super) enum Watch {
    Closed(mpsc::Sender<Parcel>),
    Woken(Arc<Notify>),
}

impl Watch {
    /// Resolves when the one stream's client left (`true`), or when a
    /// share's stream took a message or left (`false`).
    pub(super) async fn wait(&self) -> bool {
        match self {
            Self::Closed(tx) => {
                tx.closed().await;
                true
            }
            Self::Woken(wake) => {
                wake.notified().await;
                false
            }
        }
    }
}

impl Outlets {
    /// Ends every stream with `error` once its client read what is buffered.
    pub(super) fn end_with(&mut self, error: Error) {
        match self {
            Self::One(deliveries) => deliveries.end_with(error),
            Self::Shared(dispatch) => dispatch.end_with(error),
        }
    }

    /// Messages the one stream's client took (a share watches each of its
    /// streams itself: 0).
    pub(super) fn taken(&self) -> u64 {
        match self {
            Self::One(deliveries) => deliveries.taken(),
            Self::Shared(_) => 0,
        }
    }

    /// Messages waiting for the one stream's client (a share's: 0).
    pub(super) fn waiting(&self) -> usize {
        match self {
            Self::One(deliveries) => deliveries.waiting(),
            Self::Shared(_) => 0,
        }
    }

    /// Where the staged message goes this turn: the one stream, or the
    /// share's stream `target` (none with no room).
    pub(super) fn sender(&self, target: Option<usize>) -> Option<mpsc::Sender<Parcel>> {
        match self {
            Self::One(deliveries) => Some(deliveries.tx.clone()),
            Self::Shared(dispatch) => target.map(|index| dispatch.sender(index)),
        }
    }

    /// Whether the staged message has no free slot to go to.
    pub(super) fn channel_full(&self, sender: Option<&mpsc::Sender<Parcel>>) -> bool {
        sender.is_none_or(|tx| tx.capacity() == 0)
    }

    /// What the loop watches.
    pub(super) fn watch(&self) -> Watch {
        match self {
            Self::One(deliveries) => Watch::Closed(deliveries.tx.clone()),
            Self::Shared(dispatch) => Watch::Woken(dispatch.wake()),
        }
    }

    /// Records that `message` went to the share's stream `target`.
    pub(super) fn sent(&mut self, target: Option<usize>, message: &Message) {
        if let (Self::Shared(dispatch), Some(index)) = (self, target) {
            dispatch.sent(index, message);
        }
    }

    /// The next stream joining a share (never, for one stream).
    pub(super) async fn joining(&mut self) -> Option<Outlet> {
        match self {
            Self::One(_) => std::future::pending().await,
            Self::Shared(dispatch) => dispatch.joining().await,
        }
    }
}

/// A slot in `tx`'s channel (never, without a channel).
pub(super) async fn reserve(
    tx: Option<&mpsc::Sender<Parcel>>,
) -> Result<mpsc::Permit<'_, Parcel>, mpsc::error::SendError<()>> {
    match tx {
        Some(tx) => tx.reserve().await,
        None => std::future::pending().await,
    }
}

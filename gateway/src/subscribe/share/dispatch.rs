//! One share's streams, as its task sees them: which stream the next
//! delivery goes to, what each stream holds, and what a stream that ended
//! or stalled gives back.
//!
//! A stream holds the deliveries sent to it that are still out (the ledger
//! says which: a hold whose attempt was settled, given back or superseded
//! is dropped the next time the stream looks full). The next delivery goes
//! to the stream that had its key's last one, if that stream has room both
//! in its window (`max_unacked`) and in its channel, else to the stream with
//! the most room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::{subscribe_response::Kind, Delivery, SubscribeResponse};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::Leave;
use crate::error::Error;
use crate::subscribe::ledger::Ledger;
use crate::subscribe::spec::{Position, TopicPartition};
use crate::subscribe::stream::{Deliveries, Message, Parcel};

/// Keys whose last stream is remembered; past it the memory starts over.
const MAX_AFFINITIES: usize = 10_000;

/// A stream joining a share.
#[derive(Debug)]
pub(in crate::subscribe) struct Outlet {
    /// Its channel.
    pub(in crate::subscribe) deliveries: Deliveries,
    /// The most deliveries it may hold (its `max_unacked`).
    pub(in crate::subscribe) window: usize,
}

/// A stream of the share, with what it holds.
#[derive(Debug)]
struct Stream {
    /// Numbers the streams, for the key affinities.
    number: u64,
    outlet: Outlet,
    /// The attempts it was sent that may still be out.
    held: HashMap<Position, u32>,
    /// Messages its client took, as of the last look, and when that changed
    /// (or nothing waited for it).
    taken: u64,
    progress_at: Instant,
}

impl Stream {
    /// Room in its window, after dropping the holds that are out no more
    /// when it looks full.
    fn room(&mut self, ledger: &Ledger) -> usize {
        if self.held.len() >= self.outlet.window {
            self.held.retain(|p, attempt| ledger.is_out_at(p, *attempt));
        }
        self.outlet.window.saturating_sub(self.held.len())
    }

    /// Whether its channel has a free slot.
    fn open_slot(&self) -> bool {
        self.outlet.deliveries.tx.capacity() > 0
    }
}

/// The streams of one share.
#[derive(Debug)]
pub(in crate::subscribe) struct Dispatch {
    streams: Vec<Stream>,
    numbered: u64,
    /// Per key, the stream that had its last delivery.
    affinity: HashMap<String, u64>,
    /// Streams that join.
    attach: mpsc::UnboundedReceiver<Outlet>,
    /// Woken when a stream's client takes a message or leaves.
    wake: Arc<Notify>,
    /// How long a client may read nothing while deliveries wait for it.
    stall_timeout: Duration,
    /// Removes the share from its registry once the last stream ended.
    leave: Leave,
    /// Why the streams ended, once known: also said to streams joining in
    /// the meantime.
    end: Option<Error>,
}

impl Dispatch {
    /// A share whose streams join through `attach`, wake `wake`, and may
    /// read nothing for `stall_timeout`.
    pub(in crate::subscribe) fn new(
        attach: mpsc::UnboundedReceiver<Outlet>,
        wake: Arc<Notify>,
        stall_timeout: Duration,
        leave: Leave,
    ) -> Self {
        Self {
            streams: Vec::new(),
            numbered: 0,
            affinity: HashMap::new(),
            attach,
            wake,
            stall_timeout,
            leave,
            end: None,
        }
    }

    /// What wakes the share's task.
    pub(in crate::subscribe) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The next stream to join, for the task's loop.
    pub(in crate::subscribe) async fn joining(&mut self) -> Option<Outlet> {
        self.attach.recv().await
    }

    /// Adds a stream.
    pub(in crate::subscribe) fn join(&mut self, outlet: Outlet) {
        if let Some(end) = &self.end {
            outlet.deliveries.end_with(end.clone());
            return;
        }
        self.numbered += 1;
        self.streams.push(Stream {
            number: self.numbered,
            outlet,
            held: HashMap::new(),
            taken: 0,
            progress_at: Instant::now(),
        });
    }

    /// The streams open.
    pub(in crate::subscribe) fn len(&self) -> usize {
        self.streams.len()
    }

    /// The windows of all the streams together: the share's window.
    pub(in crate::subscribe) fn window(&self) -> usize {
        self.streams.iter().map(|s| s.outlet.window).sum()
    }

    /// The deliveries the streams hold, as the ledger has them now.
    pub(in crate::subscribe) fn held(&mut self, ledger: &Ledger) -> usize {
        for stream in &mut self.streams {
            stream
                .held
                .retain(|p, attempt| ledger.is_out_at(p, *attempt));
        }
        self.streams.iter().map(|s| s.held.len()).sum()
    }

    /// The stream `message` goes to now, if one has room for it.
    pub(in crate::subscribe) fn aim(
        &mut self,
        message: &Message,
        ledger: &Ledger,
    ) -> Option<usize> {
        let key = delivery(message)
            .map(|d| d.key.as_str())
            .filter(|k| !k.is_empty());
        let preferred = key.and_then(|key| self.affinity.get(key)).copied();
        let mut best: Option<(usize, usize)> = None;
        for (index, stream) in self.streams.iter_mut().enumerate() {
            let room = stream.room(ledger);
            if room == 0 || !stream.open_slot() {
                continue;
            }
            if Some(stream.number) == preferred {
                return Some(index);
            }
            if best.is_none_or(|(_, most)| room > most) {
                best = Some((index, room));
            }
        }
        best.map(|(index, _)| index)
    }

    /// The channel of stream `index`.
    pub(in crate::subscribe) fn sender(&self, index: usize) -> mpsc::Sender<Parcel> {
        self.streams[index].outlet.deliveries.tx.clone()
    }

    /// Records that `message` went to stream `index`.
    pub(in crate::subscribe) fn sent(&mut self, index: usize, message: &Message) {
        let Some(delivery) = delivery(message) else {
            return;
        };
        let stream = &mut self.streams[index];
        let position =
            TopicPartition::new(delivery.topic.as_str(), delivery.partition).at(delivery.offset);
        stream.held.insert(position, delivery.attempt);
        if !delivery.key.is_empty() {
            if self.affinity.len() >= MAX_AFFINITIES {
                self.affinity.clear();
            }
            self.affinity.insert(delivery.key.clone(), stream.number);
        }
    }

    /// Sends `message` (a rebalance notice) to every stream with a free slot.
    pub(in crate::subscribe) fn broadcast(&self, message: &Message) {
        for stream in &self.streams {
            let _ = stream
                .outlet
                .deliveries
                .tx
                .try_send(Parcel::from(message.clone()));
        }
    }

    /// Ends every stream with `error` once its client read what is buffered.
    pub(in crate::subscribe) fn end_with(&mut self, error: Error) {
        for stream in &self.streams {
            stream.outlet.deliveries.end_with(error.clone());
        }
        self.end.get_or_insert(error);
    }

    /// Drops the streams whose client left, and ends those whose client read
    /// nothing for the stall timeout while deliveries waited; what they held
    /// goes back to the ledger, first in line. The number of streams
    /// stalled, and when to look again for stalls.
    pub(in crate::subscribe) fn sweep(
        &mut self,
        ledger: &mut Ledger,
        now: Instant,
    ) -> (usize, Option<Instant>) {
        let mut stalled = 0;
        let mut next = None::<Instant>;
        let mut index = 0;
        while index < self.streams.len() {
            let stream = &mut self.streams[index];
            let deliveries = &stream.outlet.deliveries;
            if deliveries.taken() != stream.taken || deliveries.waiting() == 0 {
                (stream.taken, stream.progress_at) = (deliveries.taken(), now);
            }
            let due = stream.progress_at + self.stall_timeout;
            let stalls = deliveries.waiting() > 0 && now >= due;
            if !deliveries.tx.is_closed() && !stalls {
                if deliveries.waiting() > 0 {
                    next = Some(next.map_or(due, |at| at.min(due)));
                }
                index += 1;
                continue;
            }
            if stalls {
                let after = self.stall_timeout;
                tracing::warn!(?after, "a stream of the share read nothing while deliveries waited; ending it, its deliveries go to the others");
                deliveries.end_with(Error::Stalled { after });
                stalled += 1;
            }
            let gone = self.streams.swap_remove(index);
            for (position, attempt) in &gone.held {
                ledger.hand_back(position, *attempt);
            }
            tracing::debug!(held = gone.held.len(), "a stream left the share");
        }
        (stalled, next)
    }

    /// With no stream left: whether the share closes (no stream joined in
    /// the meantime); it is gone from the registry then.
    pub(in crate::subscribe) fn close_if_idle(&mut self) -> bool {
        let attach = &mut self.attach;
        let mut joined = Vec::new();
        let closed = self.leave.close_unless(|| {
            while let Ok(outlet) = attach.try_recv() {
                joined.push(outlet);
            }
            !joined.is_empty()
        });
        for outlet in joined {
            self.join(outlet);
        }
        closed
    }
}

impl Drop for Dispatch {
    /// The share is gone from the registry, and the streams that joined in
    /// the meantime end as the others did.
    fn drop(&mut self) {
        let attach = &mut self.attach;
        let mut late = Vec::new();
        self.leave.close_unless(|| {
            attach.close();
            while let Ok(outlet) = attach.try_recv() {
                late.push(outlet);
            }
            false
        });
        let end = self.end.clone().unwrap_or(Error::Interrupted);
        for outlet in late {
            outlet.deliveries.end_with(end.clone());
        }
    }
}

/// The delivery `message` carries, if it carries one.
fn delivery(message: &SubscribeResponse) -> Option<&Delivery> {
    match &message.kind {
        Some(Kind::Delivery(delivery)) => Some(delivery),
        _ => None,
    }
}

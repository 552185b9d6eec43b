//! A subscription's channel and the stream a client reads from it. The
//! channel carries the stream's messages; why the stream ends is set beside
//! it ([`Deliveries::end_with`]) and becomes the stream's final status once
//! the client has read what is buffered. A stream whose senders all went
//! without saying why (a task that failed) ends with an INTERNAL status, so
//! that no subscription ever ends as if it had completed. With a consumer
//! group in ACK_MODE_AUTO, each delivery's offset is stored for commit the
//! moment gRPC takes it from the channel: "handed to the stream".
//!
//! Messages travel shared ([`Message`]): a live tail hands one message to
//! all of its streams, and each buffers a pointer to it, not a copy; a
//! stream takes its own copy only as gRPC encodes it (none when it is the
//! last holder). A subscription with a consumer of its own charges each
//! message to its byte budget ([`Held`]) until gRPC has sent it on (asks
//! for the next one).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};

use eventgateway::v1::{subscribe_response::Kind, SubscribeResponse, Subscribed};
use rdkafka::consumer::Consumer;
use tokio::sync::{mpsc, Notify};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::Status;

use super::budget::Held;
use super::consumer::SubscriptionConsumer;
use crate::error::Error;
use crate::route::Routing;

/// A message of a subscription's channel, shared among the streams of a
/// live tail.
pub(super) type Message = Arc<SubscribeResponse>;

/// A message in a channel, with the bytes of the budget it holds there.
#[derive(Debug)]
pub(super) struct Parcel {
    message: Message,
    held: Option<Held>,
}

impl Parcel {
    /// `message`, holding `held` until gRPC takes it.
    pub(super) fn charged(message: Message, held: Held) -> Self {
        Self {
            message,
            held: Some(held),
        }
    }
}

impl From<Message> for Parcel {
    /// A message that holds nothing of the budget (a live tail's, shared).
    fn from(message: Message) -> Self {
        Self {
            message,
            held: None,
        }
    }
}

/// The sending end of a subscription's channel; cloning shares it.
#[derive(Debug, Clone)]
pub(super) struct Deliveries {
    /// The stream's messages.
    pub(super) tx: mpsc::Sender<Parcel>,
    /// Why the stream ends, once known.
    end: Arc<OnceLock<Error>>,
    /// How many messages the client took.
    taken: Arc<AtomicU64>,
}

impl Deliveries {
    /// Ends the stream with `error` once its client has read what is
    /// buffered and every sender is gone; the first reason given wins.
    pub(super) fn end_with(&self, error: Error) {
        let _ = self.end.set(error);
    }

    /// How many messages the client took so far.
    pub(super) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// How many messages wait in the channel.
    pub(super) fn waiting(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// A new subscription's channel of `buffer` messages, with its `subscribed`
/// message (naming subscription `id`) already in it.
pub(super) fn channel(id: &str, buffer: usize) -> (Deliveries, Ending) {
    let (tx, rx) = mpsc::channel(buffer);
    let subscribed = SubscribeResponse {
        kind: Some(Kind::Subscribed(Subscribed {
            subscription_id: id.to_owned(),
        })),
    };
    // The channel is new and has room.
    let _ = tx.try_send(Parcel::from(Arc::new(subscribed)));
    let (end, taken) = (Arc::new(OnceLock::new()), Arc::new(AtomicU64::new(0)));
    (
        Deliveries {
            tx,
            end: end.clone(),
            taken: taken.clone(),
        },
        Ending { rx, end, taken },
    )
}

/// The receiving end of a subscription's channel, for [`DeliveryStream`].
pub(super) struct Ending {
    /// The stream's messages.
    rx: mpsc::Receiver<Parcel>,
    /// Why the stream ends, once known.
    end: Arc<OnceLock<Error>>,
    /// How many messages the client took.
    taken: Arc<AtomicU64>,
}

/// The stream a client reads: the channel's messages, each delivery's
/// offset stored for commit (AUTO with a group) as it is handed to gRPC,
/// then the reason it ended.
pub(super) struct DeliveryStream {
    /// Messages from the subscription task or the live tail.
    inner: ReceiverStream<Parcel>,
    /// Why the stream ends.
    end: Arc<OnceLock<Error>>,
    /// How many messages the client took.
    taken: Arc<AtomicU64>,
    /// The budget the message taken last holds: until gRPC asks for the
    /// next one, it is encoded and waits for the client's HTTP/2 window.
    sending: Option<Held>,
    /// Whether the final status was handed out.
    ended: bool,
    /// The consumer to store offsets in; `None` when nothing is committed.
    /// Weak: the task owns the consumer and closes it.
    consumer: Option<Weak<SubscriptionConsumer>>,
    /// Runs when the stream goes (the client left or the stream ended).
    on_end: Option<Box<dyn FnOnce() + Send>>,
    /// Woken each time the client takes a message and when the stream
    /// goes: a share's task, which watches many streams.
    wake: Option<Arc<Notify>>,
    /// Signs each delivery's ack id (acks at any replica, MANUAL).
    signing: Option<Routing>,
}

impl DeliveryStream {
    /// Streams what `ending` receives, storing offsets in `consumer` when
    /// given.
    pub(super) fn new(ending: Ending, consumer: Option<Weak<SubscriptionConsumer>>) -> Self {
        Self {
            inner: ReceiverStream::new(ending.rx),
            end: ending.end,
            taken: ending.taken,
            sending: None,
            ended: false,
            consumer,
            on_end: None,
            wake: None,
            signing: None,
        }
    }

    /// Signs each delivery's ack id with `routing`, when given.
    pub(super) fn signing(mut self, routing: Option<Routing>) -> Self {
        self.signing = routing;
        self
    }

    /// Wakes `wake` at each message the client takes and when the stream
    /// goes.
    pub(super) fn waking(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Runs `on_end` when the stream goes.
    pub(super) fn on_end(mut self, on_end: impl FnOnce() + Send + 'static) -> Self {
        self.on_end = Some(Box::new(on_end));
        self
    }
}

impl Drop for DeliveryStream {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
        // The receiver goes after this: the task sees the channel closed.
        if let Some(wake) = self.wake.take() {
            drop(std::mem::replace(
                &mut self.inner,
                ReceiverStream::new(mpsc::channel(1).1),
            ));
            wake.notify_one();
        }
    }
}

impl Stream for DeliveryStream {
    type Item = Result<SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let Some(parcel) = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx)) else {
            self.ended = true;
            let error = self.end.get().cloned().unwrap_or(Error::Interrupted);
            return Poll::Ready(Some(Err(Status::from(error))));
        };
        self.taken.fetch_add(1, Ordering::Relaxed);
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
        // gRPC asks for a message once the last one went out (HTTP/2 takes
        // no more while its window is shut): that one's bytes go back now.
        self.sending = parcel.held;
        let mut message = Arc::unwrap_or_clone(parcel.message);
        if let (
            Some(routing),
            SubscribeResponse {
                kind: Some(Kind::Delivery(delivery)),
            },
        ) = (&self.signing, &mut message)
        {
            routing.seal_ack(&mut delivery.ack_id);
        }
        if let (
            SubscribeResponse {
                kind: Some(Kind::Delivery(delivery)),
            },
            Some(consumer),
        ) = (&message, &self.consumer)
        {
            if let Some(consumer) = consumer.upgrade() {
                if let Err(error) =
                    consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
                {
                    tracing::warn!(%error, topic = delivery.topic, "cannot store an offset");
                }
            }
        }
        Poll::Ready(Some(Ok(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    fn delivery(offset: i64) -> SubscribeResponse {
        SubscribeResponse {
            kind: Some(Kind::Delivery(eventgateway::v1::Delivery {
                offset,
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn a_stream_ends_with_its_reason_after_what_was_buffered() {
        let (deliveries, ending) = channel("s", 4);
        deliveries
            .tx
            .send(Parcel::from(Arc::new(delivery(7))))
            .await
            .unwrap();
        deliveries.end_with(Error::ShuttingDown);
        deliveries.end_with(Error::Interrupted);
        drop(deliveries);
        let mut stream = DeliveryStream::new(ending, None);
        assert!(matches!(
            stream.next().await,
            Some(Ok(SubscribeResponse {
                kind: Some(Kind::Subscribed(_))
            }))
        ));
        assert_eq!(stream.next().await.unwrap().unwrap(), delivery(7));
        let end = stream.next().await.unwrap().unwrap_err();
        assert_eq!(
            end.code(),
            tonic::Code::Unavailable,
            "the first reason wins"
        );
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_whose_senders_went_without_a_reason_ends_with_internal() {
        let (deliveries, ending) = channel("s", 4);
        drop(deliveries);
        let mut stream = DeliveryStream::new(ending, None);
        assert!(stream.next().await.unwrap().is_ok());
        let end = stream.next().await.unwrap().unwrap_err();
        assert_eq!(end.code(), tonic::Code::Internal, "{end:?}");
        assert!(stream.next().await.is_none());
    }
}

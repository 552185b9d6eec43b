//! A subscription's channel and the stream a client reads from it. The
//! channel carries deliveries, and at most one [`Error`] that ends the
//! stream; the error becomes its gRPC status here. With a consumer group in
//! ACK_MODE_AUTO, each delivery's offset is stored for commit the moment
//! gRPC takes it from the channel: "handed to the stream".

use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Duration;

use eventgateway::v1::{subscribe_response::Kind, SubscribeResponse, Subscribed};
use rdkafka::consumer::Consumer;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::Status;

use super::consumer::SubscriptionConsumer;
use crate::error::Error;

/// How long a stream that ends waits for room to tell its client why.
pub(super) const END_NOTICE: Duration = Duration::from_secs(2);

/// The sending end of a subscription's channel.
pub(super) type Deliveries = mpsc::Sender<Result<SubscribeResponse, Error>>;

/// A new subscription's channel of `buffer` messages, with its `subscribed`
/// message (naming subscription `id`) already in it.
pub(super) fn channel(
    id: &str,
    buffer: usize,
) -> (Deliveries, mpsc::Receiver<Result<SubscribeResponse, Error>>) {
    let (tx, rx) = mpsc::channel(buffer);
    let subscribed = SubscribeResponse {
        kind: Some(Kind::Subscribed(Subscribed {
            subscription_id: id.to_owned(),
        })),
    };
    // The channel is new and has room.
    let _ = tx.try_send(Ok(subscribed));
    (tx, rx)
}

/// The stream a client reads: the channel's messages, each delivery's
/// offset stored for commit (AUTO with a group) as it is handed to gRPC.
pub(super) struct DeliveryStream {
    /// Messages from the subscription task or the live tail.
    inner: ReceiverStream<Result<SubscribeResponse, Error>>,
    /// The consumer to store offsets in; `None` when nothing is committed.
    /// Weak: the task owns the consumer and closes it.
    consumer: Option<Weak<SubscriptionConsumer>>,
    /// Runs when the stream goes (the client left or the stream ended).
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl DeliveryStream {
    /// Streams `rx`, storing offsets in `consumer` when given.
    pub(super) fn new(
        rx: mpsc::Receiver<Result<SubscribeResponse, Error>>,
        consumer: Option<Weak<SubscriptionConsumer>>,
    ) -> Self {
        Self {
            inner: ReceiverStream::new(rx),
            consumer,
            on_end: None,
        }
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
    }
}

impl Stream for DeliveryStream {
    type Item = Result<SubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let (
            Some(Ok(SubscribeResponse {
                kind: Some(Kind::Delivery(delivery)),
            })),
            Some(consumer),
        ) = (&item, &self.consumer)
        {
            if let Some(consumer) = consumer.upgrade() {
                if let Err(error) =
                    consumer.store_offset(&delivery.topic, delivery.partition, delivery.offset)
                {
                    tracing::warn!(%error, topic = delivery.topic, "cannot store an offset");
                }
            }
        }
        Poll::Ready(item.map(|message| message.map_err(Status::from)))
    }
}

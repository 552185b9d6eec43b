//! The stream a client reads. With a consumer group in ACK_MODE_AUTO, each
//! delivery's offset is stored for commit the moment gRPC takes it from the
//! channel: "handed to the stream".

use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};

use eventgateway::v1::{subscribe_response::Kind, SubscribeResponse};
use rdkafka::consumer::Consumer;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::Status;

use super::SubscriptionConsumer;

/// The stream a client reads: the channel's deliveries, each of whose offset
/// is stored for commit (AUTO with a group) as it is handed to gRPC.
pub struct DeliveryStream {
    /// Deliveries from the subscription task.
    inner: ReceiverStream<Result<SubscribeResponse, Status>>,
    /// The consumer to store offsets in; `None` when nothing is committed.
    /// Weak: the task owns the consumer and closes it.
    consumer: Option<Weak<SubscriptionConsumer>>,
    /// Runs when the stream goes (the client left or the stream ended).
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl DeliveryStream {
    /// Streams `rx`, storing offsets in `consumer` when given.
    pub fn new(
        rx: mpsc::Receiver<Result<SubscribeResponse, Status>>,
        consumer: Option<Weak<SubscriptionConsumer>>,
    ) -> Self {
        Self {
            inner: ReceiverStream::new(rx),
            consumer,
            on_end: None,
        }
    }

    /// Runs `on_end` when the stream goes.
    pub fn on_end(mut self, on_end: impl FnOnce() + Send + 'static) -> Self {
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
        Poll::Ready(item)
    }
}

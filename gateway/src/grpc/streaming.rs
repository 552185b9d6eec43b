//! StreamingSubscribe: a subscription whose verbs ride its own stream. A
//! reader task takes the client's `settle` messages, hands them to the
//! subscription's task and queues each answer; the client reads the
//! subscription's messages and the answers on one stream. A client that
//! does not read its answers stops the gateway from reading its messages
//! (bounded memory). A message that breaks a bound ends the stream with
//! INVALID_ARGUMENT; the client ending its side leaves the subscription on.

use std::pin::Pin;
use std::task::{Context, Poll};

use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind as Outbound;
use eventgateway::v1::subscribe_response::Kind;
use eventgateway::v1::{StreamingSubscribeRequest, StreamingSubscribeResponse, SubscribeResponse};
use eventgateway_runtime::shutdown::Shutdown;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::{settle, validate};
use crate::error::Error;
use crate::route::{AckIds, Routing};
use crate::subscribe::{Settler, SubscribeStream};

/// Answers queued for a client before the gateway stops reading its
/// messages.
const ANSWERS: usize = 16;

/// The stream a StreamingSubscribe call answers with.
pub(super) type StreamingStream =
    Pin<Box<dyn Stream<Item = Result<StreamingSubscribeResponse, Status>> + Send>>;

/// Serves an opened subscription: `deliveries` for the client to read, and
/// the verbs `inbound` carries for `settler` (`None`: ACK_MODE_AUTO), read
/// by a task of `shutdown`'s; its ack ids are signed by this replica when
/// `routing` is on.
pub(super) fn serve(
    deliveries: SubscribeStream,
    settler: Option<Settler>,
    inbound: Streaming<StreamingSubscribeRequest>,
    (shutdown, routing): (&Shutdown, Option<Routing>),
) -> StreamingStream {
    let (answers_tx, answers) = mpsc::channel(ANSWERS);
    let answered_before_end = settler.is_some();
    // Under the shutdown's tracker and in the call's span, as every task.
    shutdown.spawn(read(inbound, (settler, routing), answers_tx).in_current_span());
    Box::pin(Merged::new(deliveries, answers, answered_before_end))
}

/// Reads the client's messages until it ends its side, the subscription
/// ends, or the client stops reading the stream.
async fn read(
    mut inbound: Streaming<StreamingSubscribeRequest>,
    (settler, routing): (Option<Settler>, Option<Routing>),
    answers: mpsc::Sender<Result<StreamingSubscribeResponse, Status>>,
) {
    let signed = AckIds::mine(routing.as_ref());
    let subscription_ended = async {
        match &settler {
            Some(settler) => settler.ended().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(subscription_ended);
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            () = &mut subscription_ended => return,
            () = answers.closed() => return,
        };
        let request = match message {
            Ok(Some(request)) => request,
            // The client ended its side: the subscription goes on.
            Ok(None) => return,
            // A message that did not arrive whole, or the client left.
            Err(status) => {
                let _ = answers.send(Err(status)).await;
                return;
            }
        };
        let answer = match request.kind {
            Some(Inbound::Settle(request)) => match validate::settle_request(request, signed) {
                Ok(verbs) => match &settler {
                    Some(settler) => match settle::settle(settler, verbs).await {
                        Ok(answer) => Ok(answer),
                        // The subscription ended meanwhile.
                        Err(_) => return,
                    },
                    None => Ok(settle::refuse_all(verbs)),
                },
                Err(error) => Err(error),
            },
            Some(Inbound::Subscribe(_)) => Err(Error::InvalidArgument(
                "the stream is subscribed already: only its first message may be subscribe".into(),
            )),
            None => Err(Error::InvalidArgument(
                "a message with neither subscribe nor settle".into(),
            )),
        };
        let answer = answer.map(|answer| StreamingSubscribeResponse {
            kind: Some(Outbound::Settled(answer)),
        });
        let last = answer.is_err();
        if answers.send(answer.map_err(Status::from)).await.is_err() || last {
            return;
        }
    }
}

/// The subscription's messages and the answers, on one stream; it ends
/// when the subscription's stream ends or an answer is an error. The
/// final status of a MANUAL subscription waits for the answers still on
/// their way: an ack the subscription applied just before it ended (as a
/// drain does once the last ack is in) is answered before the stream ends.
struct Merged {
    /// The subscription's messages, then its final status.
    deliveries: SubscribeStream,
    /// The answers; `None` once the reader is done.
    answers: Option<ReceiverStream<Result<StreamingSubscribeResponse, Status>>>,
    /// Whether the final status waits until the reader is done (it is done
    /// once the subscription ended, for a MANUAL subscription).
    answered_before_end: bool,
    /// The subscription's final status (`None`: ended without one), held
    /// until the answers are out.
    last: Option<Option<Status>>,
    /// Whether the final status was handed out.
    ended: bool,
}

impl Merged {
    fn new(
        deliveries: SubscribeStream,
        answers: mpsc::Receiver<Result<StreamingSubscribeResponse, Status>>,
        answered_before_end: bool,
    ) -> Self {
        Self {
            deliveries,
            answers: Some(ReceiverStream::new(answers)),
            answered_before_end,
            last: None,
            ended: false,
        }
    }
}

impl Stream for Merged {
    type Item = Result<StreamingSubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        loop {
            if let Some(answers) = self.answers.as_mut() {
                match Pin::new(answers).poll_next(cx) {
                    Poll::Ready(Some(answer)) => {
                        self.ended = answer.is_err();
                        return Poll::Ready(Some(answer));
                    }
                    Poll::Ready(None) => self.answers = None,
                    Poll::Pending if self.last.is_some() && self.answered_before_end => {
                        return Poll::Pending;
                    }
                    Poll::Pending => {}
                }
            }
            if let Some(last) = self.last.take() {
                self.ended = true;
                return Poll::Ready(last.map(Err));
            }
            match std::task::ready!(self.deliveries.as_mut().poll_next(cx)) {
                Some(Ok(message)) => return Poll::Ready(Some(Ok(streamed(message)))),
                Some(Err(status)) => self.last = Some(Some(status)),
                None => self.last = Some(None),
            }
        }
    }
}

/// A subscription message as StreamingSubscribe carries it.
fn streamed(message: SubscribeResponse) -> StreamingSubscribeResponse {
    StreamingSubscribeResponse {
        kind: message.kind.map(|kind| match kind {
            Kind::Subscribed(subscribed) => Outbound::Subscribed(subscribed),
            Kind::Delivery(delivery) => Outbound::Delivery(delivery),
            Kind::Rebalance(rebalance) => Outbound::Rebalance(rebalance),
        }),
    }
}

#[cfg(test)]
mod tests {
    use eventgateway::v1::SettleResponse;
    use futures_util::FutureExt;
    use tokio_stream::StreamExt;

    use super::*;

    fn settled() -> Result<StreamingSubscribeResponse, Status> {
        Ok(StreamingSubscribeResponse {
            kind: Some(Outbound::Settled(SettleResponse::default())),
        })
    }

    /// A subscription that has ended with `status`.
    fn ended(status: Status) -> SubscribeStream {
        Box::pin(tokio_stream::iter([Err(status)]))
    }

    /// The next item is the final UNAVAILABLE, and nothing follows.
    async fn ends_unavailable(merged: &mut Merged) {
        let last = merged.next().await.unwrap().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Unavailable);
        assert!(merged.next().await.is_none());
    }

    #[tokio::test]
    async fn an_answer_on_its_way_when_a_manual_subscription_ends_comes_before_the_end() {
        let (answers_tx, answers) = mpsc::channel(ANSWERS);
        let mut merged = Merged::new(ended(Status::unavailable("shutting down")), answers, true);
        // The subscription has ended, the reader has not handed the last
        // answer on yet: the stream waits for it.
        assert!(merged.next().now_or_never().is_none());
        answers_tx.send(settled()).await.unwrap();
        let answer = merged.next().await.unwrap().unwrap();
        assert!(matches!(answer.kind, Some(Outbound::Settled(_))));
        assert!(merged.next().now_or_never().is_none());
        // The reader is done: then the final status.
        drop(answers_tx);
        ends_unavailable(&mut merged).await;
    }

    #[tokio::test]
    async fn an_auto_subscription_ends_without_waiting_for_its_reader() {
        let (_answers_tx, answers) = mpsc::channel(ANSWERS);
        let mut merged = Merged::new(ended(Status::unavailable("shutting down")), answers, false);
        ends_unavailable(&mut merged).await;
    }

    #[tokio::test]
    async fn answers_already_queued_come_before_the_end() {
        let (answers_tx, answers) = mpsc::channel(ANSWERS);
        answers_tx.send(settled()).await.unwrap();
        drop(answers_tx);
        let mut merged = Merged::new(Box::pin(tokio_stream::empty()), answers, true);
        assert!(merged.next().await.unwrap().is_ok());
        assert!(merged.next().await.is_none());
    }
}

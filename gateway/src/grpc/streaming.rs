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
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Status, Streaming};

use super::{settle, validate};
use crate::error::Error;
use crate::subscribe::{Settler, SubscribeStream};

/// Answers queued for a client before the gateway stops reading its
/// messages.
const ANSWERS: usize = 16;

/// The stream a StreamingSubscribe call answers with.
pub(super) type StreamingStream =
    Pin<Box<dyn Stream<Item = Result<StreamingSubscribeResponse, Status>> + Send>>;

/// Serves an opened subscription: `deliveries` for the client to read, and
/// the verbs `inbound` carries for `settler` (`None`: ACK_MODE_AUTO).
pub(super) fn serve(
    deliveries: SubscribeStream,
    settler: Option<Settler>,
    inbound: Streaming<StreamingSubscribeRequest>,
) -> StreamingStream {
    let (answers_tx, answers) = mpsc::channel(ANSWERS);
    tokio::spawn(read(inbound, settler, answers_tx));
    Box::pin(Merged {
        deliveries,
        answers: Some(ReceiverStream::new(answers)),
        ended: false,
    })
}

/// Reads the client's messages until it ends its side, the subscription
/// ends, or the client stops reading the stream.
async fn read(
    mut inbound: Streaming<StreamingSubscribeRequest>,
    settler: Option<Settler>,
    answers: mpsc::Sender<Result<StreamingSubscribeResponse, Status>>,
) {
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
            Some(Inbound::Settle(request)) => match validate::settle_request(request) {
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
/// when the subscription's stream ends or an answer is an error.
struct Merged {
    /// The subscription's messages, then its final status.
    deliveries: SubscribeStream,
    /// The answers; `None` once the reader is done.
    answers: Option<ReceiverStream<Result<StreamingSubscribeResponse, Status>>>,
    /// Whether the final status was handed out.
    ended: bool,
}

impl Stream for Merged {
    type Item = Result<StreamingSubscribeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(answers) = self.answers.as_mut() {
            match Pin::new(answers).poll_next(cx) {
                Poll::Ready(Some(answer)) => {
                    self.ended = answer.is_err();
                    return Poll::Ready(Some(answer));
                }
                Poll::Ready(None) => self.answers = None,
                Poll::Pending => {}
            }
        }
        match std::task::ready!(self.deliveries.as_mut().poll_next(cx)) {
            Some(Ok(message)) => Poll::Ready(Some(Ok(streamed(message)))),
            Some(Err(status)) => {
                self.ended = true;
                Poll::Ready(Some(Err(status)))
            }
            None => {
                self.ended = true;
                Poll::Ready(None)
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

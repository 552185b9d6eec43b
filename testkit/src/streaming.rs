//! A StreamingSubscribe client the way the tests use it: deliveries and
//! settle answers read from one stream, each answer matched to its request.

use std::collections::VecDeque;
use std::time::Duration;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{
    DeadLetter, Delivery, Extend, Nack, Rebalance, SettleOutcome, SettleRequest, SettleResponse,
    StreamingSubscribeRequest, StreamingSubscribeResponse, SubscribeRequest,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::wait::PATIENCE;

/// One StreamingSubscribe stream.
pub struct Streamer {
    /// The subscription's id.
    pub id: String,
    /// The client's side of the stream.
    requests: Option<mpsc::Sender<StreamingSubscribeRequest>>,
    /// The gateway's side.
    stream: Streaming<StreamingSubscribeResponse>,
    /// Deliveries that came while an answer was awaited.
    deliveries: VecDeque<Delivery>,
    /// Answers that came while a delivery was awaited.
    answers: VecDeque<SettleResponse>,
    /// Rebalance notices not yet taken.
    rebalances: VecDeque<Rebalance>,
    /// The next request id.
    next: u64,
}

/// The outcome of each ack id of an answer.
pub fn outcomes(answer: &SettleResponse) -> Vec<SettleOutcome> {
    answer
        .results
        .iter()
        .map(|r| SettleOutcome::try_from(r.outcome).expect("a known outcome"))
        .collect()
}

/// A message sent on a stream that carries `request`.
pub fn subscribe_message(request: SubscribeRequest) -> StreamingSubscribeRequest {
    StreamingSubscribeRequest {
        kind: Some(Inbound::Subscribe(request)),
    }
}

impl Streamer {
    /// Opens a stream and subscribes with `request`; fails the test unless
    /// `subscribed` comes first.
    pub async fn open(client: &mut EventGatewayClient<Channel>, request: SubscribeRequest) -> Self {
        Self::try_open(client, request)
            .await
            .expect("the subscription opens")
    }

    /// Opens a stream and subscribes with `request`: the stream, or the
    /// status that ended it.
    pub async fn try_open(
        client: &mut EventGatewayClient<Channel>,
        request: SubscribeRequest,
    ) -> Result<Self, Status> {
        let (requests, outbound) = mpsc::channel(64);
        requests
            .send(subscribe_message(request))
            .await
            .expect("the stream is new");
        let mut stream = client
            .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await?
            .into_inner();
        let first = stream.message().await?;
        let Some(StreamingSubscribeResponse {
            kind: Some(Kind::Subscribed(subscribed)),
        }) = first
        else {
            panic!("expected subscribed first, got {first:?}");
        };
        Ok(Self {
            id: subscribed.subscription_id,
            requests: Some(requests),
            stream,
            deliveries: VecDeque::new(),
            answers: VecDeque::new(),
            rebalances: VecDeque::new(),
            next: 0,
        })
    }

    /// The next delivery, within [`PATIENCE`].
    pub async fn next_delivery(&mut self) -> Delivery {
        self.next_delivery_within(PATIENCE)
            .await
            .expect("a delivery arrives in time")
    }

    /// The next delivery, or `None` when none comes within `wait`.
    pub async fn next_delivery_within(&mut self, wait: Duration) -> Option<Delivery> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(delivery) = self.deliveries.pop_front() {
                return Some(delivery);
            }
            let message = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .ok()?;
            self.take(message);
        }
    }

    /// The next rebalance notice, within [`PATIENCE`]; deliveries and
    /// answers on the way are kept.
    pub async fn next_rebalance(&mut self) -> Rebalance {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(rebalance) = self.rebalances.pop_front() {
                return rebalance;
            }
            let message = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .expect("a rebalance notice arrives in time");
            self.take(message);
        }
    }

    /// Sends `request` (with a request id of its own) and waits for its
    /// answer; deliveries on the way are kept for [`Self::next_delivery`].
    pub async fn settle(&mut self, mut request: SettleRequest) -> SettleResponse {
        self.next += 1;
        let id = format!("r{}", self.next);
        request.request_id = id.clone();
        self.send(request).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.answers.iter().position(|a| a.request_id == id) {
                return self.answers.remove(at).expect("found");
            }
            let message = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .expect("the answer comes in time");
            self.take(message);
        }
    }

    /// Sends `request` without waiting for its answer.
    pub async fn send(&mut self, request: SettleRequest) {
        self.send_raw(StreamingSubscribeRequest {
            kind: Some(Inbound::Settle(request)),
        })
        .await;
    }

    /// Sends any message.
    pub async fn send_raw(&mut self, message: StreamingSubscribeRequest) {
        self.requests
            .as_ref()
            .expect("the client's side is open")
            .send(message)
            .await
            .expect("the stream takes messages");
    }

    /// Ends the client's side of the stream.
    pub fn close_side(&mut self) {
        self.requests = None;
    }

    /// Acks `deliveries`.
    pub async fn ack(&mut self, deliveries: &[&Delivery]) -> SettleResponse {
        self.settle(SettleRequest {
            acks: deliveries.iter().map(|d| d.ack_id.clone()).collect(),
            ..SettleRequest::default()
        })
        .await
    }

    /// Nacks `delivery`, to come again after `delay` (`None`: the policy's).
    pub async fn nack(&mut self, delivery: &Delivery, delay: Option<Duration>) -> SettleResponse {
        self.settle(nack(delivery, delay)).await
    }

    /// Extends `delivery`'s deadline to `by` from now.
    pub async fn extend(&mut self, delivery: &Delivery, by: Duration) -> SettleResponse {
        self.settle(SettleRequest {
            extends: vec![Extend {
                ack_id: delivery.ack_id.clone(),
                extension: Some(by.try_into().expect("a duration")),
            }],
            ..SettleRequest::default()
        })
        .await
    }

    /// Dead-letters `delivery` now, for `reason`.
    pub async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> SettleResponse {
        self.settle(dead_letter(delivery, reason)).await
    }

    /// The status that ends the stream, within [`PATIENCE`]; deliveries and
    /// answers on the way are kept.
    pub async fn status(&mut self) -> Status {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.message())
                .await
                .expect("the stream ends in time");
            match message {
                Ok(Some(message)) => self.take(Ok(Some(message))),
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    }

    fn take(&mut self, message: Result<Option<StreamingSubscribeResponse>, Status>) {
        match message.map(|m| m.and_then(|m| m.kind)) {
            Ok(Some(Kind::Delivery(delivery))) => self.deliveries.push_back(delivery),
            Ok(Some(Kind::Settled(answer))) => self.answers.push_back(answer),
            Ok(Some(Kind::Rebalance(rebalance))) => self.rebalances.push_back(rebalance),
            Err(status) => panic!("the stream failed: {status:?}"),
            other => panic!("unexpected on the stream: {other:?}"),
        }
    }
}

/// A settle request nacking `delivery` with `delay`.
pub fn nack(delivery: &Delivery, delay: Option<Duration>) -> SettleRequest {
    SettleRequest {
        nacks: vec![Nack {
            ack_id: delivery.ack_id.clone(),
            delay: delay.map(|d| d.try_into().expect("a duration")),
        }],
        ..SettleRequest::default()
    }
}

/// A settle request dead-lettering `delivery` for `reason`.
pub fn dead_letter(delivery: &Delivery, reason: &str) -> SettleRequest {
    SettleRequest {
        dead_letters: vec![DeadLetter {
            ack_id: delivery.ack_id.clone(),
            reason: reason.into(),
        }],
        ..SettleRequest::default()
    }
}

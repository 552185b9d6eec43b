//! PublishEvents: a client's stream of events, each published as
//! PublishEvent publishes it and answered as Kafka confirms it, correlated by
//! the client's `request_id`; a request may carry a batch, answered once all
//! its events are done. At most [`IN_FLIGHT`] events of one stream are in
//! flight (and one batch more); a client that does not read its answers
//! stops the gateway from reading its requests (backpressure, bounded
//! memory).

use std::pin::Pin;
use std::time::Duration;

use eventgateway::trace_context;
use eventgateway::v1::publish_events_response::Result as Outcome;
use eventgateway::v1::publish_result::Result as BatchOutcome;
use eventgateway::v1::{
    PublishError, PublishEventResponse, PublishEventsRequest, PublishEventsResponse, PublishResult,
};
use eventgateway_runtime::shutdown::Shutdown;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Status, Streaming};
use tracing::Instrument;

use super::publish::PublishCalls;
use crate::auth::Caller;
use crate::error::Error;
use crate::spans;

/// Events of one stream published at once (a batch's events each count).
const IN_FLIGHT: usize = 256;

/// The stream type of PublishEvents.
pub(super) type PublishEventsStream =
    Pin<Box<dyn Stream<Item = Result<PublishEventsResponse, Status>> + Send>>;

/// Reads the client's requests and answers each one as it completes. At
/// shutdown it stops reading, answers what is in flight, and ends.
///
/// One task per stream drives both the reading and every publish in flight
/// (they mostly wait for Kafka): no task or span per event. Each event gets
/// `request_timeout` to be stored.
pub(super) fn serve(
    calls: PublishCalls,
    (request_timeout, idle_timeout): (Duration, Duration),
    shutdown: &Shutdown,
    request: Request<Streaming<PublishEventsRequest>>,
    places: Box<dyn Send>,
) -> PublishEventsStream {
    let caller = trace_context::from_metadata(request.metadata());
    let span = spans::rpc_server("PublishEvents", &caller);
    let from = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default();
    let mut inbound = request.into_inner();
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let mut stopping_handle = shutdown.clone();
    shutdown.spawn(
        async move {
            // The stream counts against --max-publish-streams (and its
            // caller's share of it) until it ends.
            let _places = places;
            let calls = &calls;
            let from = &from;
            let mut in_flight = FuturesUnordered::new();
            // Events in flight: a batch counts all of its own.
            let mut events = 0;
            let mut reading = true;
            // Why the client's side failed, when it did.
            let mut failed = None;
            // One wait for the shutdown for the whole stream, not one per turn.
            let stopping = stopping_handle.started();
            tokio::pin!(stopping);
            // A stream that sends nothing (and awaits nothing) for the idle
            // timeout ends, freeing its place.
            let idle = tokio::time::sleep(idle_timeout);
            tokio::pin!(idle);
            loop {
                tokio::select! {
                    biased;
                    () = &mut stopping, if reading => reading = false,
                    () = &mut idle, if reading && in_flight.is_empty() => {
                        failed = Some(Error::PublishStreamIdle(idle_timeout));
                        reading = false;
                    }
                    Some((answer, weight)) = in_flight.next(), if !in_flight.is_empty() => {
                        events -= weight;
                        // The client may have gone; its answers go with it.
                        let _ = tx.send(Ok(answer)).await;
                    }
                    next = inbound.message(), if reading && events < IN_FLIGHT => match next {
                        Ok(Some(item)) => {
                            idle.as_mut().reset(Instant::now() + idle_timeout);
                            let deadline = Instant::now() + request_timeout;
                            let weight = item.batch.len().max(1);
                            events += weight;
                            in_flight.push(publish(calls, from, item, deadline, caller.clone(), weight));
                        }
                        Ok(None) => reading = false,
                        Err(status) => {
                            tracing::debug!(code = ?status.code(), "the publisher's stream failed");
                            failed = Error::undecodable(&status);
                            reading = false;
                        }
                    },
                    else => break,
                }
            }
            // Every answer is out: a request that could not be decoded ends
            // the stream with what was wrong with it.
            if let Some(error) = failed {
                let _ = tx.send(Err(Status::from(error))).await;
            }
        }
        .instrument(span),
    );
    Box::pin(ReceiverStream::new(rx))
}

/// Publishes one request of the stream (an event or a batch) and builds its
/// answer; returns it with the request's `weight`.
async fn publish(
    calls: &PublishCalls,
    from: &Caller,
    item: PublishEventsRequest,
    deadline: Instant,
    caller: opentelemetry::Context,
    weight: usize,
) -> (PublishEventsResponse, usize) {
    let PublishEventsRequest {
        request_id,
        publish,
        batch,
    } = item;
    let mut answer = PublishEventsResponse {
        request_id,
        result: None,
        batch: Vec::new(),
    };
    let outcome = match (publish, batch.is_empty()) {
        (Some(publish), true) => calls.publish(publish, from, deadline, caller).await,
        (None, false) => match calls.publish_batch(batch, from, deadline, &caller).await {
            Ok(outcomes) => {
                answer.batch = outcomes
                    .into_iter()
                    .map(|outcome| PublishResult {
                        result: Some(match outcome {
                            Ok(stored) => BatchOutcome::Stored(stored),
                            Err(error) => BatchOutcome::Error(publish_error(&error)),
                        }),
                    })
                    .collect();
                return (answer, weight);
            }
            Err(error) => Err(error),
        },
        (Some(_), false) => Err(Error::InvalidArgument(
            "both publish and batch are set: set one of them".into(),
        )),
        (None, true) => Err(Error::InvalidArgument(
            "publish is missing: set the event to publish, or a batch".into(),
        )),
    };
    answer.result = Some(outcome_of(outcome));
    (answer, weight)
}

fn outcome_of(outcome: Result<PublishEventResponse, Error>) -> Outcome {
    match outcome {
        Ok(stored) => Outcome::Stored(stored),
        Err(error) => Outcome::Error(publish_error(&error)),
    }
}

fn publish_error(error: &Error) -> PublishError {
    PublishError {
        code: error.code() as i32,
        message: error.to_string(),
    }
}

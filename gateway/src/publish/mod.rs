//! Where a published event goes: the gateway fills its id and time, makes
//! sure its topic exists, carries the caller's trace into the record, and
//! hands the record to the one producer; the answer comes once Kafka stored
//! it. PublishEvent and PublishEvents publish through here alike.

mod unconfirmed;

use std::collections::HashMap;
use std::future::Future;
use std::time::SystemTime;

use eventgateway::record::{payload_to_record, OutgoingRecord, Payload};
use eventgateway::trace_context;
use eventgateway::v1::{PublishEventRequest, PublishEventResponse};
use futures_util::FutureExt;
use rdkafka::producer::future_producer::Delivery;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::error::Error;
use crate::health::Readiness;
use crate::kafka::topics::Topics;
use crate::kafka::writable::Writability;
use crate::spans;

use crate::kafka::publisher::{future_record, stored, Publisher};

/// A publish request that passed validation, with its payload encoded once
/// (and its size checked against that encoding).
#[derive(Debug)]
pub(crate) struct Publish {
    /// The request: a legal topic, and an event whose payload was moved
    /// into `payload`.
    pub(crate) request: PublishEventRequest,
    /// The payload as the record value.
    pub(crate) payload: Payload,
}

/// Publishes events; cloning shares the producer and the topic cache.
#[derive(Clone)]
pub(crate) struct Publishing {
    /// The one producer.
    publisher: Publisher,
    /// Which topics exist.
    topics: Topics,
    /// Why a topic cannot take writes, for an event Kafka did not confirm.
    writability: Writability,
    /// Whether new work may start.
    readiness: Readiness,
}

impl Publishing {
    /// Publishes through `publisher` to the topics `topics` checks, while
    /// `readiness` allows; an event Kafka does not confirm in time is
    /// answered with what `writability` finds.
    pub(crate) fn new(
        publisher: Publisher,
        topics: Topics,
        writability: Writability,
        readiness: Readiness,
    ) -> Self {
        Self {
            publisher,
            topics,
            writability,
            readiness,
        }
    }

    /// Whether `topic` is known to exist.
    pub(crate) fn topic_exists(&self, topic: &str) -> bool {
        self.topics.is_known(topic)
    }

    /// Publishes one event and answers where Kafka stored it; the answer
    /// comes by `deadline`. The produce span continues `caller`'s trace.
    pub(crate) async fn publish(
        &self,
        publish: Publish,
        deadline: Instant,
        caller: opentelemetry::Context,
    ) -> Result<PublishEventResponse, Error> {
        self.readiness.check()?;
        tokio::time::timeout_at(deadline, self.topics.ensure(&publish.request.topic))
            .await
            .map_err(|_| Error::DeadlineExceeded)??;
        let prepared = prepare(publish, &caller);
        // Once sent, the answer is Kafka's own (or the deadline's): a failed
        // health probe meanwhile is no reason to give up on the event.
        let sending = self.publisher.send_record(
            future_record(&prepared.topic, &prepared.record),
            Some(deadline),
        );
        let timed = self.publisher.needs_timer(deadline);
        let stored =
            unconfirmed::with_cause(sending, &self.writability, &prepared.topic, deadline, timed)
                .instrument(prepared.span.clone())
                .await;
        self.answered(prepared, stored)
    }

    /// Publishes the events of a batch (those admitted; the others keep
    /// their error) and answers each, in the batch's order, by `deadline`.
    /// Each topic is looked up once, the events reach the producer in the
    /// batch's order (those of one key keep it), and one timer serves the
    /// whole batch. Each event's produce span continues `caller`'s trace.
    pub(crate) async fn publish_batch(
        &self,
        batch: Vec<Result<Publish, Error>>,
        deadline: Instant,
        caller: &opentelemetry::Context,
    ) -> Vec<Result<PublishEventResponse, Error>> {
        let ready = self.readiness.check();
        let mut topics = Found::default();
        for publish in batch.iter().flatten() {
            let topic = &publish.request.topic;
            if ready.is_ok() && topics.get(topic).is_none() {
                let found = tokio::time::timeout_at(deadline, self.topics.ensure(topic))
                    .await
                    .unwrap_or(Err(Error::DeadlineExceeded));
                topics.insert(topic, found);
            }
        }
        let mut outcomes: Vec<Option<Result<PublishEventResponse, Error>>> =
            Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        for (index, publish) in batch.into_iter().enumerate() {
            let prepared = publish.and_then(|publish| {
                ready.clone()?;
                if let Some(Err(error)) = topics.get(&publish.request.topic) {
                    return Err(error.clone());
                }
                Ok(prepare(publish, caller))
            });
            let enqueued = prepared.map(|prepared| {
                let sent = {
                    let _produce = prepared.span.enter();
                    self.publisher
                        .enqueue(future_record(&prepared.topic, &prepared.record))
                };
                (prepared, sent)
            });
            outcomes.push(match enqueued {
                Ok((prepared, Ok(delivery))) => {
                    waiting.push((index, prepared, delivery));
                    None
                }
                Ok((prepared, Err(error))) => Some(self.answered(prepared, Err(error))),
                Err(error) => Some(Err(error)),
            });
        }
        let timed = self.publisher.needs_timer(deadline);
        for (index, prepared, answer) in in_order(waiting, deadline, timed).await {
            if let Some(answer) = answer {
                let stored = stored(&prepared.topic, answer);
                outcomes[index] = Some(self.answered(prepared, stored));
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Err(Error::DeadlineExceeded)))
            .collect()
    }

    /// The answer for a prepared event once Kafka stored it (or did not),
    /// recorded on its span; a topic Kafka says is not there is looked up
    /// again next time.
    fn answered(
        &self,
        prepared: Prepared,
        stored: Result<Delivery, Error>,
    ) -> Result<PublishEventResponse, Error> {
        let Prepared {
            topic,
            event_id,
            time,
            span,
            ..
        } = prepared;
        match stored {
            Ok(stored) => {
                span.record("messaging.destination.partition.id", stored.partition);
                span.record("messaging.kafka.offset", stored.offset);
                Ok(PublishEventResponse {
                    event_id,
                    topic,
                    partition: stored.partition,
                    offset: stored.offset,
                    timestamp: Some(time),
                })
            }
            Err(error) => {
                if matches!(error, Error::TopicNotFound(_)) {
                    self.topics.forget(&topic);
                }
                Err(error)
            }
        }
    }
}

/// Waits for each of `waiting`'s answers in turn, until `deadline` (when
/// `timed`), and gives every item with its answer, or with none when it
/// had none by the deadline. Kafka answers a partition's events in the
/// order they were sent, so they are awaited in order: the task wakes when
/// the first one it waits for is answered, and finds most of those after it
/// answered too, instead of waking for each event. At the deadline, those
/// answered meanwhile keep their answer.
async fn in_order<T, F: Future>(
    waiting: Vec<(usize, T, F)>,
    deadline: Instant,
    timed: bool,
) -> Vec<(usize, T, Option<F::Output>)> {
    let mut answered = Vec::with_capacity(waiting.len());
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let mut waiting = waiting.into_iter();
    for (index, item, answer) in waiting.by_ref() {
        tokio::select! {
            biased;
            answer = answer => answered.push((index, item, Some(answer))),
            () = &mut timer, if timed => {
                answered.push((index, item, None));
                break;
            }
        }
    }
    for (index, item, answer) in waiting {
        answered.push((index, item, answer.now_or_never()));
    }
    answered
}

/// What looking up each topic of a batch found. A batch mostly names one
/// topic, so the topic found last is compared first, and a name is hashed
/// only when it differs from the one before.
#[derive(Default)]
struct Found {
    /// Each topic looked up, and what was found.
    topics: Vec<(String, Result<(), Error>)>,
    /// Where each topic is in `topics`.
    by_name: HashMap<String, usize>,
    /// The topic found last.
    last: usize,
}

impl Found {
    /// What was found for `topic`, if it was looked up.
    fn get(&mut self, topic: &str) -> Option<&Result<(), Error>> {
        match self.topics.get(self.last) {
            Some((name, _)) if name == topic => {}
            _ => self.last = *self.by_name.get(topic)?,
        }
        self.topics.get(self.last).map(|(_, found)| found)
    }

    /// Keeps what looking up `topic` found.
    fn insert(&mut self, topic: &str, found: Result<(), Error>) {
        self.last = self.topics.len();
        self.by_name.insert(topic.to_owned(), self.last);
        self.topics.push((topic.to_owned(), found));
    }
}

/// An event made into its record, with the produce span that follows it to
/// Kafka.
struct Prepared {
    /// Where it goes.
    topic: String,
    /// The record for Kafka.
    record: OutgoingRecord,
    /// Its id (the client's, or one the gateway made).
    event_id: String,
    /// Its time (the client's, or when the gateway took it).
    time: prost_types::Timestamp,
    /// The produce span; the record carries its trace context.
    span: Span,
}

/// Fills an event's id and time when the client left them out, and makes it
/// a record carrying the trace context of its produce span, which continues
/// `caller`'s trace.
fn prepare(publish: Publish, caller: &opentelemetry::Context) -> Prepared {
    let Publish { request, payload } = publish;
    let PublishEventRequest { topic, key, event } = request;
    let mut event = event.unwrap_or_default();
    if event.id.is_empty() {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        event.id = uuid::Uuid::now_v7()
            .hyphenated()
            .encode_lower(&mut text)
            .to_owned();
    }
    let time = *event
        .time
        .get_or_insert_with(|| prost_types::Timestamp::from(SystemTime::now()));
    // The record carries the send's trace context to its consumers.
    let span = spans::produce(&topic);
    let context = spans::downstream_context(&span, caller);
    if let Some(trace_id) = trace_context::trace_id(&context) {
        span.record("trace_id", trace_id.as_str());
        trace_context::into_attributes(&context, &mut event.attributes);
    }
    let event_id = event.id.clone();
    let record = payload_to_record(&key, event, payload);
    Prepared {
        topic,
        record,
        event_id,
        time,
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_finds_each_topic_it_looked_up_whatever_the_order() {
        let mut found = Found::default();
        assert!(found.get("orders").is_none());
        found.insert("orders", Ok(()));
        found.insert("gone", Err(Error::TopicNotFound("gone".into())));
        for (topic, exists) in [("orders", true), ("gone", false), ("orders", true)] {
            let lookup = found
                .get(topic)
                .unwrap_or_else(|| panic!("{topic} looked up"));
            assert_eq!(lookup.is_ok(), exists, "{topic}");
        }
        assert!(found.get("other").is_none());
        assert!(found.get("gone").is_some_and(Result::is_err));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_awaited_in_order_and_those_in_by_the_deadline_are_kept() {
        let (first, second, third) = (
            tokio::sync::oneshot::channel::<u32>(),
            tokio::sync::oneshot::channel::<u32>(),
            tokio::sync::oneshot::channel::<u32>(),
        );
        let waiting = vec![(0, "a", first.1), (1, "b", second.1), (2, "c", third.1)];
        // The first and the third are answered; the second never is.
        first.0.send(1).unwrap();
        third.0.send(3).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let answers = in_order(waiting, deadline, true).await;
        let answers: Vec<_> = answers
            .into_iter()
            .map(|(index, item, answer)| (index, item, answer.map(Result::ok)))
            .collect();
        assert_eq!(
            answers,
            [
                (0, "a", Some(Some(1))),
                (1, "b", None),
                (2, "c", Some(Some(3)))
            ]
        );
        assert!(
            Instant::now() >= deadline,
            "waited for the second until the deadline"
        );
        drop(second.0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timer_every_answer_is_awaited() {
        let (sender, receiver) = tokio::sync::oneshot::channel::<u32>();
        let deadline = Instant::now() + std::time::Duration::from_millis(1);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            sender.send(7).unwrap();
        });
        let answers = in_order(vec![(0, (), receiver)], deadline, false).await;
        assert_eq!(answers[0].2.as_ref().map(|a| *a.as_ref().unwrap()), Some(7));
    }
}

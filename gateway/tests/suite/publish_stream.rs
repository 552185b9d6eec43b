//! PublishEvents: one answer per request, correlated by request id, each
//! meaning what PublishEvent's answer means; a batch answered event by event
//! in its order, or refused whole.

use std::collections::{HashMap, HashSet};

use eventgateway::v1::publish_events_response::Result as Outcome;
use eventgateway::v1::publish_result::Result as BatchOutcome;
use eventgateway::v1::{PublishEventRequest, PublishEventsRequest, PublishResult};
use serde_json::json;
use testkit::*;
use tonic::Code;

#[tokio::test]
async fn a_stream_of_publishes_gets_one_answer_per_request() {
    let (_broker, topic, gateway, mut client) = fixture("stream", 2).await;
    let total = 60;
    let requests: Vec<PublishEventsRequest> = (0..total)
        .map(|i| {
            let target = match i {
                13 => "bad topic".to_owned(),
                21 => format!("{topic}-missing"),
                _ => topic.clone(),
            };
            PublishEventsRequest {
                request_id: format!("r{i}"),
                publish: (i != 7).then(|| PublishEventRequest {
                    topic: target,
                    key: format!("k{i}"),
                    event: Some(json_event(json!({"n": i}))),
                }),
                batch: Vec::new(),
            }
        })
        .collect();
    let mut answers = client
        .publish_events(tokio_stream::iter(requests))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut by_id = HashMap::new();
    while let Some(answer) = answers.message().await.expect("a healthy stream") {
        assert!(by_id
            .insert(answer.request_id.clone(), answer.result)
            .is_none());
    }
    assert_eq!(by_id.len(), total, "one answer per request");

    let code = |id: &str| match &by_id[id] {
        Some(Outcome::Error(error)) => Code::from_i32(error.code),
        other => panic!("{id}: expected an error, got {other:?}"),
    };
    assert_eq!(
        code("r7"),
        Code::InvalidArgument,
        "no publish in the request"
    );
    assert_eq!(code("r13"), Code::InvalidArgument, "illegal topic");
    assert_eq!(code("r21"), Code::NotFound, "missing topic");
    let stored: HashSet<(i32, i64)> = by_id
        .values()
        .filter_map(|r| match r {
            Some(Outcome::Stored(stored)) => Some((stored.partition, stored.offset)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stored.len(),
        total - 3,
        "every other request was stored, each at its own offset"
    );

    // They are all in the topic.
    let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
    let mut seen = HashSet::new();
    while seen.len() < total - 3 {
        seen.insert(n(&next_delivery(&mut stream).await));
    }
    assert!(!seen.contains(&7) && !seen.contains(&13) && !seen.contains(&21));
    gateway.shutdown().await.unwrap();
}

/// One request of a PublishEvents stream carrying `batch`.
fn batch_request(id: &str, batch: Vec<PublishEventRequest>) -> PublishEventsRequest {
    PublishEventsRequest {
        request_id: id.into(),
        publish: None,
        batch,
    }
}

fn numbered(topic: &str, n: i64, bytes: usize) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.to_owned(),
        key: "one key".into(),
        event: Some(json_event(json!({"n": n, "pad": "x".repeat(bytes)}))),
    }
}

#[tokio::test]
async fn a_batch_is_answered_event_by_event_in_order_or_refused_whole() {
    let (broker, topic, gateway, mut client) = fixture_with("batch", 1, |config| {
        config.limits.max_payload_bytes = 2_000;
    })
    .await;
    // 50 events of one key, the 18th with an illegal topic.
    let mut first: Vec<PublishEventRequest> = (0..50).map(|n| numbered(&topic, n, 10)).collect();
    first[17].topic = "bad topic".into();
    // Over 4 x 2,000 bytes in all, though each event is under 2,000.
    let too_large: Vec<PublishEventRequest> =
        (100..110).map(|n| numbered(&topic, n, 1_000)).collect();
    let both = PublishEventsRequest {
        publish: Some(numbered(&topic, 200, 10)),
        ..batch_request("both", vec![numbered(&topic, 201, 10)])
    };
    let last = batch_request("last", vec![numbered(&topic, 300, 10)]);
    let requests = vec![
        batch_request("first", first),
        batch_request("too large", too_large),
        both,
        last,
    ];
    // One after the other, so that the offsets tell what was stored when.
    let mut answers = HashMap::new();
    for request in requests {
        let id = request.request_id.clone();
        let mut stream = client
            .publish_events(tokio_stream::iter([request]))
            .await
            .expect("the stream opens")
            .into_inner();
        let answer = stream.message().await.unwrap().expect("an answer");
        assert_eq!(answer.request_id, id);
        answers.insert(id, answer);
    }

    // The first batch: one result per event, in order; the bad one refused,
    // the others stored one after the other (one key, one partition).
    let first = &answers["first"];
    assert!(first.result.is_none(), "{first:?}");
    assert_eq!(first.batch.len(), 50);
    // A plain consumer reads them (from the first: they were written
    // together).
    let records = {
        let (brokers, topic) = (broker.brokers(), topic.clone());
        tokio::task::spawn_blocking(move || read_plain_range(&brokers, &topic, 0, 0, 49))
            .await
            .unwrap()
    };
    let mut expected_offset = 0;
    for (n, result) in first.batch.iter().enumerate() {
        match &result.result {
            Some(BatchOutcome::Error(error)) if n == 17 => {
                assert_eq!(
                    Code::from_i32(error.code),
                    Code::InvalidArgument,
                    "{error:?}"
                );
            }
            Some(BatchOutcome::Stored(stored)) if n != 17 => {
                assert_eq!(stored.offset, expected_offset, "event {n}");
                let record = &records[expected_offset as usize];
                let value: serde_json::Value =
                    serde_json::from_slice(rdkafka::Message::payload(record).unwrap()).unwrap();
                assert_eq!(value["n"], n as i64, "a plain consumer reads event {n}");
                expected_offset += 1;
            }
            other => panic!("event {n}: {other:?}"),
        }
    }
    // Refused whole: INVALID_ARGUMENT naming the bound, no result per event.
    for (id, names) in [("too large", "--max-payload-bytes"), ("both", "both")] {
        let answer = &answers[id];
        assert!(answer.batch.is_empty(), "{answer:?}");
        match &answer.result {
            Some(Outcome::Error(error)) => {
                assert_eq!(
                    Code::from_i32(error.code),
                    Code::InvalidArgument,
                    "{error:?}"
                );
                assert!(error.message.contains(names), "{error:?}");
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    // Nothing of those was stored: the next event takes the next offset.
    match &answers["last"].batch[..] {
        [PublishResult {
            result: Some(BatchOutcome::Stored(stored)),
        }] => assert_eq!(stored.offset, expected_offset),
        other => panic!("{other:?}"),
    }
    gateway.shutdown().await.unwrap();
}

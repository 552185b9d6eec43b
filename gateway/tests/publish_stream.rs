//! PublishEvents: one answer per request, correlated by request id, each
//! meaning what PublishEvent's answer means.

use std::collections::{HashMap, HashSet};

use eventgateway::v1::publish_events_response::Result as Outcome;
use eventgateway::v1::{PublishEventRequest, PublishEventsRequest};
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

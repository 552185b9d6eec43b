//! Refusals over the JSON API, each a JSON status with the HTTP status of
//! its gRPC code, nothing stored; and an event whose time is ahead of the
//! broker's clock, which Kafka 4 refuses as a record timestamp, stored
//! with the time it was sent as the record's timestamp.

use serde_json::json;
use testkit::*;
use tokio::process::Command;

use super::{curl, post_json, read_plain_async};

#[tokio::test]
async fn json_calls_are_refused_as_their_rpc_refuses_with_a_json_status() {
    let (broker, topic, gateway, _client) = fixture("http-api-refusals", 1).await;
    let base = format!("http://{}/v1", gateway.addr());
    for (url, body, status, code, says) in [
        (
            format!("{base}/topics/{topic}:publish"),
            "{}",
            400,
            3,
            "event is missing",
        ),
        (
            format!("{base}/topics/{topic}:publish"),
            "{\"event\": ",
            400,
            3,
            "not a PublishEventRequest in JSON",
        ),
        (
            format!("{base}/topics/{topic}:publish"),
            "{\"event\": {}, \"nope\": 1}",
            400,
            3,
            "unrecognized field",
        ),
        (
            format!("{base}/topics/missing-{topic}:publish"),
            "{\"event\": {\"text\": \"x\"}}",
            404,
            5,
            "does not exist",
        ),
        (
            format!("{base}/subscriptions/no-such:acknowledge"),
            "{\"ackIds\": [\"t:0:0:1\"]}",
            404,
            5,
            "subscription",
        ),
        (
            format!("{base}/subscriptions/no-such:settle"),
            "{\"acks\": [\"t:0:0:1\"]}",
            404,
            5,
            "subscription",
        ),
        (
            format!("{base}/subscriptions"),
            "{\"topics\": []}",
            400,
            3,
            "topics is empty",
        ),
    ] {
        let (got, answer) = post_json(&url, body, &[]).await;
        assert_eq!(got, status, "{url} {body}: {answer}");
        assert_eq!(answer["code"], code, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{url}: {answer}"
        );
    }
    // Not JSON: 415; a method a route does not take: 405 with Allow.
    let (status, answer) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: text/plain",
        "-d",
        "{}",
        &format!("{base}/topics/{topic}:publish"),
    ])
    .await;
    assert_eq!(status, 415, "{answer}");
    let output = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "-X",
            "DELETE",
            &format!("{base}/subscriptions"),
        ])
        .output()
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("allow: get, post"), "{head}");
    // An HTTP/1.1 request head over hyper's bounds: 431, and the
    // connection's next caller is served.
    let many: Vec<String> = (0..120).map(|n| format!("x-h{n}: v")).collect();
    let mut args = vec!["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--http1.1"];
    for header in &many {
        args.extend(["-H", header.as_str()]);
    }
    let url = format!("{base}/topics/{topic}:publish");
    args.push(&url);
    let output = Command::new("curl").args(&args).output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "431");
    // A browser's GET from another site's page does not open a stream.
    let (status, answer) = curl(&[
        "-H",
        "sec-fetch-site: cross-site",
        &format!("{base}/subscriptions?topics={topic}&group=g"),
    ])
    .await;
    assert_eq!(status, 403, "{answer}");
    // Nothing was stored by any of it.
    assert_eq!(records_in(&broker.brokers(), &topic).await, 0);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_event_time_ahead_of_the_broker_s_clock_is_stored_with_the_send_time_as_the_timestamp() {
    let (broker, topic, gateway, _client) = fixture("http-api-future", 1).await;
    let url = format!("http://{}/v1/topics/{topic}:publish", gateway.addr());
    let before = std::time::SystemTime::now();
    let mut answers = Vec::new();
    for time in ["2999-01-01T00:00:00Z", "2001-02-03T04:05:06Z"] {
        let event = json!({"event": {"type": "t", "source": "/s", "text": "x", "time": time}});
        let (status, answer) = post_json(&url, &event.to_string(), &[]).await;
        assert_eq!(status, 200, "{time}: {answer}");
        answers.push(answer);
    }
    let since_epoch = |at: std::time::SystemTime| {
        at.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let ahead = read_plain_async(&broker.brokers(), &topic, &answers[0]).await;
    let stamp = rdkafka::message::Message::timestamp(&ahead)
        .to_millis()
        .unwrap();
    assert!(
        (since_epoch(before)..=since_epoch(std::time::SystemTime::now())).contains(&stamp),
        "{stamp}"
    );
    let header = rdkafka::message::Message::headers(&ahead)
        .and_then(|headers| {
            use rdkafka::message::Headers as _;
            headers
                .iter()
                .find(|h| h.key == "ce_time")
                .and_then(|h| h.value)
        })
        .map(|value| String::from_utf8_lossy(value).into_owned());
    assert_eq!(header.as_deref(), Some("2999-01-01T00:00:00Z"));
    let past = read_plain_async(&broker.brokers(), &topic, &answers[1]).await;
    assert_eq!(
        rdkafka::message::Message::timestamp(&past).to_millis(),
        Some(981_173_106_000)
    );
    gateway.shutdown().await.unwrap();
}

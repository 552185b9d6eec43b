//! CloudEvents POSTed with curl, as a webhook sender or a shell script
//! would: in binary and structured mode they land in Kafka with the
//! CloudEvents Kafka binding's headers (binary mode in, binary mode out),
//! a plain Kafka consumer reads them, and the answer is PublishEvent's as
//! JSON. What is not a CloudEvent gets a clear 4xx and stores nothing;
//! with tokens, a call without one gets 401. Webhook routes (`webhooks`)
//! take plain bodies, signed or not.

mod hostile;
mod webhooks;

use rdkafka::message::{Headers, Message};
use serde_json::{json, Value};
use testkit::*;

/// Runs curl with `args` against the gateway: the HTTP status and the
/// JSON body.
pub(crate) async fn curl(args: &[&str]) -> (u16, Value) {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    let status: u16 = status.trim().parse().expect("an HTTP status");
    let body = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!("curl {args:?}: not JSON ({status}): {body:?} {stderr}")
    });
    (status, body)
}

/// The CloudEvents headers of a binary-mode event.
const BINARY: [&str; 4] = [
    "ce-specversion: 1.0",
    "ce-id: 1",
    "ce-source: /s",
    "ce-type: t",
];

/// curl's arguments to POST to `url` with `headers`, then `rest`.
fn post<'a>(url: &'a str, headers: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-X", "POST", url];
    for header in headers {
        args.extend(["-H", *header]);
    }
    args.extend(rest);
    args
}

/// The record an answer names, read by a plain Kafka consumer.
pub(crate) async fn stored(
    brokers: &str,
    topic: &str,
    answer: &Value,
) -> rdkafka::message::OwnedMessage {
    let partition = answer["partition"].as_i64().unwrap() as i32;
    let offset: i64 = answer["offset"].as_str().unwrap().parse().unwrap();
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_plain(&brokers, &topic, partition, offset))
        .await
        .unwrap()
}

fn header(record: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    let headers = record.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test]
async fn cloudevents_posted_with_curl_land_in_kafka_with_the_binding_s_headers() {
    let (broker, topic, gateway, _client) = fixture("http-ce", 1).await;
    let url = format!("http://{}/v1/topics/{topic}/events", gateway.addr());

    // Binary mode: ce-* headers, the body is the data, byte for byte.
    let headers = [
        "ce-specversion: 1.0",
        "ce-id: order-1",
        "ce-source: /shop",
        "ce-type: order.placed",
        "ce-subject: caf%C3%A9",
        "ce-partitionkey: customer-7",
        "content-type: application/json",
    ];
    let body = ["--data-binary", "{\"total\": 12.5}"];
    let (status, answer) = curl(&post(&url, &headers, &body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["eventId"], "order-1");
    assert_eq!(answer["topic"], topic.as_str());
    assert!(
        answer["timestamp"].as_str().unwrap().ends_with('Z'),
        "{answer}"
    );
    let record = stored(&broker.brokers(), &topic, &answer).await;
    assert_eq!(record.key(), Some(&b"customer-7"[..]));
    assert_eq!(record.payload(), Some(&b"{\"total\": 12.5}"[..]));
    for (name, value) in [
        ("ce_specversion", "1.0"),
        ("ce_id", "order-1"),
        ("ce_source", "/shop"),
        ("ce_type", "order.placed"),
        ("ce_subject", "café"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(header(&record, name).as_deref(), Some(value), "{name}");
    }

    // Structured mode: one JSON object, the data a JSON object.
    let event = json!({
        "specversion": "1.0", "id": "order-2", "source": "/shop", "type": "order.placed",
        "subject": "s-2", "time": "2026-12-07T10:00:00Z", "data": {"total": 3},
    });
    let structured = ["content-type: application/cloudevents+json"];
    let (status, answer) = curl(&post(
        &url,
        &structured,
        &["--data-binary", &event.to_string()],
    ))
    .await;
    assert_eq!(status, 200, "{answer}");
    let record = stored(&broker.brokers(), &topic, &answer).await;
    let value: Value = serde_json::from_slice(record.payload().unwrap()).unwrap();
    assert_eq!(value, json!({"total": 3}));
    assert_eq!(header(&record, "ce_id").as_deref(), Some("order-2"));
    assert_eq!(header(&record, "ce_subject").as_deref(), Some("s-2"));
    assert_eq!(
        header(&record, "ce_time").as_deref(),
        Some("2026-12-07T10:00:00Z")
    );
    assert_eq!(
        record.timestamp().to_millis(),
        Some(1_796_637_600_000),
        "the event time is the record's"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batch_is_answered_event_by_event_in_order() {
    let (broker, topic, gateway, _client) = fixture("http-batch", 1).await;
    let url = format!("http://{}/v1/topics/{topic}/events", gateway.addr());
    let event = |id: &str, subject: String| json!({"specversion": "1.0", "id": id, "source": "/s", "type": "t", "subject": subject, "data": {"id": id}});
    // The second event's subject is over the attribute limit (16 KiB).
    let batch = json!([
        event("b-1", "ok".into()),
        event("b-2", "x".repeat(17 * 1024)),
        event("b-3", "ok".into()),
    ]);
    let headers = ["content-type: application/cloudevents-batch+json"];
    let (status, answer) = curl(&post(
        &url,
        &headers,
        &["--data-binary", &batch.to_string()],
    ))
    .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{answer}");
    assert_eq!(results[0]["stored"]["eventId"], "b-1");
    assert_eq!(results[1]["error"]["code"], 3, "{answer}");
    assert!(results[1]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ce_subject"));
    assert_eq!(results[2]["stored"]["eventId"], "b-3");
    let offset = |at: usize| {
        results[at]["stored"]["offset"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(offset(0) < offset(2), "in the batch's order");
    assert_eq!(records_in(&broker.brokers(), &topic).await, 2);
    // Over its bounds, a batch is refused whole.
    let too_many = serde_json::Value::Array(vec![event("x", "s".into()); 1001]);
    let (status, answer) = curl(&post(
        &url,
        &headers,
        &["--data-binary", &too_many.to_string()],
    ))
    .await;
    assert_eq!(
        (status, answer["code"].as_i64()),
        (400, Some(3)),
        "{answer}"
    );
    assert_eq!(records_in(&broker.brokers(), &topic).await, 2);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn what_is_not_a_cloudevent_gets_a_clear_4xx_and_stores_nothing() {
    let (broker, topic, gateway, _client) = fixture_with("http-refused", 1, |config| {
        config.limits.max_payload_bytes = 1_000;
    })
    .await;
    let addr = gateway.addr();
    let url = format!("http://{addr}/v1/topics/{topic}/events");
    let big = "x".repeat(70 * 1024 + 1_000 + 1);
    let missing = format!("http://{addr}/v1/topics/http-missing-{topic}/events");
    let bad_topic = format!("http://{addr}/v1/topics/bad%20topic/events");
    let elsewhere = format!("http://{addr}/v1/elsewhere");
    let no_id = ["ce-specversion: 1.0", "ce-source: /s", "ce-type: t"];
    let structured = ["content-type: application/cloudevents+json"];
    let late = [&BINARY[..], &["request-timeout: soon"]].concat();
    let cases: Vec<(Vec<&str>, u16, i64, &str)> = vec![
        // Simple requests a browser sends cross-site without a preflight.
        (
            post(&url, &["content-type: text/plain"], &["-d", "{}"]),
            415,
            3,
            "not a CloudEvent",
        ),
        (post(&url, &[], &["-d", "a=b"]), 415, 3, "not a CloudEvent"),
        (
            post(&url, &["content-type: application/json"], &["-d", "{}"]),
            415,
            3,
            "not a CloudEvent",
        ),
        (vec![&url], 405, 12, "POSTed"),
        (post(&elsewhere, &[], &[]), 404, 5, "no such route"),
        (post(&url, &no_id, &[]), 400, 3, "needs id"),
        (
            post(&url, &structured, &["-d", "{\"id\":"]),
            400,
            3,
            "not JSON",
        ),
        (post(&bad_topic, &BINARY, &[]), 400, 3, "topic"),
        (post(&missing, &BINARY, &[]), 404, 5, "does not exist"),
        (
            post(&url, &BINARY, &["--data-binary", &big]),
            413,
            3,
            "over",
        ),
        (post(&url, &late, &[]), 400, 3, "Request-Timeout"),
    ];
    for (args, status, code, says) in cases {
        let (got, body) = curl(&args).await;
        assert_eq!(
            (got, body["code"].as_i64()),
            (status, Some(code)),
            "{args:?}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(says),
            "{args:?}: {body}"
        );
    }
    assert_eq!(
        records_in(&broker.brokers(), &topic).await,
        0,
        "nothing refused was stored"
    );
    // A payload within the limit goes.
    let (status, body) = curl(&post(&url, &BINARY, &["-d", "ok"])).await;
    assert_eq!(status, 200, "{body}");
    let metrics = gateway.metrics_addr().unwrap();
    for (status, count) in [(415, 3.0), (413, 1.0), (200, 1.0)] {
        let series = format!("gateway_http_requests_total{{status=\"{status}\"}}");
        assert_eq!(
            metric_value(metrics, &series).await,
            Some(count),
            "{series}"
        );
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_tls_with_tokens_a_post_without_one_gets_401_and_one_with_a_token_goes() {
    let edge = SecureEdge::new("http-tokens");
    let broker = Broker::start().await;
    let topic = topic("http-tokens");
    broker.create_topic(&topic, 1).await;
    let mut config = config(Some(broker.brokers()));
    edge.tokens(&mut config);
    edge.tls(&mut config, false);
    let gateway = gateway_tls(config, &edge.client(None)).await;
    let port = gateway.addr().port();
    let url = format!("https://localhost:{port}/v1/topics/{topic}/events");
    let ca = edge.ca_path.display().to_string();
    // localhost (the certificate's name) is 127.0.0.1 here, not ::1,
    // where another server may hold the same port.
    let resolve = format!("localhost:{port}:127.0.0.1");
    let event = post(
        &url,
        &BINARY,
        &["-d", "x", "--cacert", &ca, "--resolve", &resolve],
    );
    let (status, body) = curl(&event).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(16)), "{body}");
    let bearer = format!("authorization: Bearer {}", edge.token("svc-http"));
    let (status, body) = curl(&[&event[..], &["-H", &bearer]].concat()).await;
    assert_eq!(status, 200, "{body}");
    // Over HTTP/1.1 as over HTTP/2.
    let (status, body) = curl(&[&event[..], &["-H", &bearer, "--http1.1"]].concat()).await;
    assert_eq!(status, 200, "{body}");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_readme_s_curl_commands_work_as_written() {
    let (broker, topic, gateway, _client) = fixture("user-registered", 3).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let commands: Vec<String> = readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("curl ") && line.contains("/events"))
        .map(|line| {
            line.replace("localhost:50051", &gateway.addr().to_string())
                .replace("/topics/user-registered/", &format!("/topics/{topic}/"))
        })
        .collect();
    assert!(commands.len() >= 2, "{commands:?}");
    for command in commands {
        let output = tokio::process::Command::new("sh")
            .args(["-c", &format!("{command} -w '\\n%{{http_code}}'")])
            .output()
            .await
            .expect("sh runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("a status line");
        assert_eq!(status.trim(), "200", "{command}: {body}");
        let answer: Value = serde_json::from_str(body).unwrap();
        let record = stored(&broker.brokers(), &topic, &answer).await;
        assert_eq!(
            header(&record, "ce_type").as_deref(),
            Some("user.registered"),
            "{command}"
        );
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_broker, topic, gateway, _client) = fixture_with("http-slow", 1, |config| {
        config.edge.request_arrival_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .unwrap();
    let head = format!(
        "POST /v1/topics/{topic}/events HTTP/1.1\r\nHost: gateway\r\nce-specversion: 1.0\r\n\
         ce-id: 1\r\nce-source: /s\r\nce-type: t\r\nContent-Length: 100\r\n\r\nfirst bytes"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(PATIENCE, tcp.read(&mut answer))
        .await
        .expect("an answer before the client gives up")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    gateway.shutdown().await.unwrap();
}

//! Plain HTTP as a hostile client speaks it, over raw TCP: a request with
//! both Content-Length and Transfer-Encoding (the start of request
//! smuggling), pipelined requests, and thousands of idle keep-alive
//! connections. Nothing is stored twice or half, nothing smuggled is read,
//! and other callers go on. And a client still sending its body when the
//! answer came gets the answer whole.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use gateway::ConnectionOverrides;
use serde_json::Value;
use testkit::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{curl, post, BINARY};

/// A binary-mode CloudEvent request's head for `topic`, with `framing`
/// (the body's length headers) and event id `id`.
fn head(topic: &str, id: &str, framing: &str) -> String {
    format!(
        "POST /v1/topics/{topic}/events HTTP/1.1\r\nHost: gateway\r\nce-specversion: 1.0\r\n\
         ce-id: {id}\r\nce-source: /s\r\nce-type: t\r\ncontent-type: text/plain\r\n{framing}\r\n"
    )
}

/// What the gateway answers on `tcp` within [`PATIENCE`], until it has
/// `answers` status lines or closes the connection.
async fn read_answers(tcp: &mut TcpStream, answers: usize) -> String {
    let mut text = String::new();
    let mut buffer = vec![0; 16 * 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while text.matches("HTTP/1.1 ").count() < answers {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(read)) => text.push_str(&String::from_utf8_lossy(&buffer[..read])),
            Ok(Err(_)) => break,
        }
    }
    text
}

/// Both framings: the request is read by its Transfer-Encoding alone and
/// the connection closed after the answer (RFC 9112, 6.1; the HTTP
/// library does both before any of the gateway's code sees the request),
/// so what hides behind it is never read as a request.
#[tokio::test]
async fn with_content_length_and_transfer_encoding_nothing_behind_the_request_is_read() {
    let (broker, topic, gateway, _client) = fixture("http-smuggle", 1).await;
    let mut tcp = TcpStream::connect(gateway.addr()).await.unwrap();
    // A front proxy that reads Content-Length sees one request with a body
    // of 5 bytes; the chunks end after them, and a second request follows.
    let smuggled = format!("{}abc", head(&topic, "smuggled", "Content-Length: 3\r\n"));
    let framing = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n";
    let request = format!("{}0\r\n\r\n{smuggled}", head(&topic, "outer", framing));
    tcp.write_all(request.as_bytes()).await.unwrap();
    let answers = read_answers(&mut tcp, 2).await;
    assert_eq!(
        answers.matches("HTTP/1.1 ").count(),
        1,
        "one answer: {answers}"
    );
    assert!(answers.contains("connection: close"), "{answers}");
    assert!(!answers.contains("smuggled"), "{answers}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_))), "the connection is closed");
    assert_eq!(
        records_in(&broker.brokers(), &topic).await,
        1,
        "the outer one only"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_each_stored_once() {
    let (broker, topic, gateway, _client) = fixture("http-pipeline", 1).await;
    let mut tcp = TcpStream::connect(gateway.addr()).await.unwrap();
    let requests: String = ["p-1", "p-2", "p-3"]
        .iter()
        .map(|id| format!("{}{id}", head(&topic, id, "Content-Length: 3\r\n")))
        .collect();
    tcp.write_all(requests.as_bytes()).await.unwrap();
    let answers = read_answers(&mut tcp, 3).await;
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 3, "{answers}");
    let ids: Vec<usize> = ["p-1", "p-2", "p-3"]
        .iter()
        .map(|id| answers.find(&format!("\"eventId\":\"{id}\"")).expect(id))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {answers}");
    assert_eq!(records_in(&broker.brokers(), &topic).await, 3);
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_keep_alive_connections_leave_other_callers_unaffected() {
    const IDLE: usize = 5_000;
    let (broker, topic, gateway, _client) = fixture_with("http-idle", 1, |config| {
        // All of them come from one address.
        config.edge.connection_overrides =
            ConnectionOverrides(vec![("127.0.0.1".parse().unwrap(), IDLE + 100)]);
    })
    .await;
    let addr: SocketAddr = gateway.addr();
    // Each asks once (refused at once: not a CloudEvent) and keeps its
    // connection open and idle.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"POST /v1/topics/x/events HTTP/1.1\r\nHost: gateway\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
        idle.push(tcp);
    }
    for tcp in idle.iter_mut() {
        let answer = read_answers(tcp, 1).await;
        assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    }
    let open = metric_value(gateway.metrics_addr().unwrap(), "gateway_open_connections")
        .await
        .unwrap();
    assert!(open >= IDLE as f64, "{open} connections open");
    // Another caller publishes as usual.
    let url = format!("http://{addr}/v1/topics/{topic}/events");
    let started = std::time::Instant::now();
    let (status, answer): (u16, Value) = curl(&post(&url, &BINARY, &["-d", "x"])).await;
    assert_eq!(status, 200, "{answer}");
    eprintln!(
        "http: a publish with {IDLE} idle keep-alive connections open took {:?}",
        started.elapsed()
    );
    assert_eq!(records_in(&broker.brokers(), &topic).await, 1);
    drop(idle);
    tokio::time::timeout(Duration::from_secs(60), gateway.shutdown())
        .await
        .expect("the gateway shuts down with its idle connections gone")
        .unwrap();
}

/// A refusal given before the body arrived (here 415: not a CloudEvent):
/// the client, still sending, ends cleanly with it, over HTTP/2 as over
/// HTTP/1.1. (Had the gateway reset the HTTP/2 stream as soon as it had
/// answered, curl would fail with "(92) Stream error in the HTTP/2 framing
/// layer" instead of showing the answer.)
#[tokio::test]
async fn an_answer_given_before_the_body_arrived_reaches_a_client_still_sending_it() {
    let (broker, topic, gateway, _client) = fixture("http-early", 1).await;
    let url = format!("http://{}/v1/topics/{topic}/events", gateway.addr());
    let metrics = gateway.metrics_addr().unwrap();
    let refused = "gateway_http_requests_total{status=\"415\"}";
    for (answered, version) in [(1.0, "--http2-prior-knowledge"), (2.0, "--http1.1")] {
        // The body comes from a pipe, written once the gateway answered.
        let mut curl = tokio::process::Command::new("curl")
            .args(["-sS", "-X", "POST", &url, version, "-T", "-"])
            .args(["-H", "content-type: text/plain", "-w", "\n%{http_code}"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl runs");
        eventually("the gateway answered", || async {
            metric_value(metrics, refused).await == Some(answered)
        })
        .await;
        let mut stdin = curl.stdin.take().unwrap();
        // Refused by curl too if it had already failed.
        let _ = stdin.write_all(b"the rest of the body").await;
        drop(stdin);
        let output = curl.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{version}: {stderr}");
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n').expect("a status line");
        assert_eq!(status, "415", "{version}: {text} {stderr}");
        let refusal: Value = serde_json::from_str(body).expect(body);
        assert_eq!(refusal["code"], 3, "{refusal}");
    }
    assert_eq!(records_in(&broker.brokers(), &topic).await, 0);
    gateway.shutdown().await.unwrap();
}

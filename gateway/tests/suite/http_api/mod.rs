//! The API as JSON over HTTP, with curl as a newcomer would use it: the
//! README's commands as written (publish, read a stream, settle), streams
//! as newline-delimited JSON and Server-Sent Events that end with
//! Subscribe's status as their last line (over HTTP/1.1 and HTTP/2),
//! refusals as JSON statuses, a
//! MANUAL delivery of one replica's stream settled as JSON at another, the
//! README's fetch-based reader in a real browser with a token, and
//! the OpenAPI document (`openapi`): fresh, served, and fuzzed by
//! schemathesis.

mod openapi;
mod refusals;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::*;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub(super) use crate::http_publish::{curl, stored as read_plain_async};

/// A stream curl reads (`-N`), line by line.
struct Stream {
    curl: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Stream {
    /// Runs `command` (a shell command line) and reads its output.
    fn shell(command: &str) -> Self {
        let mut curl = Command::new("sh")
            .args(["-c", command])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("curl runs");
        let lines = BufReader::new(curl.stdout.take().unwrap()).lines();
        Self { curl, lines }
    }

    /// `curl -sSN` with `args`.
    fn curl(args: &[&str]) -> Self {
        let quoted: Vec<String> = args.iter().map(|arg| format!("'{arg}'")).collect();
        Self::shell(&format!("exec curl -sSN {}", quoted.join(" ")))
    }

    /// The next line that is not empty, within a minute.
    async fn line(&mut self) -> Option<String> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
                .await
                .expect("a line within a minute")
                .expect("curl's output reads");
            match line {
                Some(line) if line.trim().is_empty() => continue,
                other => return other,
            }
        }
    }

    /// The next NDJSON line as JSON.
    async fn json(&mut self) -> Value {
        let line = self.line().await.expect("a line");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// The next result that is a delivery (rebalance notices skipped).
    async fn delivery(&mut self) -> Value {
        loop {
            let line = self.json().await;
            if let Some(delivery) = line["result"].get("delivery") {
                return delivery.clone();
            }
            assert!(line["result"].get("rebalance").is_some(), "{line}");
        }
    }
}

/// The subscription id of a stream's first line.
/// curl POSTing `body` as JSON to `url`, with `more` of curl's arguments
/// before it: the answer's status and JSON body.
pub(super) async fn post_json(url: &str, body: &str, more: &[&str]) -> (u16, Value) {
    let args = ["-X", "POST", "-H", "content-type: application/json"];
    curl(&[&args[..], more, &["-d", body, url]].concat()).await
}

async fn subscribed(stream: &mut Stream) -> String {
    let first = stream.json().await;
    first["result"]["subscribed"]["subscriptionId"]
        .as_str()
        .unwrap_or_else(|| panic!("not subscribed: {first}"))
        .to_owned()
}

/// The JSON API's commands of the README (under "The API as JSON").
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    readme
        .lines()
        .map(str::trim)
        .filter(|line| {
            line.starts_with("curl ") && line.contains("/v1/") && !line.contains("/events")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_readme_s_json_commands_publish_read_a_stream_and_settle_as_written() {
    let (broker, topic, gateway, _client) = fixture("http-api-readme", 3).await;
    let addr = gateway.addr().to_string();
    let group = format!("{topic}.mails");
    let fresh = |command: &str| {
        command
            .replace("localhost:50051", &addr)
            .replace("user-registered", &topic)
            .replace("welcome-mails", &group)
    };
    let commands = readme_commands();
    let find = |part: &str| {
        commands
            .iter()
            .find(|command| command.contains(part))
            .map(|command| fresh(command))
            .unwrap_or_else(|| panic!("no README command with {part}: {commands:?}"))
    };

    let run = |command: String| async move {
        let output = Command::new("sh")
            .args(["-c", &format!("{command} -w '\\n%{{http_code}}'")])
            .output()
            .await
            .expect("sh runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("a status line");
        assert_eq!(status.trim(), "200", "{command}: {body}");
        serde_json::from_str::<Value>(body).unwrap()
    };
    let stored = run(find(":publish")).await;
    assert_eq!(stored["topic"], topic.as_str(), "{stored}");
    assert!(stored["offset"].as_str().is_some(), "{stored}");
    let record = read_plain_async(&broker.brokers(), &topic, &stored).await;
    assert_eq!(rdkafka::message::Message::key(&record), Some(&b"42"[..]));

    let mut stream = Stream::shell(&format!("exec {}", find("/v1/subscriptions?")));
    let id = subscribed(&mut stream).await;
    let delivery = stream.delivery().await;
    assert_eq!(delivery["event"]["type"], "user.registered", "{delivery}");
    assert_eq!(delivery["event"]["json"]["user_id"], 42.0, "{delivery}");
    let ack_id = delivery["ackId"].as_str().unwrap();
    let settle = find(":settle")
        .replace("SUBSCRIPTION_ID", &id)
        .replace(&format!("{topic}:2:0:1"), ack_id);
    let settled = run(settle).await;
    assert_eq!(
        settled["results"][0]["outcome"], "SETTLE_OUTCOME_ACCEPTED",
        "{settled}"
    );
    assert_eq!(gateway.subscription(&id).unwrap().unacked.get(), 0);
    drop(stream);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn streams_read_with_curl_end_with_subscribe_s_status_as_their_last_line() {
    let (_broker, topic, gateway, _client) = fixture("http-api-stream", 1).await;
    let base = format!("http://{}/v1", gateway.addr());
    let query = format!("{base}/subscriptions?topics={topic}&startFrom=START_FROM_EARLIEST");
    let mut ndjson = Stream::curl(&[&query]);
    let mut sse = Stream::curl(&["-H", "accept: text/event-stream", &query]);
    let body = json!({"topics": [topic], "start_from": "START_FROM_EARLIEST"}).to_string();
    // Over HTTP/2 (cleartext, prior knowledge), as a gRPC client's
    // connection would be.
    let mut posted = Stream::curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/json",
        "-d",
        &body,
        &format!("{base}/subscriptions"),
    ]);
    subscribed(&mut ndjson).await;
    subscribed(&mut posted).await;
    assert_eq!(sse.line().await.unwrap(), "event: subscribed");
    assert!(sse
        .line()
        .await
        .unwrap()
        .starts_with("data: {\"subscribed\""));

    let event = json!({"key": "k", "event": {"type": "t", "source": "/s", "text": "hello"}});
    let publish = format!("{base}/topics/{topic}:publish");
    let (status, _) = post_json(&publish, &event.to_string(), &[]).await;
    assert_eq!(status, 200);
    for stream in [&mut ndjson, &mut posted] {
        let delivery = stream.delivery().await;
        assert_eq!(delivery["event"]["text"], "hello");
        assert_eq!(delivery["offset"], "0");
        assert_eq!(delivery["partition"], 0);
    }
    assert_eq!(sse.line().await.unwrap(), "event: delivery");
    let data = sse.line().await.unwrap();
    let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["delivery"]["key"], "k");

    // The gateway shuts down: each stream ends with UNAVAILABLE, last.
    let shutdown = tokio::spawn(gateway.shutdown());
    for stream in [&mut ndjson, &mut posted] {
        let last = stream.json().await;
        assert_eq!(last["error"]["code"], 14, "{last}");
        assert!(stream.line().await.is_none(), "the status is the last line");
    }
    assert_eq!(sse.line().await.unwrap(), "event: error");
    let data = sse.line().await.unwrap();
    assert!(data.starts_with("data: {\"code\":14"), "{data}");
    assert!(sse.line().await.is_none());
    shutdown.await.unwrap().unwrap();
    for mut stream in [ndjson, sse, posted] {
        assert!(stream.curl.wait().await.unwrap().success());
    }
}

#[tokio::test]
async fn a_delivery_streamed_by_one_replica_is_settled_as_json_at_another() {
    let broker = Broker::start().await;
    let topic = topic("http-api-replicas");
    broker.create_topic(&topic, 1).await;
    let keys = crate::any_replica::route_key_file("http-api-replicas");
    let replica = || {
        let mut config = config(Some(broker.brokers()));
        config.route.internal_addr = Some("127.0.0.1:0".parse().unwrap());
        config.route.route_key_file = Some(keys.clone());
        config
    };
    let (a, b) = (gateway(replica()).await, gateway(replica()).await);
    let mut client = client(a.addr()).await;
    publish(&mut client, &topic, "k", json!({"n": 1})).await;
    let query = format!(
        "http://{}/v1/subscriptions?topics={topic}&group={topic}.g&startFrom=START_FROM_EARLIEST&ackMode=ACK_MODE_MANUAL",
        a.addr()
    );
    let mut stream = Stream::curl(&[&query]);
    let id = subscribed(&mut stream).await;
    let delivery = stream.delivery().await;
    let ack_id = delivery["ackId"].as_str().unwrap();
    let body = json!({ "acks": [ack_id] }).to_string();
    let settle = format!("http://{}/v1/subscriptions/{id}:settle", b.addr());
    let (status, settled) = post_json(&settle, &body, &[]).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(
        settled["results"][0]["outcome"], "SETTLE_OUTCOME_ACCEPTED",
        "{settled}"
    );
    assert_eq!(a.subscription(&id).unwrap().unacked.get(), 0);
    drop(stream);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The README's fetch-based reader (its `js` block), `user-registered`
/// replaced by `topic`.
fn readme_reader(topic: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let (_, after) = readme.split_once("```js\n").expect("the README's js block");
    let (code, _) = after.split_once("```").unwrap();
    code.replace("user-registered", topic)
}

#[tokio::test]
async fn the_readme_s_fetch_reader_reads_a_stream_in_a_browser_with_a_token() {
    use base64::Engine as _;
    let edge = SecureEdge::new("http-api-reader");
    let broker = Broker::start().await;
    let topic = topic("http-api-reader");
    broker.create_topic(&topic, 1).await;
    let mut config = config(Some(broker.brokers()));
    edge.tokens(&mut config);
    config.edge.viewer = true;
    let gateway = gateway(config).await;
    let token = edge.token("svc-reader");
    let code = base64::engine::general_purpose::STANDARD.encode(readme_reader(&topic));
    let page = format!("http://{}/", gateway.addr());
    let mut browser = crate::viewer::Browser::start();
    // The reader starts from the latest event: publish until it logs one.
    let url = format!("http://{}/v1/topics/{topic}:publish", gateway.addr());
    let bearer = format!("authorization: Bearer {token}");
    let publishing = tokio::spawn(async move {
        for n in 0.. {
            let event = json!({"event": {"id": format!("reader-{n}"), "type": "t", "source": "/s", "text": "x"}});
            let (status, answer) = post_json(&url, &event.to_string(), &["-H", &bearer]).await;
            assert_eq!(status, 200, "{answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let read = browser
        .run(
            &format!("reader {page} {token} {code} reader-"),
            "\"reader\"",
        )
        .await;
    publishing.abort();
    let line = read["reader"].as_str().unwrap();
    assert!(line.starts_with("delivery reader-"), "{read}");
    gateway.shutdown().await.unwrap();
}

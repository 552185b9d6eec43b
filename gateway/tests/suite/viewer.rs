//! The live event viewer in a real browser (Debian's Chromium, headless,
//! driven by `web/test/viewer.ts` through playwright-core), served by a
//! gateway on a real broker: events published with grpcurl and by a plain
//! Kafka producer appear on the page with their payloads, pausing holds
//! them, publishing from the page stores an event a plain consumer reads,
//! and CORS lets a page of an allowed origin call the gateway and keeps
//! another out.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};

use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use testkit::*;

/// The browser driver: commands in, one JSON line out per command.
pub(crate) struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines,
}

impl Browser {
    pub(crate) fn start() -> Self {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
        // scripts/test.sh installs Chromium (Debian) and web/'s packages.
        let mut child = Command::new("npx")
            .args(["tsx", "test/viewer.ts"])
            .current_dir(web)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the browser driver starts (npx tsx test/viewer.ts in web/)");
        let stdin = child.stdin.take().expect("stdin is piped");
        let lines = Lines::of(child.stdout.take().expect("stdout is piped"));
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Sends one command and waits for the line that answers it: the first
    /// one containing `answer`.
    pub(crate) async fn run(&mut self, command: &str, answer: &str) -> serde_json::Value {
        writeln!(self.stdin, "{command}").expect("the driver takes commands");
        let line = self.lines.wait_for(answer).await;
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn produce_plain(brokers: &str, topic: &str, value: &serde_json::Value) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .key("plain")
                .payload(&value.to_string()),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("the plain producer stored it");
}

async fn publish_with_grpcurl(addr: std::net::SocketAddr, topic: &str, marker: &str) {
    let body = json!({
        "topic": topic,
        "key": "grpcurl",
        "event": {"type": "test.grpcurl", "source": "/grpcurl", "json": {"marker": marker}},
    })
    .to_string();
    let addr = addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(grpcurl())
            .args(["-plaintext", "-d", &body, &addr])
            .arg("eventgateway.v1.EventGateway/PublishEvent")
            .output()
            .expect("grpcurl runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "grpcurl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_shows_events_pauses_publishes_and_cors_keeps_other_origins_out() {
    let (allowed, other) = (free_port(), free_port());
    let (broker, topic, gateway, _client) = fixture_with("viewer", 2, |config| {
        config.edge.viewer = true;
        config.edge.grpc_web_origins = vec![format!("http://127.0.0.1:{allowed}")];
    })
    .await;
    let addr = gateway.addr();
    let id = uuid::Uuid::now_v7().simple().to_string();
    let marker = |what: &str| format!("{what}-{id}");
    let mut browser = Browser::start();

    let opened = browser
        .run(&format!("open http://{addr}/"), "\"opened\"")
        .await;
    assert_eq!(opened["opened"], "event-gateway: live events");
    let far = far_topic(&broker, &topic).await;
    browser
        .run(&format!("subscribe {topic},{far} latest"), "\"subscribed\"")
        .await;

    // Events published with grpcurl and by a plain Kafka producer appear.
    publish_with_grpcurl(addr, &topic, &marker("grpcurl")).await;
    produce_plain(
        &broker.brokers(),
        &topic,
        &json!({"marker": marker("kafka")}),
    )
    .await;
    for what in ["grpcurl", "kafka"] {
        let seen = browser
            .run(&format!("expect {}", marker(what)), &marker(what))
            .await;
        assert_eq!(seen["seen"], marker(what), "{seen}");
    }

    // A legal timestamp no JavaScript Date holds (9e15 ms) is shown as it
    // came, and the stream goes on past it.
    produce_at(&broker.brokers(), &far, &marker("far"), FAR_FUTURE_MS).await;
    produce_plain(
        &broker.brokers(),
        &far,
        &json!({"marker": marker("after-far")}),
    )
    .await;
    for what in ["far", "after-far"] {
        browser
            .run(
                &format!("expect {}", marker(what)),
                &format!("\"seen\":\"{}", marker(what)),
            )
            .await;
    }

    // Paused, the page holds what comes and shows it on resume.
    browser.run("pause", "\"pause\"").await;
    produce_plain(
        &broker.brokers(),
        &topic,
        &json!({"marker": marker("held")}),
    )
    .await;
    browser.run("held 1", "\"held\"").await;
    let absent = browser
        .run(&format!("absent {}", marker("held")), "\"absent\"")
        .await;
    assert_eq!(absent["shown"], 0, "{absent}");
    browser.run("resume", "\"resume\"").await;
    browser
        .run(
            &format!("expect {}", marker("held")),
            &format!("\"seen\":\"{}", marker("held")),
        )
        .await;

    // Publishing from the page stores an event a plain consumer reads.
    let published = browser
        .run(
            &format!("publish {topic} page-key {}", marker("page")),
            "\"published\"",
        )
        .await;
    let partition = published["published"]["partition"].as_i64().unwrap() as i32;
    let offset: i64 = published["published"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record = read_plain_async(&broker.brokers(), &topic, partition, offset).await;
    assert_eq!(record.key(), Some(&b"page-key"[..]));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(record.payload().unwrap()).unwrap(),
        json!({"marker": marker("page")})
    );
    browser
        .run(
            &format!("expect {}", marker("page")),
            &format!("\"seen\":\"{}", marker("page")),
        )
        .await;

    // CORS: a page of the allowed origin may call the gateway, another not.
    let gateway_url = format!("http://{addr}");
    for (port, may_call) in [(allowed, true), (other, false)] {
        let page = format!("http://127.0.0.1:{port}/");
        browser
            .run(&format!("serve {port}"), &format!("\"serving\":{port}"))
            .await;
        let outcome = browser
            .run(
                &format!("cross {page} {gateway_url}"),
                &format!("\"cross\":\"{page}\""),
            )
            .await;
        assert_eq!(outcome["ok"], may_call, "{outcome}");
    }

    // Nothing went wrong on the page all along: no script or console
    // error, no answer of 400 or more (a favicon request included).
    let errors = browser.run("errors", "\"errors\"").await;
    assert_eq!(errors["errors"], json!([]), "{errors}");

    drop(browser);
    gateway.shutdown().await.unwrap();
}

/// A timestamp Kafka takes and a JavaScript Date cannot hold.
const FAR_FUTURE_MS: i64 = 9_000_000_000_000_000;

/// `<topic>-far`, which takes records of any timestamp (Kafka 4 refuses
/// those more than an hour ahead by default).
async fn far_topic(broker: &Broker, topic: &str) -> String {
    let far = format!("{topic}-far");
    broker
        .create_topic_with(
            &far,
            1,
            &[("message.timestamp.after.max.ms", &i64::MAX.to_string())],
        )
        .await;
    far
}

/// Writes `{"marker": marker}` to `topic` with the timestamp `at_ms`.
async fn produce_at(brokers: &str, topic: &str, marker: &str, at_ms: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let value = json!({ "marker": marker }).to_string();
    producer
        .send(
            FutureRecord::to(topic)
                .key("far")
                .payload(&value)
                .timestamp(at_ms),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("the plain producer stored it");
}

/// The gateway embeds `web/viewer/dist/viewer.js`, which is committed: it
/// must be what `web/build.mjs` makes of the sources (and of the client
/// generated from proto/), byte for byte.
#[test]
fn the_committed_viewer_is_the_build_of_its_sources() {
    let out = std::env::temp_dir().join(format!("viewer-build-{}", uuid::Uuid::now_v7().simple()));
    let out_arg = out.to_str().unwrap().to_owned();
    run_ok("web", "node", &["build.mjs", &out_arg]);
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/viewer/dist");
    let built = std::fs::read(out.join("viewer.js")).unwrap();
    let kept = std::fs::read(committed.join("viewer.js")).unwrap();
    assert!(
        built == kept,
        "web/viewer/dist/viewer.js is not the build of its sources: run `cd web && npm run build` and commit it"
    );
    let _ = std::fs::remove_dir_all(&out);
}

//! The notifier end to end: a real broker, the gateway, the notifier binary
//! and a real SMTP server (Python aiosmtpd). Registrations go in through the
//! gateway; welcome emails come out at the SMTP server, once per user.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use crate::support::*;
use serde_json::json;
use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registration_gets_one_welcome_email_with_both_parts() {
    let (_broker, topic, gateway, mut client) = setup("welcome").await;
    let smtp = SmtpServer::start(&[]);
    let state = state_dir();
    let _notifier = Notifier::start(gateway.addr(), &topic, &smtp.url(), &state);
    register(&mut client, &topic, 0..10).await;
    smtp.wait_for_recipients(10).await;
    assert_once_each(&smtp, 10);
    for message in smtp.messages() {
        assert!(message.contains("Subject: Welcome"), "{message}");
        assert!(message.contains("multipart/alternative"), "{message}");
        assert!(message.contains("Content-Type: text/plain"), "{message}");
        assert!(message.contains("Content-Type: text/html"), "{message}");
        assert!(
            message.contains("From: Welcome <welcome@example.com>"),
            "{message}"
        );
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_killed_mid_run_emails_every_user_and_repeats_none_it_recorded() {
    let (broker, topic, gateway, mut client) = setup("kill").await;
    let smtp = SmtpServer::start(&[]);
    let state = state_dir();
    let total = 40;
    register(&mut client, &topic, 0..total).await;
    let mut notifier = Notifier::start(gateway.addr(), &topic, &smtp.url(), &state);
    smtp.wait_for_recipients(5).await;
    notifier.kill_9();
    let sent_before = smtp.messages().len();
    assert!(
        sent_before < total,
        "the kill came too late to test anything"
    );
    let _restarted = Notifier::start(gateway.addr(), &topic, &smtp.url(), &state);
    smtp.wait_for_recipients(total).await;
    // Every event handled and acknowledged: no email can come after this.
    wait_group_done(&broker.brokers(), &group(&topic), &topic).await;
    // Redeliveries after the restart are skipped, not emailed again: every
    // email sent before the kill was recorded, except those the kill
    // interrupted between the SMTP server's 250 and the record: at most one
    // per user (one email per user is in flight at a time), and at most the
    // emails in flight (--concurrency, 8). That window cannot be closed with
    // SMTP; it is the documented limit.
    let per = smtp.per_recipient();
    let twice: Vec<&String> = per
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(to, _)| to)
        .collect();
    assert!(per.values().all(|n| *n <= 2), "{per:?}");
    assert!(
        twice.len() <= 8,
        "more than the emails in flight went twice: {twice:?}"
    );
    for i in 0..total {
        assert!(
            per.contains_key(&format!("user{i}@example.com")),
            "user {i}: {per:?}"
        );
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_recipients_and_unusable_events_go_to_the_dead_letter_topic() {
    let (_broker, topic, gateway, mut client) = setup("dlq").await;
    let smtp = SmtpServer::start(&["user3@example.com"]);
    let state = state_dir();
    let (_notifier, metrics) =
        Notifier::start_with_metrics(gateway.addr(), &topic, &smtp.url(), &state);
    register(&mut client, &topic, 0..3).await;
    register(&mut client, &topic, 3..4).await; // rejected with 550
    publish(&mut client, &topic, "no-email", json!({"user_id": 99})).await;
    register(&mut client, &topic, 4..6).await;
    smtp.wait_for_recipients(5).await;
    let per = smtp.per_recipient();
    assert!(!per.contains_key("user3@example.com"));

    let (_, mut dlq) = subscribe(&mut client, from_earliest(&format!("{topic}.dlq"))).await;
    let mut reasons = HashMap::new();
    for _ in 0..2 {
        let dead = next_delivery(&mut dlq).await;
        let event = dead.event.clone().unwrap();
        // The gateway wrote the dead letter: the record as read, and why.
        assert_eq!(event.attributes["eventgateway-dlq-topic"], topic);
        assert_eq!(event.attributes["eventgateway-dlq-group"], group(&topic));
        reasons.insert(
            body(&dead)["user_id"].as_i64().unwrap(),
            event.attributes["eventgateway-dlq-reason"].clone(),
        );
    }
    assert!(reasons[&3].contains("550"), "{reasons:?}");
    assert!(reasons[&99].contains("email is missing"), "{reasons:?}");
    // The metrics count the same: five sent, two dead-lettered, none failed.
    let expected = [
        "notifier_emails_sent_total 5",
        "notifier_emails_dead_lettered_total 2",
        "notifier_emails_failed_total 0",
    ];
    metrics_show(metrics, &expected.map(String::from)).await;
    gateway.shutdown().await.unwrap();
}

/// Several emails go out at once, one user's in order: a user whose SMTP
/// answer is slow holds back no other, and that user's second registration
/// waits for the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_smtp_answer_for_one_user_holds_back_no_other() {
    let (_broker, topic, gateway, mut client) = setup("slow").await;
    let smtp = SmtpServer::start_holding(&["user0@example.com"]);
    let state = state_dir();
    let _notifier = Notifier::start(gateway.addr(), &topic, &smtp.url(), &state);
    register(&mut client, &topic, 0..1).await;
    let again = json!({"user_id": 0, "email": "user0@example.com", "name": "User 0 again"});
    publish(&mut client, &topic, "0", again).await;
    register(&mut client, &topic, 1..6).await;
    eventually("user 0's first email is held", || async {
        smtp.holding("user0@example.com") == 1
    })
    .await;
    smtp.wait_for_recipients(5).await;
    assert_eq!(smtp.per_recipient().get("user0@example.com"), None);
    assert_eq!(
        smtp.holding("user0@example.com"),
        1,
        "user 0's second registration waits for the first"
    );
    smtp.release("user0@example.com");
    eventually("both of user 0's emails went out", || async {
        smtp.per_recipient().get("user0@example.com") == Some(&2)
    })
    .await;
    assert_eq!(smtp.holding("user0@example.com"), 2, "one after the other");
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_wait_while_the_smtp_server_is_down() {
    let (_broker, topic, gateway, mut client) = setup("smtp-down").await;
    let mut smtp = SmtpServer::stopped(&[]);
    let state = state_dir();
    let (_notifier, metrics) =
        Notifier::start_with_metrics(gateway.addr(), &topic, &smtp.url(), &state);
    register(&mut client, &topic, 0..5).await;
    // Nothing can be sent yet; the notifier keeps retrying.
    metric_reaches(metrics, "notifier_emails_failed_total", 3.0).await;
    smtp.restart();
    smtp.wait_for_recipients(5).await;
    assert_once_each(&smtp, 5);
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_reconnects_when_the_gateway_restarts() {
    let (broker, topic, gateway, mut client) = setup("gw-restart").await;
    let addr = gateway.addr();
    let smtp = SmtpServer::start(&[]);
    let state = state_dir();
    let _notifier = Notifier::start(addr, &topic, &smtp.url(), &state);
    register(&mut client, &topic, 0..5).await;
    smtp.wait_for_recipients(5).await;

    gateway.shutdown().await.unwrap();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the same port again");
    let restarted = gateway::start(config(Some(broker.brokers())), listener)
        .await
        .unwrap();
    wait_serving(addr).await;
    let mut client = testkit::client(addr).await;
    register(&mut client, &topic, 5..10).await;
    smtp.wait_for_recipients(10).await;
    assert_once_each(&smtp, 10);
    restarted.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_notifier_cleanly_and_nothing_is_sent_twice() {
    let (broker, topic, gateway, mut client) = setup("sigterm").await;
    let smtp = SmtpServer::start(&[]);
    let state = state_dir();
    let total = 30;
    register(&mut client, &topic, 0..total).await;
    let notifier = notifier_command(gateway.addr(), &topic, &smtp.url(), &state)
        .stdout(Stdio::null())
        .spawn()
        .expect("the notifier binary starts");
    smtp.wait_for_recipients(3).await;
    let status = sigterm_and_wait(notifier).await;
    assert_eq!(status.code(), Some(0), "the notifier exits 0 on SIGTERM");
    let _restarted = Notifier::start(gateway.addr(), &topic, &smtp.url(), &state);
    smtp.wait_for_recipients(total).await;
    // Every event handled and acknowledged: no email can come after this.
    wait_group_done(&broker.brokers(), &group(&topic), &topic).await;
    assert_once_each(&smtp, total);
    gateway.shutdown().await.unwrap();
}

/// The README's one command for the whole system (gateway on the embedded
/// Kafka, notifier writing to the outbox), with the binaries this test run
/// built, and the README's registration call through real grpcurl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_system_script_turns_a_registration_into_an_outbox_email() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_notifier"))
        .parent()
        .unwrap()
        .to_owned();
    let outbox = state_dir().with_extension("outbox");
    let state = state_dir();
    let port = free_port();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let system = command("bash")
        .arg(format!("{root}/scripts/run-local.sh"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("OUTBOX_DIR", &outbox)
        .env("STATE_DIR", &state)
        .env("GATEWAY_BIN", bin_dir.join("gateway"))
        .env("NOTIFIER_BIN", env!("CARGO_BIN_EXE_notifier"))
        .env("RUST_LOG", "error")
        .env("METRICS_ADDR", "0")
        .env("NOTIFIER_METRICS_ADDR", "0")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_serving(addr).await;

    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let register = readme
        .lines()
        .find(|l| l.starts_with("grpcurl ") && l.contains("user.registered"))
        .expect("the README shows how to register a user")
        .replacen("grpcurl", &grpcurl().display().to_string(), 1)
        .replace("localhost:50051", &format!("127.0.0.1:{port}"));
    let output = std::process::Command::new("sh")
        .args(["-c", &register])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let emails = || -> Vec<String> {
        std::fs::read_dir(&outbox)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    eventually("the welcome email appears in the outbox", || async {
        emails().iter().any(|m| m.contains("ada@example.com"))
    })
    .await;
    assert!(emails().iter().all(|m| m.contains("Subject: Welcome")));

    let status = sigterm_and_wait(system).await;
    assert!(
        status.success(),
        "the script stops both services cleanly: {status:?}"
    );
    let _ = std::fs::remove_dir_all(&outbox);
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_password_never_reaches_the_logs() {
    let (_broker, topic, gateway, mut client) = setup("secret").await;
    register(&mut client, &topic, 0..1).await;
    let smtp_down = format!("smtp://mailer:s3cret-smtp-pass@127.0.0.1:{}", free_port());
    let mut notifier = notifier_command(gateway.addr(), &topic, &smtp_down, &state_dir())
        .env("MAX_BACKOFF", "100ms")
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(notifier.stderr.take().expect("stderr is piped"));
    // Wait until it has tried (and failed) to send.
    lines
        .wait_for("email not sent; the gateway delivers it again")
        .await;
    let status = sigterm_and_wait(notifier).await;
    assert_eq!(status.code(), Some(0));
    for line in lines.to_end().await {
        assert!(
            !line.contains("s3cret-smtp-pass"),
            "the SMTP password was logged: {line}"
        );
    }
    gateway.shutdown().await.unwrap();
}

/// A record that a Struct cannot carry (JSON nested 40 levels, past every
/// protobuf decoder's depth limit as a Struct) once stopped the notifier
/// for good: its stream failed at that record on every reconnect. It is
/// delivered as text now, dead-lettered as unusable, and the emails after
/// it go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_deep_for_a_struct_is_dead_lettered_and_the_rest_go_out() {
    let (broker, topic, gateway, mut client) = setup("poison").await;
    let smtp = SmtpServer::start(&[]);
    let state = state_dir();
    let _notifier = Notifier::start(gateway.addr(), &topic, &smtp.url(), &state);
    register(&mut client, &topic, 0..2).await;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "content-type",
        value: Some("application/json"),
    });
    for partition in 0..2 {
        producer
            .send(
                rdkafka::producer::FutureRecord::<str, [u8]>::to(&topic)
                    .partition(partition)
                    .payload(deep.as_bytes())
                    .headers(headers.clone()),
                std::time::Duration::from_secs(10),
            )
            .await
            .expect("the broker stores the record");
    }
    register(&mut client, &topic, 2..6).await;
    smtp.wait_for_recipients(6).await;
    assert_once_each(&smtp, 6);
    let (_, mut dlq) = subscribe(&mut client, from_earliest(&format!("{topic}.dlq"))).await;
    for _ in 0..2 {
        let dead = next_delivery(&mut dlq).await;
        let event = dead.event.unwrap();
        assert!(
            event.attributes["eventgateway-dlq-reason"].contains("user_id"),
            "{event:?}"
        );
    }
    gateway.shutdown().await.unwrap();
}

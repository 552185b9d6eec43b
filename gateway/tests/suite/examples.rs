//! The client examples in other languages, run against a real gateway as
//! their READMEs show, asserting what they print.

use std::collections::BTreeSet;

use testkit::*;

fn example(dir: &str, program: &str, args: &[&str]) -> String {
    run_ok(&format!("examples/{dir}"), program, args)
}

/// The event ids a run printed on its lines starting with `prefix`.
fn ids_after(output: &str, prefix: &str) -> Vec<String> {
    output
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.split(" as ").nth(1))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

// The examples run as blocking child processes: the gateway needs threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_user_service_and_consumer_work_through_the_gateway() {
    let broker = Broker::start().await;
    let topic = topic("user-registered");
    broker.create_topic(&topic, 3).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let addr = gateway.addr().to_string();

    example("python", "bash", &["generate.sh"]);
    let published = example(
        "python",
        "python3",
        &[
            "user_service.py",
            "--gateway",
            &addr,
            "--topic",
            &topic,
            "--count",
            "3",
        ],
    );
    let published_ids = ids_after(&published, "published user");
    assert_eq!(published_ids.len(), 3, "{published}");
    for user in 1..=3 {
        assert!(
            published.contains(&format!("published user {user} as ")),
            "{published}"
        );
    }

    let args = [
        "consumer.py",
        "--gateway",
        &addr,
        "--topic",
        &topic,
        "--group",
        "python-test",
        "--count",
        "3",
    ];
    let consumed = example("python", "python3", &args);
    let users: BTreeSet<&str> = consumed
        .lines()
        .filter_map(|l| l.strip_prefix("received user "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(users, BTreeSet::from(["1", "2", "3"]), "{consumed}");
    assert!(consumed
        .lines()
        .filter(|l| l.contains("received"))
        .all(|l| l.ends_with("attempt 1")));
    let mut consumed_ids = ids_after(&consumed, "received user");
    consumed_ids.sort();
    let mut expected = published_ids.clone();
    expected.sort();
    assert_eq!(consumed_ids, expected);

    // The group acknowledged all three: its next run gets only what is new.
    let again = example(
        "python",
        "python3",
        &[
            "user_service.py",
            "--gateway",
            &addr,
            "--topic",
            &topic,
            "--count",
            "1",
        ],
    );
    let new_id = ids_after(&again, "published user");
    let args = [
        "consumer.py",
        "--gateway",
        &addr,
        "--topic",
        &topic,
        "--group",
        "python-test",
        "--count",
        "1",
    ];
    let next = example("python", "python3", &args);
    assert_eq!(ids_after(&next, "received user"), new_id, "{next}");
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_publisher_and_consumer_work_through_the_gateway() {
    let broker = Broker::start().await;
    let topic = topic("user-registered");
    broker.create_topic(&topic, 3).await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let addr = gateway.addr().to_string();

    let published = example(
        "node",
        "node",
        &[
            "publish.js",
            "--gateway",
            &addr,
            "--topic",
            &topic,
            "--count",
            "3",
        ],
    );
    let mut published_ids = ids_after(&published, "published user");
    assert_eq!(published_ids.len(), 3, "{published}");
    let args = [
        "subscribe.js",
        "--gateway",
        &addr,
        "--topic",
        &topic,
        "--group",
        "node-test",
        "--count",
        "3",
    ];
    let consumed = example("node", "node", &args);
    let mut consumed_ids = ids_after(&consumed, "received user");
    published_ids.sort();
    consumed_ids.sort();
    assert_eq!(consumed_ids, published_ids, "{consumed}");
    assert!(consumed.contains("<node2@example.com>"), "{consumed}");
    gateway.shutdown().await.unwrap();
}

// The examples run as blocking child processes: the gateway needs threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_connect_with_tls_a_client_certificate_and_a_token() {
    let edge = SecureEdge::new("examples-tls");
    let (cert, key) = edge
        .ca
        .client(CertName::Uri("spiffe://example.org/examples"))
        .write(edge.dir(), "client");
    let token = edge.dir().join("token");
    std::fs::write(&token, edge.token("examples")).unwrap();
    let topic = topic("user-registered");
    edge.write_policy(&format!(
        "[[grant]]\nprincipals = [\"examples\"]\npublish = [\"{topic}\"]\nsubscribe = [\"{topic}\"]\n"
    ));

    let broker = Broker::start().await;
    broker.create_topic(&topic, 3).await;
    let mut config = config(Some(broker.brokers()));
    edge.tls(&mut config, true);
    edge.tokens(&mut config);
    edge.policy(&mut config);
    let probe = edge.client(Some(edge.ca.client(CertName::CommonName("probe"))));
    let gateway = gateway_tls(config, &probe).await;
    let addr = gateway.addr().to_string();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca_path, cert, key, token) = (path(&edge.ca_path), path(&cert), path(&key), path(&token));
    let secure = [
        "--gateway",
        &addr,
        "--topic",
        &topic,
        "--ca",
        &ca_path,
        "--cert",
        &cert,
        "--key",
        &key,
        "--token-file",
        &token,
    ];

    example("python", "bash", &["generate.sh"]);
    let published = example(
        "python",
        "python3",
        &[&["user_service.py", "--count", "2"], &secure[..]].concat(),
    );
    assert_eq!(
        ids_after(&published, "published user").len(),
        2,
        "{published}"
    );
    let consumed = example(
        "python",
        "python3",
        &[
            &["consumer.py", "--group", "python-tls", "--count", "2"],
            &secure[..],
        ]
        .concat(),
    );
    assert_eq!(ids_after(&consumed, "received user").len(), 2, "{consumed}");

    let published = example(
        "node",
        "node",
        &[&["publish.js", "--count", "2"], &secure[..]].concat(),
    );
    assert_eq!(
        ids_after(&published, "published user").len(),
        2,
        "{published}"
    );
    let consumed = example(
        "node",
        "node",
        &[
            &["subscribe.js", "--group", "node-tls", "--count", "4"],
            &secure[..],
        ]
        .concat(),
    );
    assert_eq!(ids_after(&consumed, "received user").len(), 4, "{consumed}");
    gateway.shutdown().await.unwrap();
}

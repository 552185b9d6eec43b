//! TLS and mutual TLS on the gRPC listener, with certificates made at test
//! time: real handshakes from the Rust client and from real grpcurl, the
//! clients that must be refused, and certificates rotated on a running
//! gateway.

use std::process::{Command, Output};

use eventgateway::v1::PublishEventRequest;
use serde_json::json;
use testkit::*;
use tokio::net::TcpStream;

/// A broker with a fresh topic named after `prefix`, and a gateway on it
/// speaking TLS with `edge`'s certificate (requiring client certificates
/// of its CA when `mutual`), changed by `configure`, reported SERVING to a
/// client that connects as `client` says.
async fn tls_gateway(
    edge: &SecureEdge,
    prefix: &str,
    mutual: bool,
    client: &ClientTls,
    configure: impl FnOnce(&mut gateway::Config),
) -> (Broker, String, gateway::RunningGateway) {
    let broker = Broker::start().await;
    let topic = topic(prefix);
    broker.create_topic(&topic, 1).await;
    let mut config = config(Some(broker.brokers()));
    edge.tls(&mut config, mutual);
    configure(&mut config);
    let gateway = gateway_tls(config, client).await;
    (broker, topic, gateway)
}

fn grpcurl_output(args: &[&str]) -> Output {
    Command::new(grpcurl())
        .args(args)
        .output()
        .expect("grpcurl runs (scripts/test.sh installs it)")
}

fn publish_request(topic: &str) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.into(),
        event: Some(json_event(json!({"over": "tls"}))),
        ..Default::default()
    }
}

// grpcurl runs as a blocking child process: the gateway needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_rust_and_grpcurl_clients_and_refuses_plaintext() {
    let edge = SecureEdge::new("tls-serve");
    let tls = edge.client(None);
    let (_broker, topic, gateway) = tls_gateway(&edge, "tls", false, &tls, |_| {}).await;
    let ca_path = &edge.ca_path;
    let addr = gateway.addr();

    // A connection that never starts its handshake holds no one up.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut client = tls.client(addr).await.unwrap();
    let published = client
        .publish_event(publish_request(&topic))
        .await
        .expect("a publish over TLS is stored")
        .into_inner();
    assert_eq!(published.offset, 0);

    let target = addr.to_string();
    let health = grpcurl_output(&[
        "-cacert",
        ca_path.to_str().unwrap(),
        "-authority",
        "localhost",
        &target,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(
        health.status.success() && String::from_utf8_lossy(&health.stdout).contains("SERVING"),
        "grpcurl over TLS: {}",
        String::from_utf8_lossy(&health.stderr)
    );
    let untrusted = grpcurl_output(&[&target, "grpc.health.v1.Health/Check"]);
    assert!(
        !untrusted.status.success(),
        "a server certificate from an unknown CA must not be trusted"
    );

    let plain = grpcurl_output(&["-plaintext", &target, "grpc.health.v1.Health/Check"]);
    assert!(
        !plain.status.success(),
        "plaintext against the TLS listener"
    );
    let plaintext_client = async {
        let mut client = testkit::client(addr).await;
        client.publish_event(publish_request(&topic)).await
    };
    let refused = tokio::time::timeout(std::time::Duration::from_secs(20), plaintext_client)
        .await
        .expect("a plaintext call ends at once");
    assert!(refused.is_err(), "a plaintext call must fail: {refused:?}");
}

// grpcurl runs as a blocking child process: the gateway needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_takes_a_client_certificate_of_the_client_ca_only() {
    let edge = SecureEdge::new("tls-mtls");
    let ca = &edge.ca;
    let (client_cert, client_key) = ca
        .client(CertName::Uri("spiffe://example.org/orders"))
        .write(edge.dir(), "client");
    let with = |identity: Option<Pem>| edge.client(identity);
    let valid = with(Some(ca.client(CertName::Dns("orders.example"))));
    let (_broker, topic, gateway) = tls_gateway(&edge, "mtls", true, &valid, |_| {}).await;
    let ca_path = &edge.ca_path;
    let addr = gateway.addr();
    let metrics = gateway.metrics_addr().unwrap();

    let mut client = valid.client(addr).await.unwrap();
    client
        .publish_event(publish_request(&topic))
        .await
        .expect("a client with a certificate of the client CA is served");

    let other_ca = Ca::new("another CA");
    let refused = [
        ("no certificate", with(None), "no_client_certificate"),
        (
            "another CA's certificate",
            with(Some(other_ca.client(CertName::CommonName("orders")))),
            "bad_client_certificate",
        ),
        (
            "an expired certificate",
            with(Some(ca.expired_client(CertName::CommonName("orders")))),
            "bad_client_certificate",
        ),
    ];
    for (what, tls, reason) in refused {
        let series = format!("gateway_auth_failures_total{{reason=\"{reason}\"}}");
        let before = metric_value(metrics, &series).await.unwrap_or(0.0);
        let call = async {
            let mut client = tls.client(addr).await?;
            client
                .publish_event(publish_request(&topic))
                .await
                .map_err(|status| status.to_string())?;
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        assert!(call.await.is_err(), "{what} must be refused");
        metric_reaches(metrics, &series, before + 1.0).await;
    }

    let target = addr.to_string();
    let mut args = vec![
        "-cacert",
        ca_path.to_str().unwrap(),
        "-authority",
        "localhost",
    ];
    let without = grpcurl_output(&[&args[..], &[&target, "grpc.health.v1.Health/Check"]].concat());
    assert!(
        !without.status.success(),
        "grpcurl without a client certificate"
    );
    args.extend(["-cert", client_cert.to_str().unwrap()]);
    args.extend(["-key", client_key.to_str().unwrap()]);
    let with_cert =
        grpcurl_output(&[&args[..], &[&target, "grpc.health.v1.Health/Check"]].concat());
    assert!(
        with_cert.status.success(),
        "grpcurl with a client certificate: {}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_while_open_streams_go_on() {
    let edge = SecureEdge::new("tls-rotate");
    let (ca, dir) = (&edge.ca, edge.dir());
    let first = ca.server("first");
    first.write(dir, "server");
    let tls = edge.client(None);
    let (_broker, topic, gateway) = tls_gateway(&edge, "rotate", false, &tls, |_| {}).await;
    let addr = gateway.addr();
    assert_eq!(
        served_certificate(addr, &ca.cert).await.unwrap(),
        first.der()
    );

    let mut subscriber = tls.client(addr).await.unwrap();
    let (_id, mut stream) = subscribe(&mut subscriber, from_earliest(&topic)).await;
    let mut publisher = tls.client(addr).await.unwrap();
    publish_numbered(&mut publisher, &topic, 0, 1).await;
    assert_eq!(n(&next_delivery(&mut stream).await), 0);

    // A half-done rotation (the new certificate beside the old key) does
    // not load: the old pair stays in service.
    let second = ca.server("second");
    std::fs::write(dir.join("server.crt"), &second.cert).unwrap();
    let metrics = gateway.metrics_addr().unwrap();
    metric_reaches(metrics, "gateway_reload_failures_total{file=\"tls\"}", 1.0).await;
    assert_eq!(
        served_certificate(addr, &ca.cert).await.unwrap(),
        first.der()
    );

    std::fs::write(dir.join("server.key"), &second.key).unwrap();
    let wanted = second.der();
    eventually("new connections get the new certificate", || async {
        served_certificate(addr, &ca.cert).await.ok().as_ref() == Some(&wanted)
    })
    .await;
    publish_numbered(&mut publisher, &topic, 1, 1).await;
    assert_eq!(
        n(&next_delivery(&mut stream).await),
        1,
        "the stream opened before the rotation goes on"
    );
    // Consumers close while their broker still runs.
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_principal_of_a_client_certificate_is_its_uri_else_its_dns_name_else_its_cn() {
    let edge = SecureEdge::new("tls-principal");
    // Granted before the topic is known: every topic of the test's prefix.
    edge.write_policy(
        "[[grant]]\nprincipals = [\"spiffe://example.org/orders\"]\npublish = [\"principal-*\"]\n",
    );
    let with = |name| edge.client(Some(edge.ca.client(name)));
    let uri = with(CertName::Uri("spiffe://example.org/orders"));
    let (_broker, topic, gateway) =
        tls_gateway(&edge, "principal", true, &uri, |config| edge.policy(config)).await;
    let addr = gateway.addr();

    uri.client(addr)
        .await
        .unwrap()
        .publish_event(publish_request(&topic))
        .await
        .expect("the URI SAN is the principal (not the DNS SAN or CN beside it)");
    for (name, principal) in [
        (CertName::Dns("billing.example"), "\"billing.example\""),
        (CertName::CommonName("reports"), "\"reports\""),
    ] {
        let status = with(name)
            .client(addr)
            .await
            .unwrap()
            .publish_event(publish_request(&topic))
            .await
            .expect_err("not granted");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains(principal), "{status:?}");
    }
}

#[tokio::test]
async fn metrics_can_be_served_over_https_with_the_listener_certificate() {
    let edge = SecureEdge::new("tls-metrics");
    let tls = edge.client(None);
    let (_broker, _topic, gateway) = tls_gateway(&edge, "metrics", false, &tls, |config| {
        config.tls.metrics_tls = true
    })
    .await;
    let metrics = gateway.metrics_addr().unwrap();
    let body = scrape_tls(metrics, &edge.ca.cert).await.unwrap();
    assert!(body.contains("gateway_open_connections"), "{body}");
    let plain = eventgateway_runtime::metrics::scrape(metrics).await;
    assert!(
        plain.map_or(true, |body| !body.contains("gateway_")),
        "plaintext scrapes get nothing"
    );
}

/// One host flooding the listener with connections that never finish their
/// TLS handshake holds only its own places (`--max-connections-per-ip`,
/// at `--max-connection-rate-per-ip`): a client at another address
/// completes every handshake meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_from_one_address_leaves_the_others_their_places() {
    use tokio::io::AsyncWriteExt as _;
    let edge = SecureEdge::new("tls-flood");
    let client_tls = ClientTls {
        ca: edge.ca.cert.clone(),
        identity: None,
    };
    let (_broker, _topic, gateway) = tls_gateway(&edge, "flood", false, &client_tls, |config| {
        config.edge.max_connections = 100;
        config.edge.max_connections_per_ip = 40;
    })
    .await;
    let addr = gateway.addr();
    // Half a ClientHello, then nothing: each holds its place until the
    // handshake timeout.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let flood = tokio::spawn(async move {
        let (mut held, mut attempts) = (Vec::new(), 0u64);
        while !*stop.borrow() {
            attempts += 1;
            if let Ok(mut tcp) = TcpStream::connect(addr).await {
                let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
                held.push(tcp);
            }
            if held.len() > 2_000 {
                held.drain(..1_000);
            }
            tokio::task::yield_now().await;
        }
        attempts
    });
    // The flood is at its limit once the gateway refuses its connections.
    metric_reaches(
        gateway.metrics_addr().unwrap(),
        "gateway_refused_connections_total",
        1.0,
    )
    .await;
    let mut completed = 0;
    for _ in 0..8 {
        let from = "127.0.0.2".parse().unwrap();
        if connect_tls_from(from, addr, &edge.ca.cert).await.is_ok() {
            completed += 1;
        }
    }
    stop_tx.send(true).unwrap();
    let attempts = flood.await.unwrap();
    assert_eq!(
        completed, 8,
        "handshakes completed during a flood of {attempts} connections"
    );
    assert!(attempts > 100, "the flood opened {attempts} connections");
    gateway.shutdown().await.unwrap();
}

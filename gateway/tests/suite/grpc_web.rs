//! gRPC-Web on the gateway's own port: a gRPC-Web client over HTTP/1.1
//! publishes, subscribes (a server stream) and gets error statuses as a
//! native client does, and so does the TypeScript client generated from
//! proto/ (Connect-ES) under Node; CORS lets pages of the allowed origins
//! call, and no others; tokens apply to gRPC-Web calls as to native ones.

use std::net::SocketAddr;

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::subscribe_response::Kind;
use eventgateway::v1::{AckMode, AcknowledgeRequest, PublishEventRequest, SubscribeRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::message::Message;
use serde_json::json;
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::body::Body;
use tonic::Code;
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};

/// A gRPC-Web client of the gateway: HTTP/1.1 only, as a browser's fetch.
type WebClient = EventGatewayClient<GrpcWebClientService<Client<HttpConnector, GrpcWebCall<Body>>>>;

fn web_client(addr: SocketAddr) -> WebClient {
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new()
        .layer(GrpcWebClientLayer::new())
        .service(http1);
    EventGatewayClient::with_origin(service, format!("http://{addr}").parse().unwrap())
}

fn publish(topic: &str, n: i64) -> PublishEventRequest {
    PublishEventRequest {
        topic: topic.to_owned(),
        key: format!("k{n}"),
        event: Some(json_event(json!({ "n": n }))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_publish_subscribe_and_fail_as_native_ones_do() {
    let (broker, topic, gateway, _native) = fixture("web", 1).await;
    let mut web = web_client(gateway.addr());

    // A server stream over HTTP/1.1.
    let mut stream = web
        .subscribe(from_earliest(&topic))
        .await
        .expect("Subscribe over gRPC-Web")
        .into_inner();
    let first = stream.message().await.unwrap().and_then(|m| m.kind);
    assert!(matches!(first, Some(Kind::Subscribed(_))), "{first:?}");

    let stored = web
        .publish_event(publish(&topic, 7))
        .await
        .expect("PublishEvent over gRPC-Web")
        .into_inner();
    let record = read_plain_async(&broker.brokers(), &topic, stored.partition, stored.offset).await;
    assert_eq!(record.key(), Some(&b"k7"[..]));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(record.payload().unwrap()).unwrap(),
        json!({ "n": 7 })
    );
    let delivery = loop {
        match stream.message().await.expect("the stream goes on") {
            Some(message) => match message.kind {
                Some(Kind::Delivery(delivery)) => break delivery,
                _ => continue,
            },
            None => panic!("the stream ended"),
        }
    };
    assert_eq!(n(&delivery), 7);
    assert_eq!(delivery.offset, stored.offset);

    // A MANUAL stream over gRPC-Web, acknowledged over gRPC-Web.
    let manual = SubscribeRequest {
        ack_mode: AckMode::Manual as i32,
        ..from_earliest(&topic)
    };
    let mut acked = web
        .subscribe(manual)
        .await
        .expect("a MANUAL Subscribe over gRPC-Web")
        .into_inner();
    let mut subscription = None;
    let delivery = loop {
        match acked
            .message()
            .await
            .expect("the stream goes on")
            .and_then(|m| m.kind)
        {
            Some(Kind::Subscribed(subscribed)) => subscription = Some(subscribed.subscription_id),
            Some(Kind::Delivery(delivery)) => break delivery,
            Some(_) => continue,
            None => panic!("the stream ended"),
        }
    };
    web.acknowledge(AcknowledgeRequest {
        subscription_id: subscription.expect("subscribed first"),
        ack_ids: vec![delivery.ack_id.clone()],
    })
    .await
    .expect("Acknowledge over gRPC-Web");
    drop(acked);

    // An error status, with its message, as a native client gets it.
    let status = web
        .publish_event(publish("bad topic", 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("topic"), "{status:?}");
    let status = web
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    drop(stream);
    gateway.shutdown().await.unwrap();
}

/// What a browser sends before a cross-origin gRPC-Web call from `origin`:
/// the status line and headers of the answer, lower case.
async fn preflight(addr: SocketAddr, origin: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "OPTIONS /eventgateway.v1.EventGateway/PublishEvent HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Origin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: content-type,x-grpc-web,x-user-agent,authorization\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_pages_of_the_allowed_origins_call_and_no_others() {
    let (_broker, topic, gateway, _native) = fixture_with("cors", 1, |config| {
        config.edge.grpc_web_origins = vec!["http://allowed.example".into()];
    })
    .await;
    let addr = gateway.addr();

    let allowed = preflight(addr, "http://allowed.example").await;
    assert!(allowed.starts_with("http/1.1 200"), "{allowed}");
    assert!(
        allowed.contains("access-control-allow-origin: http://allowed.example"),
        "{allowed}"
    );
    for header in ["x-grpc-web", "authorization"] {
        assert!(
            allowed
                .lines()
                .any(|l| l.starts_with("access-control-allow-headers") && l.contains(header)),
            "{header}: {allowed}"
        );
    }
    let other = preflight(addr, "http://other.example").await;
    assert!(!other.contains("access-control-allow-origin"), "{other}");

    // The call itself: its answer lets the page read the status.
    let mut web = web_client(addr);
    let mut request = tonic::Request::new(publish(&topic, 1));
    request
        .metadata_mut()
        .insert("origin", "http://allowed.example".parse().unwrap());
    let answer = web
        .publish_event(request)
        .await
        .expect("an allowed page's call");
    let headers = answer.metadata();
    assert_eq!(
        headers.get("access-control-allow-origin").unwrap(),
        "http://allowed.example"
    );
    let exposed = headers
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-message"),
        "{exposed}"
    );
    gateway.shutdown().await.unwrap();

    // By default no page of another origin may call.
    let (_broker, _topic, gateway, _native) = fixture("no-cors", 1).await;
    let refused = preflight(gateway.addr(), "http://allowed.example").await;
    assert!(
        !refused.contains("access-control-allow-origin"),
        "{refused}"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_apply_to_grpc_web_calls_as_to_native_ones() {
    let signer = Signer::es256("web-key");
    let edge = SecureEdge::new("web-tokens");
    std::fs::write(&edge.jwks_path, jwks(&[&signer])).unwrap();
    let (_broker, topic, gateway, _native) =
        fixture_with("web-tokens", 1, |config| edge.tokens(config)).await;
    let mut web = web_client(gateway.addr());

    let status = web.publish_event(publish(&topic, 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let token = signer.sign(&claims("web-page", ISSUER, AUDIENCE));
    web.publish_event(with_token(publish(&topic, 2), &token))
        .await
        .expect("a valid token passes");
    // A token over its limit is answered as over gRPC/HTTP2.
    let large = format!("{token}{}", "A".repeat(60 * 1024));
    let status = web
        .publish_event(with_token(publish(&topic, 3), &large))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("over its limit"), "{status:?}");
    gateway.shutdown().await.unwrap();
}

/// The JSON line of `step` that `web/test/grpc-web.ts` printed.
fn step(output: &str, step: &str) -> serde_json::Value {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|line| line.get(step).cloned())
        .unwrap_or_else(|| panic!("no {step} line in:\n{output}"))
}

// The client runs as a blocking child process: the gateway needs threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_typescript_client_speaks_grpc_web_under_node() {
    let (broker, topic, gateway, _native) = fixture("web-node", 3).await;
    let base_url = format!("http://{}", gateway.addr());
    // scripts/test.sh installs web/'s packages (npm ci) and generates the
    // client from proto/ (npm run generate).
    let output = run_ok(
        "web",
        "npx",
        &["tsx", "test/grpc-web.ts", &base_url, &topic],
    );

    let published = step(&output, "published");
    let partition = published["partition"].as_i64().unwrap() as i32;
    let offset: i64 = published["offset"].as_str().unwrap().parse().unwrap();
    let record = read_plain_async(&broker.brokers(), &topic, partition, offset).await;
    assert_eq!(record.key(), Some(&b"node-web"[..]));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(record.payload().unwrap()).unwrap(),
        json!({ "n": 41 })
    );
    assert_eq!(
        step(&output, "delivered"),
        json!({
            "partition": partition,
            "offset": offset.to_string(),
            "key": "node-web",
            "n": 41,
        })
    );
    let error = step(&output, "error");
    assert_eq!(error["code"], "InvalidArgument", "{output}");
    assert!(
        error["message"].as_str().unwrap().contains("bad topic"),
        "{output}"
    );
    gateway.shutdown().await.unwrap();
}

/// Over TLS, a gRPC-Web client that offers only HTTP/1.1 (ALPN) is served
/// HTTP/1.1; native gRPC clients still get HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_over_tls_is_served_over_http1_to_a_client_that_asks_for_it() {
    let broker = Broker::start().await;
    let edge = SecureEdge::new("web-tls");
    let mut config = config(Some(broker.brokers()));
    edge.tls(&mut config, false);
    let tls = edge.client(None);
    let gateway = gateway_tls(config, &tls).await;

    let mut stream = connect_tls_offering(gateway.addr(), &tls.ca, &["http/1.1"])
        .await
        .expect("a TLS handshake offering only http/1.1");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Health/Check, an empty request message, as gRPC-Web frames it.
    let request = b"POST /grpc.health.v1.Health/Check HTTP/1.1\r\n\
        Host: localhost\r\n\
        Content-Type: application/grpc-web+proto\r\n\
        X-Grpc-Web: 1\r\n\
        Content-Length: 5\r\n\
        Connection: close\r\n\r\n\0\0\0\0\0";
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("grpc-status:0"), "{answer}");

    let native = tls
        .channel(gateway.addr())
        .await
        .expect("an HTTP/2 channel");
    let status = health_over(native, "")
        .await
        .expect("a native call over TLS");
    assert_eq!(status, tonic_health::ServingStatus::Serving as i32);
    gateway.shutdown().await.unwrap();
}

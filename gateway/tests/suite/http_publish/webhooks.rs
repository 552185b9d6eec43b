//! A webhook route of the policy takes a plain JSON body as a webhook
//! sender POSTs it: checked against its Standard Webhooks signature when the
//! route signs, stored byte for byte with the route's type and source.

use rdkafka::message::Message;
use testkit::*;

use super::{curl, header, post, stored};

#[tokio::test]
async fn a_webhook_route_takes_a_plain_json_body_signed_as_standard_webhooks_say() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let edge = SecureEdge::new("http-webhook");
    let broker = Broker::start().await;
    let (signed, open, none) = (topic("hook"), topic("hook-open"), topic("hook-none"));
    for name in [&signed, &open, &none] {
        broker.create_topic(name, 1).await;
    }
    let secret = b"a webhook secret of twenty";
    edge.write_policy(&format!(
        r#"
[[grant]]
principals = ["svc-hooks"]
publish = ["{signed}", "{open}", "{none}"]

[[webhook]]
topic = "{signed}"
type = "com.example.payment"
source = "https://payments.example"
id_header = "webhook-id"
signing_secrets = ["whsec_{}"]

[[webhook]]
topic = "{open}"
type = "com.example.form"
source = "/forms"
"#,
        b64.encode(secret)
    ));
    let mut config = config(Some(broker.brokers()));
    edge.tokens(&mut config);
    edge.policy(&mut config);
    let gateway = gateway(config).await;
    let url = |topic: &str| format!("http://{}/v1/topics/{topic}/events", gateway.addr());
    let bearer = format!("authorization: Bearer {}", edge.token("svc-hooks"));
    let body = r#"{"amount": 5, "currency": "EUR"}"#;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sign = |body: &str| {
        let tag = ring::hmac::sign(&key, format!("msg_1.{at}.{body}").as_bytes());
        format!("webhook-signature: v1,{}", b64.encode(tag))
    };
    let webhook = |signature: String| {
        vec![
            "content-type: application/json".to_owned(),
            bearer.clone(),
            "webhook-id: msg_1".to_owned(),
            format!("webhook-timestamp: {at}"),
            signature,
        ]
    };
    let run = |topic: &str, headers: Vec<String>, body: &str| {
        let (url, body) = (url(topic), body.to_owned());
        async move {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            curl(&post(&url, &headers, &["--data-binary", &body])).await
        }
    };

    let (status, answer) = run(&signed, webhook(sign(body)), body).await;
    assert_eq!(status, 200, "{answer}");
    let record = stored(&broker.brokers(), &signed, &answer).await;
    assert_eq!(
        record.payload(),
        Some(body.as_bytes()),
        "the body byte for byte"
    );
    assert_eq!(header(&record, "ce_id").as_deref(), Some("msg_1"));
    assert_eq!(
        header(&record, "ce_type").as_deref(),
        Some("com.example.payment")
    );
    assert_eq!(
        header(&record, "ce_source").as_deref(),
        Some("https://payments.example")
    );

    // A body that is not the one signed, or no signature: 401, not stored.
    let tampered = r#"{"amount": 500, "currency": "EUR"}"#;
    let (status, answer) = run(&signed, webhook(sign(body)), tampered).await;
    assert_eq!(
        (status, answer["code"].as_i64()),
        (401, Some(16)),
        "{answer}"
    );
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    let mut unsigned = webhook(String::new());
    unsigned.pop();
    let (status, answer) = run(&signed, unsigned, body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(records_in(&broker.brokers(), &signed).await, 1);

    // A route without secrets or an id header: a new UUIDv7 for each event.
    let form = vec!["content-type: application/json".to_owned(), bearer.clone()];
    let (status, answer) = run(&open, form.clone(), r#"{"name": "Ada"}"#).await;
    assert_eq!(status, 200, "{answer}");
    let id = uuid::Uuid::parse_str(answer["eventId"].as_str().unwrap()).unwrap();
    assert_eq!(id.get_version_num(), 7);
    // A topic without a route takes no plain body.
    let (status, answer) = run(&none, form, r#"{"name": "Ada"}"#).await;
    assert_eq!(status, 415, "{answer}");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("webhook route"));
    gateway.shutdown().await.unwrap();
}

/// A page of another site makes the visitor's browser POST to the gateway
/// as it may without a preflight (a form, a beacon: the simple content
/// types, no custom header gets through): the browser sends it, the
/// gateway refuses it, nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_simple_posts_from_a_browser_store_nothing() {
    let (broker, topic, gateway, _client) = fixture("http-csrf", 1).await;
    let page = free_port();
    let mut browser = crate::viewer::Browser::start();
    browser
        .run(&format!("serve {page}"), &format!("\"serving\":{page}"))
        .await;
    let url = format!("http://{}/v1/topics/{topic}/events", gateway.addr());
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let sent = browser
            .run(
                &format!("crosspost http://127.0.0.1:{page}/ {url} {content_type} {{\"n\":1}}"),
                &format!("\"crosspost\":\"{content_type}\""),
            )
            .await;
        assert_eq!(sent["sent"], true, "the browser sent it: {sent}");
    }
    drop(browser);
    assert_eq!(
        records_in(&broker.brokers(), &topic).await,
        0,
        "nothing a cross-site page sent was stored"
    );
    gateway.shutdown().await.unwrap();
}

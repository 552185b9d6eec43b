//! Health follows Kafka: NOT_SERVING while the broker is down (and calls get
//! UNAVAILABLE), SERVING again once it is back.

use eventgateway::v1::{event::Data, Event, PublishEventRequest, SubscribeRequest};
use testkit::*;
use tonic::Code;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use tonic_health::ServingStatus;

#[tokio::test]
async fn health_goes_not_serving_while_the_broker_is_down_and_back_after() {
    // Its own broker, which it kills and restarts with its data.
    let mut broker = Broker::own().await;
    let gateway = gateway(config(Some(broker.brokers()))).await;
    let addr = gateway.addr();
    for service in ["", eventgateway::SERVICE_NAME] {
        assert_eq!(
            health(addr, service).await.unwrap(),
            ServingStatus::Serving as i32
        );
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: eventgateway::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );

    broker.kill();
    eventually("health reports NOT_SERVING", || async {
        health(addr, "").await.ok() == Some(ServingStatus::NotServing as i32)
    })
    .await;
    assert_eq!(
        health(addr, eventgateway::SERVICE_NAME).await.unwrap(),
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );

    let mut client = client(addr).await;
    let status = client
        .publish_event(PublishEventRequest {
            topic: "any-topic".into(),
            key: String::new(),
            event: Some(Event {
                data: Some(Data::Text("x".into())),
                ..Event::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = client
        .subscribe(SubscribeRequest {
            topics: vec!["any-topic".into()],
            ..SubscribeRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    broker.restart().await;
    wait_serving(addr).await;
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    let topic = topic("after-restart");
    broker.create_topic(&topic, 1).await;
    publish(&mut client, &topic, "", serde_json::json!({"back": true})).await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_answer_turns_neither_health_nor_publishes_under_way_down() {
    let topic = topic("slow-probe");
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, 1, 1).unwrap();
    let gateway = gateway(config(Some(cluster.bootstrap_servers()))).await;
    let addr = gateway.addr();
    let metrics = gateway.metrics_addr().unwrap();
    let mut client = client(addr).await;
    publish(&mut client, &topic, "", serde_json::json!({"n": 0})).await;

    // Every answer now takes 1.5 s: longer than a probe waits (1 s).
    cluster
        .broker_round_trip_time(1, std::time::Duration::from_millis(1500))
        .unwrap();
    let mut publisher = client.clone();
    let publish_topic = topic.clone();
    let under_way = tokio::spawn(async move {
        let mut request = tonic::Request::new(PublishEventRequest {
            topic: publish_topic,
            key: String::new(),
            event: Some(Event {
                data: Some(Data::Text("slow".into())),
                ..Event::default()
            }),
        });
        request.set_timeout(std::time::Duration::from_secs(20));
        publisher.publish_event(request).await
    });
    metric_reaches(metrics, "gateway_health_probe_failures_total", 1.0).await;
    // One failed probe is not an outage.
    assert_eq!(
        health(addr, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    cluster
        .broker_round_trip_time(1, std::time::Duration::ZERO)
        .unwrap();
    // The publish under way meanwhile is Kafka's to answer: stored.
    let stored = under_way.await.unwrap();
    assert!(stored.is_ok(), "{stored:?}");
    gateway.shutdown().await.unwrap();
}

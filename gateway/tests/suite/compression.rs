//! Compression: records the gateway writes compressed (lz4, zstd) are read
//! by a plain Kafka consumer; clients that send and accept gzip or zstd gRPC
//! messages are served; a compressed message that would decompress past the
//! message limit is refused and the gateway goes on.

use eventgateway::v1::PublishEventRequest;
use gateway::Compression;
use serde_json::json;
use testkit::*;
use tonic::codec::CompressionEncoding;
use tonic::Code;

#[tokio::test]
async fn records_written_with_lz4_or_zstd_are_read_by_a_plain_consumer() {
    let broker = Broker::start().await;
    for compression in [Compression::Lz4, Compression::Zstd] {
        let topic = topic("compressed");
        broker.create_topic(&topic, 1).await;
        let mut config = config(Some(broker.brokers()));
        config.kafka.kafka_compression = compression;
        let gateway = gateway(config).await;
        let mut client = client(gateway.addr()).await;
        let body = json!({"user": "ada", "text": "compressible ".repeat(100)});
        let stored = publish(&mut client, &topic, "k", body.clone()).await;
        let record =
            read_plain_async(&broker.brokers(), &topic, stored.partition, stored.offset).await;
        let value: serde_json::Value =
            serde_json::from_slice(rdkafka::Message::payload(&record).unwrap()).unwrap();
        assert_eq!(value, body, "{compression:?}");
        gateway.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn clients_sending_and_accepting_gzip_or_zstd_messages_are_served() {
    let (_broker, topic, gateway, _client) = fixture("grpc-compressed", 1).await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = client(gateway.addr())
            .await
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let stored = publish(&mut client, &topic, "k", json!({"n": 1})).await;
        assert_eq!(stored.topic, topic, "{encoding:?}");
        let (_, mut stream) = subscribe(&mut client, from_earliest(&topic)).await;
        assert_eq!(n(&next_delivery(&mut stream).await), 1, "{encoding:?}");
    }
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_that_decompresses_past_the_limit_is_refused() {
    let (_broker, topic, gateway, _client) = fixture("grpc-bomb", 1).await;
    let mut compressed = client(gateway.addr())
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .max_encoding_message_size(usize::MAX);
    // 64 MiB of one letter: a few hundred KiB compressed, far past the
    // gateway's message limit once decompressed.
    let mut event = json_event(json!({}));
    event.data = Some(eventgateway::v1::event::Data::Text("a".repeat(64 << 20)));
    let refused = compressed
        .publish_event(PublishEventRequest {
            topic: topic.clone(),
            key: String::new(),
            event: Some(event),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // The gateway goes on.
    let mut plain = client(gateway.addr()).await;
    publish(&mut plain, &topic, "k", json!({"n": 1})).await;
    gateway.shutdown().await.unwrap();
}

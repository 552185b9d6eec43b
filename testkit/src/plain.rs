//! Plain Kafka clients, beside the gateway: reading a topic to its end or
//! a range of it, and producing numbered or raw records.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::wait::PATIENCE;

/// Every record of a topic, read with a plain consumer up to its end (the
/// high watermarks, asked again until they stop moving). Blocking; fails
/// the test after [`PATIENCE`].
pub fn read_topic(brokers: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for partition in &partitions {
        tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let ends = || -> Vec<(i32, i64)> {
        partitions
            .iter()
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, *p, Duration::from_secs(10))
                    .unwrap();
                (*p, high)
            })
            .collect()
    };
    let mut records = Vec::new();
    let mut positions: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut target = ends();
    loop {
        while target
            .iter()
            .any(|(p, high)| positions.get(p).copied().unwrap_or(0) < *high)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "could not read the topic to its end"
            );
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                positions.insert(message.partition(), message.offset() + 1);
                records.push(message.detach());
            }
        }
        let again = ends();
        if again == target {
            return records;
        }
        target = again;
    }
}

/// The record at `offset` of `topic`'s `partition`, read by a plain Kafka
/// consumer (blocking). Fails the test after [`PATIENCE`].
pub fn read_plain(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> rdkafka::message::OwnedMessage {
    read_plain_range(brokers, topic, partition, offset, 1)
        .pop()
        .expect("one record")
}

/// The `count` records from `from` on of `topic`'s `partition`, read by a
/// plain Kafka consumer (blocking). Fails the test after [`PATIENCE`].
pub fn read_plain_range(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: i64,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("plain-{topic}"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the plain consumer got {} of {count} records",
            records.len()
        );
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("plain consume").detach();
            if message.offset() == from + records.len() as i64 {
                records.push(message);
            }
        }
    }
    records
}

/// Writes `{"n": n}` with key `k<n>` for each `n` of `numbers` to `topic`
/// with a plain Kafka producer: to `partition` when given (else where the
/// key hashes), `pause` apart.
pub async fn produce_numbered(
    brokers: &str,
    topic: &str,
    partition: Option<i32>,
    numbers: std::ops::Range<i64>,
    pause: Duration,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    // Idempotent: a send retried across a leader's move is not written
    // twice.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .create()
        .expect("a plain producer");
    for n in numbers {
        let (value, key) = (format!("{{\"n\":{n}}}"), format!("k{n}"));
        let mut record = FutureRecord::to(topic).key(&key).payload(&value);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("stored");
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// [`read_plain`] off the async runtime, so that a gateway on the same
/// runtime goes on meanwhile.
pub async fn read_plain_async(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> rdkafka::message::OwnedMessage {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_plain(&brokers, &topic, partition, offset))
        .await
        .expect("the plain consumer ran")
}

/// Writes one record with `value` and `headers` (names as raw bytes, which
/// no Kafka client library writes but the protocol carries) to
/// `topic`'s `partition` over the raw Kafka protocol (`raw_produce.py`);
/// returns its offset.
pub fn produce_raw(
    brokers: &str,
    topic: &str,
    partition: i32,
    value: &[u8],
    headers: &[(&[u8], &[u8])],
) -> i64 {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/raw_produce.py");
    let output = std::process::Command::new("python3")
        .args([script, brokers, topic, &partition.to_string(), &hex(value)])
        .args(
            headers
                .iter()
                .map(|(name, value)| format!("{}={}", hex(name), hex(value))),
        )
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "raw produce failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("an offset")
}

/// Writes `{"n": i}` with key `key-<i % keys>` for `i` in `0..events` to
/// `topic`, in batches (a lingering idempotent producer), so that a reader
/// whose window fills fetches again from inside a batch; the numbers of
/// each key in the order written.
pub async fn produce_keyed(
    brokers: &str,
    topic: &str,
    events: usize,
    keys: usize,
) -> std::collections::HashMap<String, Vec<i64>> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .expect("a plain producer");
    let mut published = std::collections::HashMap::<String, Vec<i64>>::new();
    let mut sends = Vec::with_capacity(events);
    for i in 0..events {
        let key = format!("key-{}", i % keys);
        let value = format!("{{\"n\":{i}}}");
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        sends.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        published.entry(key).or_default().push(i as i64);
    }
    for send in sends {
        send.await.unwrap().expect("stored");
    }
    published
}

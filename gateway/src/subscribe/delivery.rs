//! A Kafka record as the client receives it: a delivery with its event, its
//! ack id and its attempt, never larger than a gRPC client takes with its
//! default limits (a record that is gets its payload left out, and says so:
//! one record must never break a stream that every reconnect would break
//! again).

use eventgateway::record::{record_to_event, IncomingRecord};
use eventgateway::v1::{subscribe_response::Kind, Delivery, SubscribeResponse};
use prost::Message as _;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::spec::{Position, TopicPartition};
use crate::error::Error;
use crate::text::clip;

/// The largest delivery a client with gRPC's default limit of 4 MiB takes,
/// with room for the stream message around it.
const MAX_DELIVERY_BYTES: usize = 4 * 1024 * 1024 - 16 * 1024;
/// The attribute of a delivery whose payload (and, when that was not
/// enough, attributes) were left out.
const OMITTED: &str = "eventgateway-omitted";
/// The attribute of a delivery whose record had headers the gateway left
/// out: names the Kafka client cannot read (not UTF-8), or more headers
/// than [`MAX_HEADERS_READ`].
const UNREADABLE: &str = "eventgateway-unreadable-headers";
/// The most headers of one record the gateway reads (publishing takes 100
/// attributes): what a record of 100,000 tiny headers costs stays near
/// its size.
pub(super) const MAX_HEADERS_READ: usize = 1_000;

/// A Kafka record as read, owned: what a delivery, every redelivery and a
/// dead letter are made from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Record {
    /// Topic it was read from.
    pub(super) topic: String,
    /// Partition it was read from.
    pub(super) partition: i32,
    /// Offset in the partition.
    pub(super) offset: i64,
    /// Key; `None` when it had none.
    pub(super) key: Option<Vec<u8>>,
    /// Value; `None` for a tombstone.
    pub(super) value: Option<Vec<u8>>,
    /// Timestamp in ms since the epoch, when it has one.
    pub(super) timestamp_ms: Option<i64>,
    /// The headers the Kafka client can read, in order.
    pub(super) headers: Vec<(String, Option<Vec<u8>>)>,
    /// How many headers were left out: names that are not UTF-8, and
    /// those beyond [`MAX_HEADERS_READ`].
    pub(super) unreadable: usize,
}

impl Record {
    /// Reads `message`.
    ///
    /// rdkafka panics on a header name that is not UTF-8 (which only a
    /// raw-protocol producer can write), so headers are read one by one
    /// with that caught: one such record must not end every stream that
    /// meets it.
    pub(super) fn read(message: &BorrowedMessage<'_>) -> Self {
        let mut headers = Vec::new();
        let mut unreadable = 0;
        if let Some(read) = message.headers() {
            let count = read.count();
            let taken = count.min(MAX_HEADERS_READ);
            unreadable += count - taken;
            headers.reserve(taken);
            for index in 0..taken {
                let header =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read.try_get(index)));
                match header {
                    Ok(Some(header)) => {
                        headers.push((header.key.to_owned(), header.value.map(<[u8]>::to_vec)));
                    }
                    Ok(None) => {}
                    Err(_) => unreadable += 1,
                }
            }
        }
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
            unreadable,
        }
    }

    /// Attempt `attempt` (from 1) of delivering this record.
    pub(super) fn delivery(&self, attempt: u32) -> Delivery {
        // A value no delivery can carry is not decoded at all.
        let oversized = self
            .value
            .as_ref()
            .is_some_and(|value| value.len() > MAX_DELIVERY_BYTES);
        let incoming = IncomingRecord {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            value: self.value.as_deref().filter(|_| !oversized),
            timestamp_ms: self.timestamp_ms,
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_deref()))
                .collect(),
        };
        let key = self.key.as_deref();
        let mut event = record_to_event(&incoming);
        if self.unreadable > 0 {
            let note = format!(
                "{} header(s) were left out (a name that is not UTF-8, or beyond the first {MAX_HEADERS_READ}): read them with a Kafka client at {}/{}@{}",
                self.unreadable, self.topic, self.partition, self.offset
            );
            event.attributes.insert(UNREADABLE.to_owned(), note);
        }
        let delivery = Delivery {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            // A key that is text arrives as text; any other, as its bytes
            // only (a lossy copy would double what it weighs).
            key: key
                .and_then(|key| std::str::from_utf8(key).ok())
                .map(str::to_owned)
                .unwrap_or_default(),
            key_bytes: key
                .filter(|key| std::str::from_utf8(key).is_err())
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
            event: Some(event),
            ack_id: ack_id(&self.topic, self.partition, self.offset, attempt),
            attempt,
        };
        fit(delivery, oversized.then(|| self.bytes()))
    }
}

/// Attempt `attempt` of the delivery `first` is the first attempt of.
pub(super) fn again(first: &Delivery, attempt: u32) -> Delivery {
    Delivery {
        ack_id: ack_id(&first.topic, first.partition, first.offset, attempt),
        attempt,
        ..first.clone()
    }
}

impl Record {
    /// Whether it is a dead letter that was once read from `topic` (its
    /// `eventgateway-dlq-topic` headers say where it has been).
    pub(super) fn was_dead_lettered_out_of(&self, topic: &str) -> bool {
        self.headers.iter().any(|(name, value)| {
            name == super::spec::headers::TOPIC && value.as_deref() == Some(topic.as_bytes())
        })
    }

    /// The bytes it holds (key, value, headers), roughly what keeping it
    /// costs.
    pub(super) fn bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, Vec::len))
            .sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers
    }
}

/// The first delivery of a Kafka record.
pub(super) fn delivery(message: &BorrowedMessage<'_>) -> Delivery {
    Record::read(message).delivery(1)
}

/// `delivery`, or, when it is too large for a client to take, the same
/// without its payload (then its attributes, then its key, while still
/// too large), with [`OMITTED`] saying why and where to read the record.
/// Every field counts. `known`: the record's size, when its payload was
/// already left out for being larger than any delivery.
fn fit(mut delivery: Delivery, known: Option<usize>) -> Delivery {
    let size = known.unwrap_or_else(|| delivery.encoded_len());
    if size <= MAX_DELIVERY_BYTES {
        return delivery;
    }
    let note = format!(
        "the record takes {size} bytes, more than a gRPC client takes by default: read it with a Kafka client at {}/{}@{}",
        delivery.topic, delivery.partition, delivery.offset
    );
    let room = MAX_DELIVERY_BYTES - note.len() - 64;
    let event = delivery.event.get_or_insert_default();
    event.data = None;
    if delivery.encoded_len() > room {
        let event = delivery.event.get_or_insert_default();
        event.attributes.clear();
        event.binary_attributes.clear();
    }
    if delivery.encoded_len() > room {
        delivery.key.clear();
        delivery.key_bytes.clear();
    }
    delivery
        .event
        .get_or_insert_default()
        .attributes
        .insert(OMITTED.to_owned(), note);
    delivery
}

/// A delivery attempt, as its ack id names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckRef {
    /// The record's position.
    pub(crate) position: Position,
    /// Which attempt, from 1.
    pub(crate) attempt: u32,
}

impl AckRef {
    /// The ack id that names this attempt.
    pub(crate) fn id(&self) -> String {
        let Position { partition, offset } = &self.position;
        ack_id(&partition.topic, partition.partition, *offset, self.attempt)
    }
}

/// The ack id of attempt `attempt` of delivering a record:
/// `<topic>:<partition>:<offset>:<attempt>` (topic names cannot contain ':').
pub(crate) fn ack_id(topic: &str, partition: i32, offset: i64, attempt: u32) -> String {
    format!("{topic}:{partition}:{offset}:{attempt}")
}

/// Reads an ack id back into the attempt it names.
pub(crate) fn parse_ack_id(ack_id: &str) -> Result<AckRef, Error> {
    let malformed = || {
        Error::InvalidArgument(format!(
            "ack id {} is not one the gateway handed out (expected <topic>:<partition>:<offset>:<attempt>)",
            clip(ack_id)
        ))
    };
    let mut parts = ack_id.rsplitn(4, ':');
    let mut number = || parts.next().and_then(|n| n.parse::<i64>().ok());
    let (attempt, offset, partition) = (number(), number(), number());
    let topic = parts.next().filter(|t| !t.is_empty());
    match (topic, partition, offset, attempt) {
        (Some(topic), Some(partition), Some(offset), Some(attempt))
            if offset >= 0 && (0..=i64::from(i32::MAX)).contains(&partition) && attempt >= 1 =>
        {
            Ok(AckRef {
                position: TopicPartition::new(topic, partition as i32).at(offset),
                attempt: u32::try_from(attempt).map_err(|_| malformed())?,
            })
        }
        _ => Err(malformed()),
    }
}

/// A stream message carrying one delivery.
pub(super) fn delivery_message(delivery: Delivery) -> SubscribeResponse {
    SubscribeResponse {
        kind: Some(Kind::Delivery(delivery)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_ids_name_an_attempt_and_malformed_ones_are_refused() {
        let id = ack_id("orders.v1", 3, 42, 2);
        assert_eq!(
            parse_ack_id(&id).unwrap(),
            AckRef {
                position: TopicPartition::new("orders.v1", 3).at(42),
                attempt: 2
            }
        );
        for bad in [
            "",
            "t:1:2",
            "t:x:1:1",
            "t:1:x:1",
            ":1:2:1",
            "t:-1:2:1",
            "t:1:-2:1",
            "t:1:2:0",
            "t:1:2:-1",
            "t:1:2:99999999999",
            "t:99999999999:2:1",
            "nonsense",
        ] {
            assert!(parse_ack_id(bad).is_err(), "{bad}");
        }
    }

    use eventgateway::v1::{event::Data, Event};

    fn of_size(bytes: usize) -> Delivery {
        Delivery {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            event: Some(Event {
                data: Some(Data::Binary(vec![0; bytes])),
                attributes: [("a".to_owned(), "b".to_owned())].into(),
                ..Event::default()
            }),
            ..Delivery::default()
        }
    }

    #[test]
    fn a_key_too_large_for_a_client_is_left_out_too_and_a_binary_key_comes_once() {
        let record = Record {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            key: Some(vec![0xff; 5 << 20]),
            value: Some(b"{}".to_vec()),
            timestamp_ms: None,
            headers: Vec::new(),
            unreadable: 0,
        };
        let large = record.delivery(1);
        assert!(large.encoded_len() <= MAX_DELIVERY_BYTES);
        assert!(large.key.is_empty() && large.key_bytes.is_empty());
        let event = large.event.unwrap();
        assert!(event.attributes[OMITTED].contains("t/1@7"), "{event:?}");
        // Under the bound, a key that is not text comes as its bytes only.
        let small = Record {
            key: Some(vec![0xff; 1 << 20]),
            ..record
        }
        .delivery(1);
        assert_eq!((small.key.as_str(), small.key_bytes.len()), ("", 1 << 20));
        assert!(!small.event.unwrap().attributes.contains_key(OMITTED));
    }

    #[test]
    fn a_value_larger_than_any_delivery_is_left_out_undecoded() {
        let bomb = format!("{{\"a\":[{}0]}}", "0,".repeat(5 << 20));
        let record = Record {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            key: Some(b"k".to_vec()),
            value: Some(bomb.into_bytes()),
            timestamp_ms: None,
            headers: vec![("tenant".into(), Some(b"acme".to_vec()))],
            unreadable: 0,
        };
        let first = record.delivery(1);
        let event = first.event.as_ref().unwrap();
        assert_eq!(event.data, None);
        assert_eq!(event.attributes["tenant"], "acme", "only the payload goes");
        assert!(event.attributes[OMITTED].contains(&format!("{} bytes", record.bytes())));
        assert_eq!(first.key, "k");
        // Later attempts are the first one again, under their own ack id.
        let third = again(&first, 3);
        assert_eq!((third.attempt, third.ack_id.as_str()), (3, "t:1:7:3"));
        assert_eq!(third.event, first.event);
    }

    #[test]
    fn a_delivery_too_large_for_a_client_leaves_its_payload_out_and_says_where() {
        let small = of_size(1000);
        assert_eq!(fit(small.clone(), None), small);
        let large = fit(of_size(5 << 20), None);
        assert!(large.encoded_len() <= MAX_DELIVERY_BYTES);
        let event = large.event.unwrap();
        assert_eq!(event.data, None);
        assert_eq!(event.attributes["a"], "b");
        assert!(event.attributes[OMITTED].contains("t/1@7"), "{event:?}");
    }
}

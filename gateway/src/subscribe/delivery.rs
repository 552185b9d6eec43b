//! A Kafka record as the client receives it: a delivery with its event, its
//! ack id and its attempt, never larger than a gRPC client takes with its
//! default limits (a record that is gets its payload left out, and says so:
//! one record must never break a stream that every reconnect would break
//! again).

use eventgateway::record::{record_to_event, IncomingRecord};
use eventgateway::v1::{subscribe_response::Kind, Delivery, SubscribeResponse};
use prost::Message as _;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::acks::ack_id;

/// The largest delivery a client with gRPC's default limit of 4 MiB takes,
/// with room for the stream message around it.
const MAX_DELIVERY_BYTES: usize = 4 * 1024 * 1024 - 16 * 1024;
/// The attribute of a delivery whose payload (and, when that was not
/// enough, attributes) were left out.
const OMITTED: &str = "eventgateway-omitted";
/// The attribute of a delivery whose record had headers the Kafka client
/// cannot read (a name that is not UTF-8).
const UNREADABLE: &str = "eventgateway-unreadable-headers";

/// A record header: its name and value.
type Header<'a> = (&'a str, Option<&'a [u8]>);

/// The headers of `message` that the Kafka client can read, and how many
/// it cannot: rdkafka panics on a header name that is not UTF-8 (which only
/// a raw-protocol producer can write), and one such record must not end
/// every stream that meets it.
fn readable_headers<'a>(message: &'a BorrowedMessage<'_>) -> (Vec<Header<'a>>, usize) {
    let Some(headers) = message.headers() else {
        return (Vec::new(), 0);
    };
    let mut readable = Vec::with_capacity(headers.count());
    let mut unreadable = 0;
    for index in 0..headers.count() {
        let read =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| headers.try_get(index)));
        match read {
            Ok(Some(header)) => readable.push((header.key, header.value)),
            Ok(None) => {}
            Err(_) => unreadable += 1,
        }
    }
    (readable, unreadable)
}

/// The first delivery of a Kafka record.
pub(super) fn delivery(message: &BorrowedMessage<'_>) -> Delivery {
    fit(record_delivery(message))
}

/// `delivery`, or, when it is too large for a client to take, the same
/// without its payload (and attributes), with [`OMITTED`] saying why and
/// where to read the record.
fn fit(mut delivery: Delivery) -> Delivery {
    let size = delivery.encoded_len();
    if size <= MAX_DELIVERY_BYTES {
        return delivery;
    }
    let note = format!(
        "the record takes {size} bytes, more than a gRPC client takes by default: read it with a Kafka client at {}/{}@{}",
        delivery.topic, delivery.partition, delivery.offset
    );
    let event = delivery.event.get_or_insert_default();
    event.data = None;
    if event.encoded_len() > MAX_DELIVERY_BYTES / 2 {
        event.attributes.clear();
        event.binary_attributes.clear();
    }
    event.attributes.insert(OMITTED.to_owned(), note);
    delivery
}

/// The delivery of a Kafka record, whatever its size.
fn record_delivery(message: &BorrowedMessage<'_>) -> Delivery {
    let (headers, unreadable) = readable_headers(message);
    let record = IncomingRecord {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        value: message.payload(),
        timestamp_ms: message.timestamp().to_millis(),
        headers,
    };
    Delivery {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .unwrap_or_default(),
        // A key that is not text arrives exactly too.
        key_bytes: message
            .key()
            .filter(|key| std::str::from_utf8(key).is_err())
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        event: Some(noting_unreadable(
            record_to_event(&record),
            unreadable,
            message,
        )),
        ack_id: ack_id(message.topic(), message.partition(), message.offset()),
        attempt: 1,
    }
}

/// `event`, saying so when `unreadable` headers of its record were left
/// out, and where to read them.
fn noting_unreadable(
    mut event: eventgateway::v1::Event,
    unreadable: usize,
    message: &BorrowedMessage<'_>,
) -> eventgateway::v1::Event {
    if unreadable > 0 {
        let note = format!(
            "{unreadable} header(s) whose name is not UTF-8 were left out: read them with a Kafka client at {}/{}@{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        event.attributes.insert(UNREADABLE.to_owned(), note);
    }
    event
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
    fn a_delivery_too_large_for_a_client_leaves_its_payload_out_and_says_where() {
        let small = of_size(1000);
        assert_eq!(fit(small.clone()), small);
        let large = fit(of_size(5 << 20));
        assert!(large.encoded_len() <= MAX_DELIVERY_BYTES);
        let event = large.event.unwrap();
        assert_eq!(event.data, None);
        assert_eq!(event.attributes["a"], "b");
        assert!(event.attributes[OMITTED].contains("t/1@7"), "{event:?}");
    }
}

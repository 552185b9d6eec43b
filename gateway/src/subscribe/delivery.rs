//! A Kafka record as the client receives it: a delivery with its event, its
//! ack id and its attempt.

use eventgateway::record::{record_to_event, IncomingRecord};
use eventgateway::v1::{subscribe_response::Kind, Delivery, SubscribeResponse};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::acks::ack_id;

/// The first delivery of a Kafka record.
pub(super) fn delivery(message: &BorrowedMessage<'_>) -> Delivery {
    let headers = message
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
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
        event: Some(record_to_event(&record)),
        ack_id: ack_id(message.topic(), message.partition(), message.offset()),
        attempt: 1,
    }
}

/// A stream message carrying one delivery.
pub(super) fn delivery_message(delivery: Delivery) -> SubscribeResponse {
    SubscribeResponse {
        kind: Some(Kind::Delivery(delivery)),
    }
}

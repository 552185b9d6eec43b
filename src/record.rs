//! The mapping between an [`Event`] and a Kafka record: the CloudEvents Kafka
//! protocol binding in binary mode.
//!
//! - record key: the partition key;
//! - record value: the payload's bytes (a `json` payload as JSON text);
//! - headers: `ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`
//!   (RFC 3339), `content-type`, and one header per event attribute.
//!
//! A record that carries no `ce_*` headers (written by a plain Kafka client)
//! still becomes an event: its id is `<topic>-<partition>-<offset>`, its time
//! the record timestamp, and its payload `json` when the value is a JSON
//! object, `text` when it is UTF-8 and `binary` otherwise.

use std::borrow::Cow;
use std::cell::RefCell;

use prost_types::Timestamp;

use crate::json::{json_to_struct, struct_to_json};
use crate::v1::{event::Data, Event};

/// Header names of the CloudEvents Kafka protocol binding.
pub mod header {
    /// CloudEvents spec version; always [`SPECVERSION_VALUE`].
    pub const SPECVERSION: &str = "ce_specversion";
    /// The CloudEvents spec version the gateway writes.
    pub const SPECVERSION_VALUE: &str = "1.0";
    /// Event id.
    pub const ID: &str = "ce_id";
    /// Event type.
    pub const TYPE: &str = "ce_type";
    /// Event source.
    pub const SOURCE: &str = "ce_source";
    /// Event time, RFC 3339.
    pub const TIME: &str = "ce_time";
    /// Media type of the value.
    pub const CONTENT_TYPE: &str = "content-type";
    /// Prefix reserved for CloudEvents attributes.
    pub const CE_PREFIX: &str = "ce_";
}

/// Default media type of a `json` payload.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Default media type of a `text` payload.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Default media type of a `binary` payload.
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// A Kafka record to write, independent of any Kafka client.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRecord {
    /// Record key; `None` for an empty partition key.
    pub key: Option<Vec<u8>>,
    /// Record value: the payload bytes.
    pub value: Vec<u8>,
    /// Record headers, in order.
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
    /// Record timestamp in milliseconds since the Unix epoch: the event time.
    pub timestamp_ms: Option<i64>,
}

/// A Kafka record that was read, borrowed from the client that read it.
#[derive(Debug, Clone)]
pub struct IncomingRecord<'a> {
    /// Topic it was read from.
    pub topic: &'a str,
    /// Partition it was read from.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Value; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// Record timestamp in milliseconds since the Unix epoch, when it has one.
    pub timestamp_ms: Option<i64>,
    /// Headers, in order; a header may have no value.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// An event's payload as a record value, and the media type it has unless
/// the event names its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The record value.
    pub value: Vec<u8>,
    /// The content type of a payload of this kind.
    pub default_content_type: &'static str,
}

impl Payload {
    /// Encodes a payload, moving its bytes: a `json` payload as JSON text,
    /// `text` as its UTF-8 bytes, `binary` as it is, none as no bytes.
    pub fn encode(data: Option<Data>) -> Self {
        let (value, default_content_type) = match data {
            Some(Data::Json(object)) => (struct_to_json(&object), JSON_CONTENT_TYPE),
            Some(Data::Text(text)) => (text.into_bytes(), TEXT_CONTENT_TYPE),
            Some(Data::Binary(bytes)) => (bytes, BINARY_CONTENT_TYPE),
            None => (Vec::new(), BINARY_CONTENT_TYPE),
        };
        Self {
            value,
            default_content_type,
        }
    }
}

/// Builds the record for an event, moving its payload and fields into it.
/// The caller has filled the event's id and time; an empty `key` writes a
/// record without a key.
pub fn event_to_record(key: &str, mut event: Event) -> OutgoingRecord {
    let payload = Payload::encode(event.data.take());
    payload_to_record(key, event, payload)
}

/// Builds the record for an event whose payload was encoded already (to
/// check its size before anything else, say); the event's own `data` is
/// not looked at.
pub fn payload_to_record(key: &str, event: Event, payload: Payload) -> OutgoingRecord {
    let Event {
        id,
        r#type,
        source,
        time,
        attributes,
        data: _,
        content_type,
        binary_attributes,
    } = event;
    let Payload {
        value,
        default_content_type,
    } = payload;
    let content_type = if content_type.is_empty() {
        default_content_type.as_bytes().to_vec()
    } else {
        content_type.into_bytes()
    };
    let mut headers: Vec<(Cow<'static, str>, Vec<u8>)> =
        Vec::with_capacity(6 + attributes.len() + binary_attributes.len());
    headers.push((header::SPECVERSION.into(), header::SPECVERSION_VALUE.into()));
    headers.push((header::ID.into(), id.into_bytes()));
    if !r#type.is_empty() {
        headers.push((header::TYPE.into(), r#type.into_bytes()));
    }
    if !source.is_empty() {
        headers.push((header::SOURCE.into(), source.into_bytes()));
    }
    if let Some(time) = &time {
        headers.push((header::TIME.into(), rfc3339(time).into_bytes()));
    }
    headers.push((header::CONTENT_TYPE.into(), content_type));
    let mut attributes: Vec<(String, Vec<u8>)> = attributes
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .chain(binary_attributes)
        .collect();
    attributes.sort_unstable();
    headers.extend(
        attributes
            .into_iter()
            .map(|(name, value)| (Cow::Owned(name), value)),
    );
    OutgoingRecord {
        key: (!key.is_empty()).then(|| key.as_bytes().to_vec()),
        value,
        headers,
        timestamp_ms: time.as_ref().map(timestamp_to_millis),
    }
}

/// Rebuilds the event a record carries.
pub fn record_to_event(record: &IncomingRecord<'_>) -> Event {
    let mut event = Event::default();
    let mut time = None;
    for (name, value) in &record.headers {
        let bytes = value.unwrap_or_default();
        let Ok(text) = std::str::from_utf8(bytes) else {
            // Not text: kept as it is, under its own name, whatever it is.
            event
                .binary_attributes
                .insert((*name).to_owned(), bytes.to_vec());
            continue;
        };
        let text = || text.to_owned();
        match *name {
            header::ID => event.id = text(),
            header::TYPE => event.r#type = text(),
            header::SOURCE => event.source = text(),
            header::TIME => time = text().parse::<Timestamp>().ok(),
            header::CONTENT_TYPE => event.content_type = text(),
            header::SPECVERSION => {}
            _ => {
                event.attributes.insert((*name).to_owned(), text());
            }
        }
    }
    if event.id.is_empty() {
        event.id = format!("{}-{}-{}", record.topic, record.partition, record.offset);
    }
    event.time = time.or_else(|| record.timestamp_ms.map(millis_to_timestamp));
    event.data = record
        .value
        .map(|value| decode_data(value, &event.content_type));
    event
}

/// Picks the payload kind for a record value: `json` for a JSON object (unless
/// the content type says otherwise), `text` for UTF-8, `binary` for the rest
/// or when the content type says it is binary.
fn decode_data(value: &[u8], content_type: &str) -> Data {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let may_be_json = media_type.is_empty() || media_type.ends_with("json");
    let may_be_text = may_be_json || media_type.starts_with("text/");
    if may_be_json {
        if let Some(object) = json_to_struct(value) {
            return Data::Json(object);
        }
    }
    if may_be_text {
        if let Ok(text) = std::str::from_utf8(value) {
            return Data::Text(text.to_owned());
        }
    }
    Data::Binary(value.to_vec())
}

/// Milliseconds since the Unix epoch of a timestamp.
pub fn timestamp_to_millis(time: &Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(time.nanos) / 1_000_000)
}

/// A timestamp in RFC 3339, exactly as `Timestamp`'s `Display` writes it
/// (`2024-02-29T12:00:00.250Z`: no fraction, or 3, 6 or 9 digits), without
/// going through the formatting machinery for the years 0 to 9999.
fn rfc3339(time: &Timestamp) -> String {
    thread_local! {
        // Events come in bursts within one second: its date and time of
        // day are worked out once.
        static LAST_SECOND: RefCell<Option<(i64, String)>> = const { RefCell::new(None) };
    }
    let (seconds, nanos) = (time.seconds, time.nanos);
    if !(0..1_000_000_000).contains(&nanos) {
        return time.to_string();
    }
    LAST_SECOND.with_borrow_mut(|last| {
        if last.as_ref().is_none_or(|(second, _)| *second != seconds) {
            *last = date_and_time(seconds).map(|text| (seconds, text));
        }
        let Some((_, date_and_time)) = last else {
            return time.to_string();
        };
        let mut text = String::with_capacity(date_and_time.len() + 11);
        text.push_str(date_and_time);
        let (fraction, width) = match nanos as u32 {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        if width > 0 {
            text.push('.');
            push_digits(&mut text, fraction, width);
        }
        text.push('Z');
        text
    })
}

/// `YYYY-MM-DDTHH:MM:SS` of a count of seconds since the Unix epoch, for
/// the years 0 to 9999.
fn date_and_time(seconds: i64) -> Option<String> {
    const DAY: i64 = 86_400;
    let (year, month, day) = civil_from_days(seconds.div_euclid(DAY));
    if !(0..=9999).contains(&year) {
        return None;
    }
    let of_day = seconds.rem_euclid(DAY);
    let mut text = String::with_capacity(19);
    for (separator, value, width) in [
        ("", year, 4),
        ("-", month, 2),
        ("-", day, 2),
        ("T", of_day / 3600, 2),
        (":", of_day / 60 % 60, 2),
        (":", of_day % 60, 2),
    ] {
        text.push_str(separator);
        push_digits(&mut text, value as u32, width);
    }
    Some(text)
}

/// `value` in `width` decimal digits, zero-padded.
fn push_digits(text: &mut String, mut value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    for digit in digits[..width].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    text.extend(digits[..width].iter().map(|&d| char::from(d)));
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic
/// Gregorian calendar; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The timestamp of a count of milliseconds since the Unix epoch.
pub fn millis_to_timestamp(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn rfc3339_writes_what_timestamp_display_writes() {
        let mut cases = vec![
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000,
            },
            Timestamp {
                seconds: 1_709_208_000,
                nanos: 250_000,
            },
            Timestamp {
                seconds: 951_782_400,
                nanos: 1,
            },
            Timestamp {
                seconds: -1,
                nanos: 999_999_999,
            },
            Timestamp {
                seconds: -62_135_596_800,
                nanos: 0,
            },
            Timestamp {
                seconds: 253_402_300_799,
                nanos: 123_456_789,
            },
            Timestamp {
                seconds: 253_402_300_800,
                nanos: 0,
            },
            Timestamp {
                seconds: -62_135_596_801,
                nanos: 0,
            },
            Timestamp {
                seconds: 5,
                nanos: -1,
            },
        ];
        // And a spread of instants from year 0 to 9999.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seconds = (x % 315_537_897_600) as i64 - 62_167_219_200;
            let nanos = match x % 4 {
                0 => 0,
                1 => (x % 1000) as i32 * 1_000_000,
                2 => (x % 1_000_000) as i32 * 1000,
                _ => (x % 1_000_000_000) as i32,
            };
            cases.push(Timestamp { seconds, nanos });
        }
        // Several in one second: the second's text is reused.
        for nanos in [0, 7, 250_000_000, 999_999_000, 0] {
            cases.push(Timestamp {
                seconds: 1_764_201_600,
                nanos,
            });
        }
        for time in cases {
            assert_eq!(rfc3339(&time), time.to_string(), "{time:?}");
        }
    }

    fn incoming<'a, S: AsRef<str>>(
        value: Option<&'a [u8]>,
        headers: &'a [(S, Vec<u8>)],
    ) -> IncomingRecord<'a> {
        IncomingRecord {
            topic: "orders",
            partition: 2,
            offset: 41,
            value,
            timestamp_ms: Some(1_700_000_000_123),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_ref(), Some(v.as_slice())))
                .collect(),
        }
    }

    #[test]
    fn an_event_survives_the_round_trip_through_a_record() {
        let event = Event {
            id: "id-1".into(),
            r#type: "user.registered".into(),
            source: "/user-service".into(),
            time: Some(millis_to_timestamp(1_700_000_000_500)),
            attributes: HashMap::from([("tenant".into(), "acme".into())]),
            data: json_to_struct(br#"{"user_id":1}"#).map(Data::Json),
            content_type: String::new(),
            binary_attributes: HashMap::from([("signature".into(), vec![0xff, 0x00, 0x80])]),
        };
        let record = event_to_record("user-1", event.clone());
        assert_eq!(record.key.as_deref(), Some(&b"user-1"[..]));
        assert_eq!(record.value, br#"{"user_id":1}"#);
        assert_eq!(record.timestamp_ms, Some(1_700_000_000_500));
        let back = record_to_event(&incoming(Some(&record.value), &record.headers));
        assert_eq!(
            back,
            Event {
                content_type: JSON_CONTENT_TYPE.into(),
                ..event
            }
        );
    }

    #[test]
    fn header_values_that_are_not_text_arrive_as_bytes_unchanged() {
        let headers = [
            ("tenant", b"acme".to_vec()),
            ("digest", vec![0xde, 0xad, 0xbe, 0xef]),
            ("ce_id", vec![0xff]),
        ];
        let event = record_to_event(&incoming(Some(b"x"), &headers));
        assert_eq!(event.attributes["tenant"], "acme");
        assert_eq!(event.binary_attributes["digest"], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(event.binary_attributes["ce_id"], [0xff]);
        assert_eq!(
            event.id, "orders-2-41",
            "an id that is not text is not the id"
        );
        assert!(!event.attributes.contains_key("digest"));
    }

    #[test]
    fn a_plain_record_gets_an_id_a_time_and_a_payload_kind() {
        let plain = record_to_event(&incoming::<String>(Some(br#"{"a":1}"#), &[]));
        assert_eq!(plain.id, "orders-2-41");
        assert_eq!(plain.time, Some(millis_to_timestamp(1_700_000_000_123)));
        assert!(matches!(plain.data, Some(Data::Json(_))));
        let text = record_to_event(&incoming::<String>(Some(b"[1, 2]"), &[]));
        assert_eq!(text.data, Some(Data::Text("[1, 2]".into())));
        let binary = record_to_event(&incoming::<String>(Some(&[0xff, 0x00]), &[]));
        assert_eq!(binary.data, Some(Data::Binary(vec![0xff, 0x00])));
        let tombstone = record_to_event(&incoming::<String>(None, &[]));
        assert_eq!(tombstone.data, None);
    }

    #[test]
    fn the_content_type_decides_between_json_text_and_binary() {
        let headers = [(header::CONTENT_TYPE.to_owned(), b"text/plain".to_vec())];
        let text = record_to_event(&incoming(Some(br#"{"a":1}"#), &headers));
        assert_eq!(text.data, Some(Data::Text(r#"{"a":1}"#.into())));
        let headers = [(header::CONTENT_TYPE.to_owned(), BINARY_CONTENT_TYPE.into())];
        let binary = record_to_event(&incoming(Some(b"abc"), &headers));
        assert_eq!(binary.data, Some(Data::Binary(b"abc".to_vec())));
    }

    #[test]
    fn no_key_for_an_empty_partition_key() {
        assert_eq!(event_to_record("", Event::default()).key, None);
    }
}

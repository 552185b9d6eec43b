//! The bounds of the wire contract: what the gateway accepts in one
//! request, beside the rule for topic names. Clients may check against
//! them before they send (the notifier clips its dead-letter reasons to
//! [`MAX_REASON_LEN`]); the gateway answers INVALID_ARGUMENT past any.

/// Longest topic (and consumer group) name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;
/// Most topics one subscription reads.
pub const MAX_TOPICS: usize = 100;
/// Most partitions one subscription's `start_offsets` names.
pub const MAX_START_OFFSETS: usize = 10_000;
/// Most ack ids one Acknowledge call carries.
pub const MAX_ACK_IDS: usize = 10_000;
/// Longest ack id the gateway hands out: a topic name, a partition, an
/// offset and an attempt, and (replicas that take acks for each other) a
/// signature of 16 characters.
pub const MAX_ACK_ID_LEN: usize = MAX_TOPIC_LEN + 64;
/// Longest dead-letter reason.
pub const MAX_REASON_LEN: usize = 1024;
/// Longest request id of a settle request.
pub const MAX_REQUEST_ID_LEN: usize = 256;
/// Most delivery attempts a dead-letter policy allows.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 1000;
/// Longest subscription id the gateway hands out: a UUID (36), and
/// (replicas that take acks for each other) the owner's signed route.
pub const MAX_SUBSCRIPTION_ID_LEN: usize = 256;
/// Longest internal address a replica advertises (`host:port`), so that
/// its subscription ids stay within [`MAX_SUBSCRIPTION_ID_LEN`].
pub const MAX_INTERNAL_ADDR_LEN: usize = 128;
/// Most events in one batch of PublishEvents.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// A batch's encoded events together, at most, in units of the gateway's
/// largest payload (`--max-payload-bytes`).
pub const BATCH_PAYLOADS: usize = 4;
/// Most attributes (text and binary together) on one event.
pub const MAX_ATTRIBUTES: usize = 100;
/// Longest attribute name.
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 256;
/// Largest attribute value.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 16 * 1024;
/// Largest sum of an event's attribute names and values.
pub const MAX_ATTRIBUTES_BYTES: usize = 32 * 1024;
/// Longest partition key.
pub const MAX_KEY_LEN: usize = 4 * 1024;
/// Longest event id, type, source and content type.
pub const MAX_FIELD_LEN: usize = 2 * 1024;

/// Which bytes a Kafka topic name may hold: ASCII letters and digits, '.',
/// '_' and '-'.
const LEGAL: [bool; 256] = {
    let mut legal = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        legal[b] = c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-';
        b += 1;
    }
    legal
};

/// Whether `byte` may appear in a Kafka topic name.
pub fn topic_byte(byte: u8) -> bool {
    LEGAL[usize::from(byte)]
}

/// Whether `topic` is a legal Kafka topic name: 1 to [`MAX_TOPIC_LEN`]
/// bytes of ASCII letters, digits, '.', '_' and '-', and neither "." nor
/// "..".
pub fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic != "."
        && topic != ".."
        && topic.bytes().all(topic_byte)
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_s_rule() {
        for ok in ["user-registered", "a.b_c-D9", &"x".repeat(MAX_TOPIC_LEN)] {
            assert!(is_topic_name(ok), "{ok}");
        }
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        for bad in ["", ".", "..", "a b", "a/b", "ü", "a:b", long.as_str()] {
            assert!(!is_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("abc".into(), 5), "abc");
        assert_eq!(truncated("abcdef".into(), 4), "abcd");
        assert_eq!(truncated("aéé".into(), 4), "aé", "é is 2 bytes");
        assert_eq!(
            truncated("é".repeat(600), MAX_REASON_LEN).len(),
            MAX_REASON_LEN
        );
    }
}

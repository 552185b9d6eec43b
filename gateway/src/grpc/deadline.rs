//! When a call must be answered: the client's deadline (from its
//! `grpc-timeout` header, less a margin) or the gateway's request timeout,
//! whichever comes first.

use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::MetadataMap;

/// Part of a client's deadline kept back (at most a tenth of it) so that
/// the gateway answers DEADLINE_EXCEEDED itself, before the client's own
/// timer gives up on the call: 20 ms was not enough on a loaded machine
/// (one answer in about 1,500 of a fault test came after the client's
/// deadline, which tonic reports as CANCELLED).
const DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// The instant by which a call with `metadata` must be answered, at most
/// `request_timeout` from now.
pub(super) fn deadline(metadata: &MetadataMap, request_timeout: Duration) -> Instant {
    let limit = grpc_timeout(metadata)
        .map(|timeout| timeout.saturating_sub(DEADLINE_MARGIN.min(timeout / 10)))
        .map_or(request_timeout, |t| t.min(request_timeout));
    Instant::now() + limit
}

/// The header of a client's deadline, parsed once (a name given as text is
/// parsed on every lookup).
static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The client's deadline from the `grpc-timeout` header, if it sent one.
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.as_ref().get(&GRPC_TIMEOUT)?.to_str().ok()?;
    if value.len() < 2 {
        return None;
    }
    let (amount, unit) = value.split_at(value.len() - 1);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_headers_parse_in_every_unit() {
        let mut metadata = MetadataMap::new();
        for (value, expected) in [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ] {
            metadata.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata), Some(expected), "{value}");
        }
        metadata.insert("grpc-timeout", "10x".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), None);
    }

    #[test]
    fn the_deadline_is_the_earlier_of_the_clients_less_a_margin_and_the_bound() {
        let within = |metadata: &MetadataMap, bound: Duration| {
            let before = Instant::now();
            let deadline = deadline(metadata, bound);
            (deadline - before, deadline - Instant::now())
        };
        let bound = Duration::from_secs(60);
        let mut metadata = MetadataMap::new();
        let (most, least) = within(&metadata, bound);
        assert!(least <= bound && bound <= most, "no header: the bound");
        metadata.insert("grpc-timeout", "2H".parse().unwrap());
        let (most, least) = within(&metadata, bound);
        assert!(
            least <= bound && bound <= most,
            "a longer deadline: the bound"
        );
        metadata.insert("grpc-timeout", "1S".parse().unwrap());
        let kept = Duration::from_millis(900);
        let (most, least) = within(&metadata, bound);
        assert!(least <= kept && kept <= most, "the client's, less a tenth");
        metadata.insert("grpc-timeout", "10S".parse().unwrap());
        let kept = Duration::from_millis(9_800);
        let (most, least) = within(&metadata, bound);
        assert!(least <= kept && kept <= most, "the client's, less 200 ms");
    }
}

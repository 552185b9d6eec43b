//! The answer to a publish that Kafka does not confirm in time: when Kafka
//! says why its topic cannot take writes now (a partition without a leader,
//! too few replicas in sync), the status names that cause instead of only
//! the deadline. A call with a deadline of its own asks a little before it,
//! while the event still waits; one that waits for librdkafka's delivery
//! timeout asks once librdkafka gave up.

use std::future::Future;
use std::time::Duration;

use rdkafka::producer::future_producer::Delivery;
use tokio::time::Instant;

use crate::error::Error;
use crate::kafka::writable::Writability;

/// How long before its deadline an unconfirmed publish asks why (at most a
/// quarter of its whole wait), and how long it waits for the answer.
const ASK_BEFORE: Duration = Duration::from_secs(1);

/// `sending`'s answer for an event of `topic`, which must come by
/// `deadline`; `timed`: the deadline comes before librdkafka's own answer
/// would. An event Kafka did not confirm is answered with why `topic`
/// cannot take writes, when Kafka says so.
pub(super) async fn with_cause(
    sending: impl Future<Output = Result<Delivery, Error>>,
    writability: &Writability,
    topic: &str,
    deadline: Instant,
    timed: bool,
) -> Result<Delivery, Error> {
    if !timed {
        return match sending.await {
            Err(error) if unconfirmed(&error) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let why = writability.why_not(topic, ASK_BEFORE.min(left)).await;
                Err(why.map_or(error, Error::Unwritable))
            }
            answer => answer,
        };
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let ask_at = deadline - ASK_BEFORE.min(left / 4);
    let asking = async {
        tokio::time::sleep_until(ask_at).await;
        writability.why_not(topic, ASK_BEFORE).await
    };
    tokio::pin!(sending);
    tokio::pin!(asking);
    let mut why = None;
    let answer = loop {
        tokio::select! {
            biased;
            answer = &mut sending => break answer,
            found = &mut asking, if why.is_none() => why = Some(found),
        }
    };
    match answer {
        Err(error) if unconfirmed(&error) => Err(why.flatten().map_or(error, Error::Unwritable)),
        answer => answer,
    }
}

/// Whether `error` leaves an event unconfirmed for lack of time or of a
/// reachable Kafka (it may or may not be stored).
fn unconfirmed(error: &Error) -> bool {
    matches!(error, Error::DeadlineExceeded | Error::KafkaUnavailable(_))
}

//! Settling deliveries, as Settle and StreamingSubscribe's `settle`
//! messages do it: the verbs go to the subscription's task, and each ack id
//! is answered with what became of it.

use eventgateway::v1::{SettleOutcome, SettleResponse, SettleResult};

use super::validate::Settle;
use crate::error::Error;
use crate::subscribe::{Outcome, Settler, Verb};

/// Applies `settle` through `settler` and answers it, one result per ack id
/// in request order.
pub(super) async fn settle(settler: &Settler, settle: Settle) -> Result<SettleResponse, Error> {
    let Settle {
        request_id,
        verbs,
        ack_ids,
    } = settle;
    let kinds: Vec<i32> = verbs
        .iter()
        .map(|(verb, _)| wire_verb(verb) as i32)
        .collect();
    let outcomes = settler.settle(verbs).await?;
    Ok(answer(request_id, ack_ids, kinds, outcomes))
}

/// The same answer for a subscription that takes no verbs (ACK_MODE_AUTO):
/// every ack id refused.
pub(super) fn refuse_all(settle: Settle) -> SettleResponse {
    let kinds = settle
        .verbs
        .iter()
        .map(|(verb, _)| wire_verb(verb) as i32)
        .collect();
    let outcomes = settle.verbs.iter().map(|_| Outcome::auto_mode()).collect();
    answer(settle.request_id, settle.ack_ids, kinds, outcomes)
}

/// The answer for a subscription whose replica is gone (`why`): every
/// ack id STALE, its event to come again through the group.
pub(super) fn gone(settle: Settle, why: &str) -> SettleResponse {
    let kinds = settle
        .verbs
        .iter()
        .map(|(verb, _)| wire_verb(verb) as i32)
        .collect();
    let outcome = || {
        Outcome::Stale(format!(
            "the replica that held this subscription is gone ({why}); the event comes again through the group"
        ))
    };
    let outcomes = settle.verbs.iter().map(|_| outcome()).collect();
    answer(settle.request_id, settle.ack_ids, kinds, outcomes)
}

fn answer(
    request_id: String,
    ack_ids: Vec<String>,
    kinds: Vec<i32>,
    outcomes: Vec<Outcome>,
) -> SettleResponse {
    let results = ack_ids
        .into_iter()
        .zip(kinds)
        .zip(outcomes)
        .map(|((ack_id, verb), outcome)| {
            let (outcome, detail) = match outcome {
                Outcome::Accepted => (SettleOutcome::Accepted, String::new()),
                Outcome::Unknown(why) => (SettleOutcome::Unknown, why),
                Outcome::Stale(why) => (SettleOutcome::Stale, why),
                Outcome::Refused(why) => (SettleOutcome::Refused, why),
            };
            SettleResult {
                ack_id,
                verb,
                outcome: outcome as i32,
                detail,
            }
        })
        .collect();
    SettleResponse {
        request_id,
        results,
    }
}

fn wire_verb(verb: &Verb) -> eventgateway::v1::Verb {
    match verb {
        Verb::Ack => eventgateway::v1::Verb::Ack,
        Verb::Nack(_) => eventgateway::v1::Verb::Nack,
        Verb::Extend(_) => eventgateway::v1::Verb::Extend,
        Verb::DeadLetter(_) => eventgateway::v1::Verb::DeadLetter,
    }
}

//! Acknowledge and Settle: the subscription, the ack ids and the verbs.

use eventgateway::v1::{AcknowledgeRequest, SettleRequest};

use crate::error::Error;
use crate::route::AckIds;
use crate::subscribe::{parse_ack_id, AckRef, Verb};
use eventgateway::bounds::*;

use super::*;

/// Refuses an ack id longer than any the gateway hands out, before
/// looking into it.
fn ack_len(id: &str) -> Result<(), Error> {
    if id.len() > MAX_ACK_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "an ack id of {} bytes is not one the gateway handed out (at most {MAX_ACK_ID_LEN})",
            id.len()
        )));
    }
    Ok(())
}

/// Reads an ack id whose signature (if `signed` asks for one) checked
/// out.
fn ack_ref(id: &str, signed: AckIds<'_>) -> Result<AckRef, Error> {
    ack_len(id)?;
    parse_ack_id(signed.open(id)?)
}

/// Checks an acknowledge request: the subscription id and every ack id.
pub(crate) fn acknowledge_request(
    request: AcknowledgeRequest,
    signed: AckIds<'_>,
) -> Result<(String, Vec<AckRef>), Error> {
    subscription_id(&request.subscription_id)?;
    if request.ack_ids.len() > MAX_ACK_IDS {
        return Err(Error::InvalidArgument(format!(
            "{} ack ids in one call; acknowledge at most {MAX_ACK_IDS} at a time",
            request.ack_ids.len()
        )));
    }
    let acks = request
        .ack_ids
        .iter()
        .map(|id| ack_ref(id, signed))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((request.subscription_id, acks))
}

/// A settle request that passed its bounds.
#[derive(Debug)]
pub(crate) struct Settle {
    /// The request id to echo.
    pub(crate) request_id: String,
    /// Each verb with the attempt its ack id names, or why it names none.
    pub(crate) verbs: Vec<(Verb, Result<AckRef, String>)>,
    /// Each verb's ack id as sent (clipped to [`MAX_ACK_ID_LEN`]), for the
    /// answer.
    pub(crate) ack_ids: Vec<String>,
}

/// Checks a settle request's bounds (the subscription id is the caller's
/// to check: a stream settles its own). Ack ids that name nothing are not
/// refused here: each is answered UNKNOWN. One whose signature (due when
/// `signed` says so) does not check out refuses the whole request: it was
/// altered or forged, and reaches no subscription.
pub(crate) fn settle_request(request: SettleRequest, signed: AckIds<'_>) -> Result<Settle, Error> {
    let count = request.acks.len()
        + request.nacks.len()
        + request.extends.len()
        + request.dead_letters.len();
    if count > MAX_ACK_IDS {
        return Err(Error::InvalidArgument(format!(
            "{count} ack ids in one settle request; at most {MAX_ACK_IDS}"
        )));
    }
    if request.request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "request_id is {} bytes; at most {MAX_REQUEST_ID_LEN}",
            request.request_id.len()
        )));
    }
    let mut verbs = Vec::with_capacity(count);
    for id in request.acks {
        verbs.push((Verb::Ack, id));
    }
    for nack in request.nacks {
        let after = nack.delay.map(|d| delay("a nack delay", d)).transpose()?;
        verbs.push((Verb::Nack(after), nack.ack_id));
    }
    for extend in request.extends {
        let by = extend
            .extension
            .map(|d| delay("an extension", d))
            .transpose()?;
        verbs.push((Verb::Extend(by), extend.ack_id));
    }
    for letter in request.dead_letters {
        if letter.reason.len() > MAX_REASON_LEN {
            return Err(Error::InvalidArgument(format!(
                "a dead-letter reason is {} bytes; at most {MAX_REASON_LEN}",
                letter.reason.len()
            )));
        }
        verbs.push((Verb::DeadLetter(letter.reason), letter.ack_id));
    }
    let mut ack_ids = Vec::with_capacity(count);
    let mut checked = Vec::with_capacity(count);
    for (verb, id) in verbs {
        let named = match ack_len(&id) {
            Ok(()) => parse_ack_id(signed.open(&id)?),
            Err(error) => Err(error),
        };
        ack_ids.push(truncated(id, MAX_ACK_ID_LEN));
        checked.push((verb, named.map_err(|error| error.to_string())));
    }
    let verbs = checked;
    Ok(Settle {
        request_id: request.request_id,
        verbs,
        ack_ids,
    })
}

/// Checks a Settle call whole, before it goes anywhere: the id of the
/// subscription it settles for, and its verbs.
pub(crate) fn settle_call(
    mut request: SettleRequest,
    signed: AckIds<'_>,
) -> Result<(String, Settle), Error> {
    subscription_id(&request.subscription_id)?;
    let id = std::mem::take(&mut request.subscription_id);
    Ok((id, settle_request(request, signed)?))
}

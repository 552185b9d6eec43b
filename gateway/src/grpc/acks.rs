//! Acknowledge and Settle as unary calls, at any replica: answered here
//! when this replica holds the subscription, else forwarded in one hop to
//! the replica its id names, whose answer is the answer. Ids whose
//! signature does not check out are refused before anything. A call
//! another replica forwarded is answered here whatever its id names: an
//! owner that is not this process any more is gone.

use eventgateway::v1::{AcknowledgeRequest, SettleRequest, SettleResponse};
use tonic::{Request, Status};

use super::{caller_of, refused, settle, validate, Gateway};
use crate::auth::Caller;
use crate::error::Error;
use crate::route::{AckIds, Forwarded, FromReplica, Owner, Routing};

/// Where a call's subscription is held.
enum Held<'a> {
    /// Here (or routing is off).
    Here,
    /// At another replica: forward there.
    There(&'a Routing, Owner),
    /// By a process gone from this replica's address: the call came from
    /// a replica that took the id's route to be this one.
    Gone,
}

impl Gateway {
    /// Where the subscription `id` names is held, once its signature
    /// checked out.
    fn held(&self, id: &str, from_replica: bool) -> Result<(Held<'_>, Option<Owner>), Error> {
        let Some(routing) = &self.routing else {
            return Ok((Held::Here, None));
        };
        validate::subscription_id(id)?;
        let owner = routing.owner(id)?;
        let held = match (routing.is_me(&owner), from_replica) {
            (true, _) => Held::Here,
            (false, false) => Held::There(routing, owner.clone()),
            (false, true) => Held::Gone,
        };
        Ok((held, Some(owner)))
    }

    /// Acknowledge: all of the ack ids, or none.
    pub(super) async fn acknowledge_call(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<(), Status> {
        let (from, from_replica) = origin(&request);
        let request = request.into_inner();
        let answered = async {
            let (held, owner) = self.held(&request.subscription_id, from_replica)?;
            let signed = signed(self.routing.as_ref(), owner.as_ref());
            match held {
                Held::Here => {
                    let (id, acks) = validate::acknowledge_request(request, signed)?;
                    self.subscriptions
                        .acknowledge(&id, acks, from.principal.as_deref())
                        .await?;
                    Ok(None)
                }
                Held::Gone => Err(Error::OwnerGone(ANOTHER_PROCESS.into())),
                Held::There(routing, owner) => {
                    validate::acknowledge_request(request.clone(), signed)?;
                    let forwarded = routing
                        .forward()
                        .acknowledge(&owner, request, from.principal.as_deref())
                        .await;
                    self.counted("acknowledge", &forwarded);
                    match forwarded {
                        Forwarded::Answered(_) => Ok(None),
                        Forwarded::Refused(status) => Ok(Some(status)),
                        Forwarded::Gone(why) => Err(Error::OwnerGone(why)),
                    }
                }
            }
        };
        match answered.await {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(status),
            Err(error) => {
                self.access
                    .foreign_subscription(&from, "acknowledge", &error);
                refused("acknowledge", &error);
                Err(error.into())
            }
        }
    }

    /// Settle: each ack id answered with what became of it.
    pub(super) async fn settle_call(
        &self,
        request: Request<SettleRequest>,
    ) -> Result<SettleResponse, Status> {
        let (from, from_replica) = origin(&request);
        let request = request.into_inner();
        let answered = async {
            let (held, owner) = self.held(&request.subscription_id, from_replica)?;
            let signed = signed(self.routing.as_ref(), owner.as_ref());
            let Held::There(routing, owner) = held else {
                let (id, verbs) = validate::settle_call(request, signed)?;
                if matches!(held, Held::Gone) {
                    return Ok(Ok(settle::gone(verbs, ANOTHER_PROCESS)));
                }
                let settler = self.subscriptions.settler(&id, from.principal.as_deref())?;
                return Ok(Ok(settle::settle(&settler, verbs).await?));
            };
            let (_, verbs) = validate::settle_call(request.clone(), signed)?;
            let forwarded = routing
                .forward()
                .settle(&owner, request, from.principal.as_deref())
                .await;
            self.counted("settle", &forwarded);
            Ok(match forwarded {
                Forwarded::Answered(answer) => Ok(answer),
                Forwarded::Refused(status) => Err(status),
                Forwarded::Gone(why) => Ok(settle::gone(verbs, &why)),
            })
        };
        match answered.await {
            Ok(answer) => answer,
            Err(error) => {
                self.access.foreign_subscription(&from, "settle", &error);
                refused("settle", &error);
                Err(error.into())
            }
        }
    }
}

impl Gateway {
    /// Counts a `call` forwarded, by what became of it.
    fn counted<T>(&self, call: &'static str, forwarded: &Forwarded<T>) {
        let outcome = match forwarded {
            Forwarded::Answered(_) => "answered",
            Forwarded::Refused(_) => "refused",
            Forwarded::Gone(_) => "gone",
        };
        self.metrics.delivery().forwarded(call, outcome);
    }
}

/// Why an owner that is not this process is gone.
const ANOTHER_PROCESS: &str = "another process of the gateway listens at its address now";

/// Who made `request`, and whether another replica forwarded it.
fn origin<T>(request: &Request<T>) -> (Caller, bool) {
    let from_replica = request.extensions().get::<FromReplica>().is_some();
    (caller_of(request), from_replica)
}

/// How the ack ids of a subscription held by `owner` are read.
fn signed<'a>(routing: Option<&'a Routing>, owner: Option<&'a Owner>) -> AckIds<'a> {
    match (routing, owner) {
        (Some(routing), Some(owner)) => AckIds::Signed(routing, owner),
        _ => AckIds::Plain,
    }
}

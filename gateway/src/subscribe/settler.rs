//! Verbs on their way to a subscription's task: a Settler hands them over
//! and waits for what each did; Acknowledge applies all or none.

use tokio::sync::oneshot;

use super::registry::{VerbRequest, Verbs};
use super::{AckRef, Outcome, Subscriptions, Verb};
use crate::error::Error;
use crate::text::clip;

/// Hands verbs to one subscription's task.
#[derive(Clone)]
pub(crate) struct Settler {
    /// The task's verbs.
    pub(super) verbs: Verbs,
    /// The subscription's id, for errors.
    id: String,
}

impl Settler {
    /// Hands verbs to `verbs`, the task of subscription `id`.
    pub(super) fn new(verbs: Verbs, id: String) -> Self {
        Self { verbs, id }
    }

    /// Applies `verbs` (each with the attempt its ack id names, or why it
    /// names none) and answers what each did, in order.
    pub(crate) async fn settle(
        &self,
        verbs: Vec<(Verb, Result<AckRef, String>)>,
    ) -> Result<Vec<Outcome>, Error> {
        self.ask(verbs, false).await
    }

    /// Waits until the subscription has ended.
    pub(crate) async fn ended(&self) {
        self.verbs.closed().await;
    }

    async fn ask(
        &self,
        verbs: Vec<(Verb, Result<AckRef, String>)>,
        all_or_none: bool,
    ) -> Result<Vec<Outcome>, Error> {
        if verbs.is_empty() {
            return Ok(Vec::new());
        }
        let gone = || Error::SubscriptionNotFound(clip(&self.id).to_string());
        let (reply, answer) = oneshot::channel();
        self.verbs
            .send(VerbRequest {
                verbs,
                all_or_none,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl Subscriptions {
    /// Where `principal`'s verbs for subscription `id` go: NOT_FOUND for
    /// an id not open here (or of an ACK_MODE_AUTO subscription),
    /// PERMISSION_DENIED for another principal's.
    pub(crate) fn settler(&self, id: &str, principal: Option<&str>) -> Result<Settler, Error> {
        Ok(Settler::new(
            self.registry.verbs(id, principal)?,
            id.to_owned(),
        ))
    }

    /// Hands acknowledgements from `principal` to the task of
    /// subscription `id` and waits for its answer: how many it applied, or
    /// why none was (an ack id never handed out on this stream).
    pub(crate) async fn acknowledge(
        &self,
        id: &str,
        acks: Vec<AckRef>,
        principal: Option<&str>,
    ) -> Result<usize, Error> {
        let settler = self.settler(id, principal)?;
        let verbs = acks.into_iter().map(|ack| (Verb::Ack, Ok(ack))).collect();
        let outcomes = settler.ask(verbs, true).await?;
        Ok(outcomes.len())
    }
}

//! The `eventgateway.v1.EventGateway` gRPC service: each method takes the
//! call's deadline and trace context, validates the request (`validate`),
//! and hands it to the publish or subscribe side; what comes back, a
//! response or an [`Error`], becomes the call's answer. Unary calls are
//! counted against their limit only once their request has arrived, so
//! that a client that never finishes sending holds no permit.
//!
//! - `publish`: one publish request as both publish RPCs handle it.
//! - `publish_stream`: PublishEvents, answers correlated by request id.
//! - `streaming`: StreamingSubscribe, verbs and answers on the stream.
//! - `settle`: verbs answered id by id (Settle and StreamingSubscribe).
//! - `acks`: unary Acknowledge and Settle, here or at the replica that
//!   holds the subscription.
//! - `deadline`: when a call must be answered.

mod acks;
mod deadline;
mod publish;
mod publish_stream;
mod settle;
mod streaming;
pub(crate) mod validate;

use std::time::{Duration, Instant};

use eventgateway::trace_context;
use eventgateway::v1::event_gateway_server::EventGateway;
use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::{
    AcknowledgeRequest, AcknowledgeResponse, PublishEventRequest, PublishEventResponse,
    PublishEventsRequest, SettleRequest, SettleResponse, StreamingSubscribeRequest,
    SubscribeRequest,
};
use eventgateway_runtime::shutdown::Shutdown;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use self::publish::PublishCalls;
use self::publish_stream::PublishEventsStream;
use self::streaming::StreamingStream;
use crate::auth::access::Access;
use crate::auth::share::Capped;
use crate::auth::{audit, Caller};
use crate::error::Error;
use crate::limit::Limit;
use crate::metrics::Metrics;
use crate::publish::Publishing;
use crate::route::Routing;
use crate::spans;
use crate::subscribe::{ManualAcks, Settler, SubscribeStream, Subscriptions};
use crate::text::{id_prefix, LINES};

/// The EventGateway service; cloning shares its state.
#[derive(Clone)]
pub(crate) struct Gateway {
    /// Validates, publishes and counts publish requests.
    publishes: PublishCalls,
    /// The subscriptions of this gateway.
    subscriptions: Subscriptions,
    /// What callers may subscribe to.
    access: Access,
    /// Upper bound on a unary call (`--request-timeout`).
    request_timeout: Duration,
    /// Longest a PublishEvents stream may send nothing
    /// (`--publish-idle-timeout`).
    publish_idle_timeout: Duration,
    /// What MANUAL subscriptions get unless they ask otherwise.
    manual_defaults: ManualAcks,
    /// Ends PublishEvents streams; their tasks are drained at shutdown.
    shutdown: Shutdown,
    /// One permit per unary call in progress (`--max-concurrent-requests`).
    unary: Limit,
    /// One permit per PublishEvents stream open (`--max-publish-streams`).
    publish_streams: Limit,
    /// Acks at any replica, when on.
    routing: Option<Routing>,
    /// Where forwarded calls are counted.
    metrics: Metrics,
}

/// What the service takes from the flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// `--max-payload-bytes`.
    pub(crate) max_payload_bytes: usize,
    /// `--request-timeout`.
    pub(crate) request_timeout: Duration,
    /// `--publish-idle-timeout`.
    pub(crate) publish_idle_timeout: Duration,
    /// `--ack-timeout`.
    pub(crate) ack_timeout: Duration,
    /// `--max-unacked`.
    pub(crate) max_unacked: usize,
    /// `--max-concurrent-requests`.
    pub(crate) max_concurrent_requests: usize,
    /// `--max-publish-streams`.
    pub(crate) max_publish_streams: usize,
}

impl Gateway {
    /// The service over `publishing` and `subscriptions`, under `access`,
    /// with the limits and defaults of `settings`.
    pub(crate) fn new(
        settings: Settings,
        publishing: Publishing,
        subscriptions: Subscriptions,
        access: Access,
        metrics: Metrics,
        (shutdown, routing): (Shutdown, Option<Routing>),
    ) -> Self {
        Self {
            publishes: PublishCalls::new(
                publishing,
                metrics.clone(),
                settings.max_payload_bytes,
                access.clone(),
            ),
            access,
            subscriptions,
            request_timeout: settings.request_timeout,
            publish_idle_timeout: settings.publish_idle_timeout,
            manual_defaults: ManualAcks::new(settings.ack_timeout, settings.max_unacked),
            shutdown,
            unary: Limit::new(
                settings.max_concurrent_requests,
                "calls are in progress, its --max-concurrent-requests",
            ),
            publish_streams: Limit::new(
                settings.max_publish_streams,
                "PublishEvents streams are open, its --max-publish-streams",
            ),
            routing,
            metrics,
        }
    }
}

#[tonic::async_trait]
impl EventGateway for Gateway {
    async fn publish_event(
        &self,
        request: Request<PublishEventRequest>,
    ) -> Result<Response<PublishEventResponse>, Status> {
        let _permit = self.unary.take()?;
        let deadline = deadline::deadline(request.metadata(), self.request_timeout);
        let caller = trace_context::from_metadata(request.metadata());
        let span = spans::rpc_server("PublishEvent", &caller);
        let from = caller_of(&request);
        let outcome = self
            .publishes
            .publish(request.into_inner(), &from, deadline, caller)
            .instrument(span)
            .await;
        Ok(Response::new(outcome?))
    }

    type PublishEventsStream = PublishEventsStream;

    async fn publish_events(
        &self,
        request: Request<Streaming<PublishEventsRequest>>,
    ) -> Result<Response<Self::PublishEventsStream>, Status> {
        // Who may not publish at all, or holds its share of the streams,
        // takes no place of the others'.
        let from = caller_of(&request);
        let taken = self
            .access
            .may_publish_somewhere(&from)
            .and_then(|()| self.access.share(&from, Capped::PublishStreams))
            .and_then(|share| Ok((self.publish_streams.take()?, share)))
            .inspect_err(|error| refused("publish stream", error))?;
        Ok(Response::new(publish_stream::serve(
            self.publishes.clone(),
            (self.request_timeout, self.publish_idle_timeout),
            &self.shutdown,
            request,
            Box::new(taken),
        )))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = caller_of(&request);
        let (stream, _) = self.open(&from, &request.into_inner(), false).await?;
        Ok(Response::new(stream))
    }

    async fn acknowledge(
        &self,
        request: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        let _permit = self.unary.take()?;
        self.acknowledge_call(request).await?;
        Ok(Response::new(AcknowledgeResponse {}))
    }

    type StreamingSubscribeStream = StreamingStream;

    async fn streaming_subscribe(
        &self,
        request: Request<Streaming<StreamingSubscribeRequest>>,
    ) -> Result<Response<Self::StreamingSubscribeStream>, Status> {
        let from = caller_of(&request);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(self.request_timeout, inbound.message())
            .await
            .map_err(|_| Error::RequestTooSlow(self.request_timeout))
            .inspect_err(|error| refused("subscribe", error))?;
        let subscribe = match first? {
            Some(StreamingSubscribeRequest {
                kind: Some(Inbound::Subscribe(subscribe)),
            }) => subscribe,
            Some(_) => {
                let error = Error::InvalidArgument(
                    "the first message of a StreamingSubscribe stream must be subscribe".into(),
                );
                refused("subscribe", &error);
                return Err(error.into());
            }
            None => return Err(Error::EndedBeforeSubscribing.into()),
        };
        let (stream, settler) = self.open(&from, &subscribe, true).await?;
        Ok(Response::new(streaming::serve(
            stream,
            settler,
            inbound,
            (&self.shutdown, self.routing.clone()),
        )))
    }

    async fn settle(
        &self,
        request: Request<SettleRequest>,
    ) -> Result<Response<SettleResponse>, Status> {
        let _permit = self.unary.take()?;
        Ok(Response::new(self.settle_call(request).await?))
    }
}

impl Gateway {
    /// Opens the subscription `request` asks `from` for: checked against
    /// the policy (its topics, group and dead-letter topics), guarded so
    /// that a policy change ends it, audited. `acks_on_stream`: opened by
    /// StreamingSubscribe.
    async fn open(
        &self,
        from: &Caller,
        request: &SubscribeRequest,
        acks_on_stream: bool,
    ) -> Result<(SubscribeStream, Option<Settler>), Error> {
        let opened = async {
            let spec = validate::subscribe_request(request, &self.manual_defaults)?;
            let admission = self.access.subscribe(
                from,
                &spec.topics,
                spec.group.as_deref(),
                &spec.dead_letter_topics(),
                !spec.shares_a_tail(),
            )?;
            let (topics, group) = (spec.topics.clone(), spec.group.clone());
            let check = self.access.dead_letter_check(from);
            let opened = self
                .subscriptions
                .open(spec, from.principal.clone(), acks_on_stream, check)
                .await?;
            audit::subscription_opened(from, &topics, group.as_deref());
            let stream = Box::pin(admission.guard(opened.stream)) as SubscribeStream;
            Ok::<_, Error>((stream, opened.settler))
        };
        opened
            .await
            .inspect_err(|error| refused("subscribe", error))
    }
}

/// Who made `request` (the edge authenticated it).
fn caller_of<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}

/// Logs a call that was refused: at most one line a second per call and
/// status, saying how many were left out; a subscription id by its prefix.
fn refused(call: &'static str, error: &Error) {
    let code = error.code();
    let Some(left_out) = LINES.admit((call, code.description()), Instant::now()) else {
        return;
    };
    match error {
        Error::SubscriptionNotFound(id) | Error::NotOwner { id, .. } => tracing::info!(
            subscription = id_prefix(id.trim_start_matches('"')),
            ?code,
            left_out,
            "{call} refused: no such subscription open here for the caller"
        ),
        _ => tracing::info!(%error, ?code, left_out, "{call} refused"),
    }
}

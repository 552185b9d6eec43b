//! The notifier's loop: subscribe through the gateway (MANUAL acks), and for
//! each registration send one welcome email, remember it, then acknowledge.
//!
//! - Already emailed (a redelivery after a crash): acknowledged, skipped.
//! - Unusable event (no payload, no user_id, no usable email) or a permanent
//!   SMTP failure (5xx): published to `<topic>.dlq` with the reason in its
//!   attributes, then acknowledged.
//! - Transient SMTP failure (unreachable, 4xx): retried with backoff, not
//!   acknowledged meanwhile.
//! - The gateway gone or the stream ended: reconnect with backoff; the group
//!   resumes from what was acknowledged.
//! - Shutdown: the email in progress is finished and acknowledged first.

use std::collections::HashMap;

use eventgateway::trace_context;
use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{
    subscribe_response::Kind, AckMode, AcknowledgeRequest, Delivery, Event, PublishEventRequest,
    StartFrom, SubscribeRequest,
};
use lettre::message::Mailbox;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::mailer::{Mailer, SendError};
use crate::metrics::Metrics;
use crate::registration;
use crate::store::SentStore;
use crate::templates::Templates;

/// Why a session with the gateway ended.
enum SessionEnd {
    /// The notifier is shutting down.
    Shutdown,
    /// The gateway ended the stream (it restarts, or shuts down).
    StreamEnded,
}

/// Everything the loop needs.
pub struct Notifier {
    config: Config,
    mailer: Mailer,
    templates: Templates,
    store: SentStore,
    from: Mailbox,
    /// Turns true when shutdown begins.
    stop: watch::Receiver<bool>,
    /// Waits between reconnects and SMTP retries.
    backoff: Backoff,
    /// Counters served on /metrics.
    metrics: Metrics,
}

impl Notifier {
    /// Opens the store, the mailer and the templates.
    pub fn new(
        config: Config,
        stop: watch::Receiver<bool>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            mailer: Mailer::new(config.smtp_url.as_deref(), &config.outbox_dir)?,
            templates: Templates::load(config.templates_dir.as_deref())?,
            store: SentStore::open(&config.state_dir)?,
            from: config.mail_from.parse()?,
            backoff: Backoff::new(config.min_backoff, config.max_backoff),
            config,
            stop,
            metrics,
        })
    }

    /// Runs until shutdown, reconnecting to the gateway as needed.
    pub async fn run(mut self) -> anyhow::Result<()> {
        loop {
            match self.session().await {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::StreamEnded) => {
                    tracing::warn!("the gateway ended the stream; reconnecting")
                }
                Err(error) => tracing::warn!("gateway session failed: {error:#}; reconnecting"),
            }
            if self.pause().await {
                return Ok(());
            }
        }
    }

    /// Waits for the next backoff step; true when shutdown came first.
    async fn pause(&mut self) -> bool {
        let wait = self.backoff.next_wait();
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => *self.stop.borrow(),
            _ = stop.wait_for(|stop| *stop) => true,
        }
    }

    async fn session(&mut self) -> anyhow::Result<SessionEnd> {
        if *self.stop.borrow() {
            return Ok(SessionEnd::Shutdown);
        }
        let channel = Endpoint::from_shared(self.config.gateway_url.clone())?
            .connect()
            .await?;
        let mut client = EventGatewayClient::new(channel);
        let request = SubscribeRequest {
            topics: vec![self.config.topic.clone()],
            group: self.config.group.clone(),
            start_from: StartFrom::Earliest as i32,
            ack_mode: AckMode::Manual as i32,
            ack_timeout: prost_duration(self.config.ack_timeout),
            ..SubscribeRequest::default()
        };
        let mut stream = client.subscribe(request).await?.into_inner();
        let subscription_id = match stream.message().await?.and_then(|m| m.kind) {
            Some(Kind::Subscribed(subscribed)) => subscribed.subscription_id,
            other => anyhow::bail!("the gateway did not confirm the subscription: {other:?}"),
        };
        tracing::info!(
            topic = self.config.topic,
            group = self.config.group,
            subscription = subscription_id,
            "subscribed"
        );
        self.backoff.reset();
        loop {
            let mut stop = self.stop.clone();
            let message = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return Ok(SessionEnd::Shutdown),
                message = stream.message() => message,
            };
            match message {
                Ok(Some(message)) => {
                    if let Some(Kind::Delivery(delivery)) = message.kind {
                        if let Outcome::Shutdown =
                            self.handle(&mut client, &subscription_id, delivery).await?
                        {
                            return Ok(SessionEnd::Shutdown);
                        }
                    }
                }
                Ok(None) => return Ok(SessionEnd::StreamEnded),
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "the stream ended");
                    return Ok(SessionEnd::StreamEnded);
                }
            }
        }
    }

    /// Handles one delivery up to its acknowledgement.
    async fn handle(
        &mut self,
        client: &mut EventGatewayClient<Channel>,
        subscription_id: &str,
        delivery: Delivery,
    ) -> anyhow::Result<Outcome> {
        let event = delivery.event.clone().unwrap_or_default();
        // A CONSUMER span continuing the trace the gateway handed over.
        let span = tracing::info_span!(
            "welcome",
            otel.name = format!("process {}", delivery.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %delivery.topic,
            messaging.destination.partition.id = delivery.partition,
            messaging.kafka.offset = delivery.offset,
            messaging.message.id = %event.id,
            delivery.attempt = delivery.attempt,
            trace_id = tracing::field::Empty,
        );
        trace_context::continue_trace(&span, trace_context::from_attributes(&event.attributes));
        self.handle_in(client, subscription_id, delivery, event)
            .instrument(span)
            .await
    }

    async fn handle_in(
        &mut self,
        client: &mut EventGatewayClient<Channel>,
        subscription_id: &str,
        delivery: Delivery,
        event: Event,
    ) -> anyhow::Result<Outcome> {
        if self.store.contains(&event.id)? {
            tracing::info!("already emailed; skipping the redelivery");
            acknowledge(client, subscription_id, &delivery).await?;
            return Ok(Outcome::Done);
        }
        let user = match registration::parse(&event) {
            Ok(user) => user,
            Err(reason) => {
                self.dead_letter(client, &delivery, &event, &reason).await?;
                acknowledge(client, subscription_id, &delivery).await?;
                return Ok(Outcome::Done);
            }
        };
        let message = match self.templates.render(&self.from, &user) {
            Ok(message) => message,
            Err(error) => {
                self.dead_letter(
                    client,
                    &delivery,
                    &event,
                    &format!("cannot build the email: {error}"),
                )
                .await?;
                acknowledge(client, subscription_id, &delivery).await?;
                return Ok(Outcome::Done);
            }
        };
        let mut retries = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        loop {
            let send = tracing::info_span!(
                "smtp",
                otel.name = "smtp send",
                otel.kind = "client",
                email.to = %user.email,
            );
            match self.mailer.send(message.clone()).instrument(send).await {
                Ok(()) => {
                    self.metrics.sent.inc();
                    self.store.insert(&event.id)?;
                    tracing::info!(user_id = user.user_id, "welcome email sent");
                    acknowledge(client, subscription_id, &delivery).await?;
                    return Ok(Outcome::Done);
                }
                Err(SendError::Permanent(reason)) => {
                    self.dead_letter(client, &delivery, &event, &reason).await?;
                    acknowledge(client, subscription_id, &delivery).await?;
                    return Ok(Outcome::Done);
                }
                Err(SendError::Transient(reason)) => {
                    self.metrics.failed.inc();
                    let wait = retries.next_wait();
                    tracing::warn!(%reason, ?wait, "email not sent; retrying");
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        // Not acknowledged: the event is delivered again later.
                        _ = stop.wait_for(|stop| *stop) => return Ok(Outcome::Shutdown),
                    }
                }
            }
        }
    }

    /// Publishes an unusable event to `<topic>.dlq` with the reason.
    async fn dead_letter(
        &self,
        client: &mut EventGatewayClient<Channel>,
        delivery: &Delivery,
        event: &Event,
        reason: &str,
    ) -> anyhow::Result<()> {
        let topic = format!("{}.dlq", self.config.topic);
        let mut attributes: HashMap<String, String> = event.attributes.clone();
        attributes.insert("dlq_reason".into(), reason.to_owned());
        attributes.insert("dlq_topic".into(), delivery.topic.clone());
        attributes.insert("dlq_partition".into(), delivery.partition.to_string());
        attributes.insert("dlq_offset".into(), delivery.offset.to_string());
        let dead = Event {
            attributes,
            ..event.clone()
        };
        client
            .publish_event(traced(PublishEventRequest {
                topic: topic.clone(),
                key: delivery.key.clone(),
                event: Some(dead),
            }))
            .await?;
        self.metrics.dead_lettered.inc();
        tracing::warn!(%reason, dlq = topic, "event dead-lettered");
        Ok(())
    }
}

/// How handling one delivery ended.
enum Outcome {
    /// Acknowledged.
    Done,
    /// Shutdown came while waiting to retry; not acknowledged.
    Shutdown,
}

async fn acknowledge(
    client: &mut EventGatewayClient<Channel>,
    subscription_id: &str,
    delivery: &Delivery,
) -> anyhow::Result<()> {
    client
        .acknowledge(traced(AcknowledgeRequest {
            subscription_id: subscription_id.to_owned(),
            ack_ids: vec![delivery.ack_id.clone()],
        }))
        .await?;
    Ok(())
}

/// A request carrying the current span's trace context.
fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    trace_context::into_metadata(&tracing::Span::current().context(), request.metadata_mut());
    request
}

fn prost_duration(duration: std::time::Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(duration).ok()
}

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

use eventgateway::v1::{
    subscribe_response::Kind, AckMode, AcknowledgeRequest, Delivery, Event, PublishEventRequest,
    StartFrom, SubscribeRequest,
};
use eventgateway::{delivery_span, trace_context};
use eventgateway_runtime::shutdown::Shutdown;
use lettre::message::Mailbox;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::Error;
use crate::gateway::{Client, Gateway};
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
pub(crate) struct Notifier {
    config: Config,
    mailer: Mailer,
    templates: Templates,
    store: SentStore,
    from: Mailbox,
    /// The notifier's shutdown.
    shutdown: Shutdown,
    /// Waits between reconnects and SMTP retries.
    backoff: Backoff,
    /// Counters served on /metrics.
    metrics: Metrics,
    /// Where the gateway is, and how to reach it.
    gateway: Gateway,
}

impl Notifier {
    /// Opens the store, the mailer and the templates.
    pub(crate) fn new(
        config: Config,
        shutdown: Shutdown,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            mailer: Mailer::new(config.smtp_url.as_deref(), &config.outbox_dir)?,
            templates: Templates::load(config.templates_dir.as_deref())?,
            store: SentStore::open(&config.state_dir)?,
            from: config.mail_from.parse()?,
            backoff: Backoff::new(config.min_backoff, config.max_backoff),
            gateway: Gateway::new(&config, &shutdown)?,
            config,
            shutdown,
            metrics,
        })
    }

    /// Runs until shutdown, reconnecting to the gateway as needed.
    pub(crate) async fn run(mut self) {
        loop {
            match self.session().await {
                Ok(SessionEnd::Shutdown) => return,
                Ok(SessionEnd::StreamEnded) => {
                    tracing::warn!("the gateway ended the stream; reconnecting")
                }
                Err(error) => tracing::warn!(%error, "gateway session failed; reconnecting"),
            }
            let wait = self.backoff.next_wait();
            if self.pause(wait).await {
                return;
            }
        }
    }

    /// Waits `wait`; true when shutdown came first.
    async fn pause(&self, wait: std::time::Duration) -> bool {
        let mut stop = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(wait) => self.shutdown.is_started(),
            () = stop.started() => true,
        }
    }

    async fn session(&mut self) -> Result<SessionEnd, Error> {
        if self.shutdown.is_started() {
            return Ok(SessionEnd::Shutdown);
        }
        let mut client = self.gateway.connect().await?;
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
            other => return Err(Error::NotSubscribed(format!("{other:?}"))),
        };
        tracing::info!(
            topic = self.config.topic,
            group = self.config.group,
            subscription = subscription_id,
            "subscribed"
        );
        self.backoff.reset();
        let mut stop = self.shutdown.clone();
        loop {
            let message = tokio::select! {
                biased;
                () = stop.started() => return Ok(SessionEnd::Shutdown),
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

    /// Handles one delivery up to its acknowledgement, in a CONSUMER span
    /// that continues the trace the gateway handed over.
    async fn handle(
        &mut self,
        client: &mut Client,
        subscription_id: &str,
        delivery: Delivery,
    ) -> Result<Outcome, Error> {
        let event = delivery.event.clone().unwrap_or_default();
        let span = delivery_span!(
            target: module_path!(),
            "welcome",
            &delivery,
            &self.config.group
        );
        trace_context::continue_trace(&span, trace_context::from_attributes(&event.attributes));
        let delivered = Delivered {
            client,
            subscription_id,
            delivery: &delivery,
            event: &event,
        };
        self.welcome(delivered).instrument(span).await
    }

    /// Sends the welcome email of one delivery (or skips or rejects it),
    /// then acknowledges it; retries transient failures until shutdown.
    async fn welcome(&mut self, mut delivered: Delivered<'_>) -> Result<Outcome, Error> {
        if self.store.contains(&delivered.event.id)? {
            tracing::info!("already emailed; skipping the redelivery");
            return delivered.acknowledge().await;
        }
        let user = match registration::parse(delivered.event) {
            Ok(user) => user,
            Err(reason) => return self.reject(delivered, &reason).await,
        };
        let message = match self.templates.render(&self.from, &user) {
            Ok(message) => message,
            Err(error) => {
                let reason = format!("cannot build the email: {error}");
                return self.reject(delivered, &reason).await;
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
                    self.store.insert(&delivered.event.id)?;
                    tracing::info!(user_id = user.user_id, "welcome email sent");
                    return delivered.acknowledge().await;
                }
                Err(SendError::Permanent(reason)) => return self.reject(delivered, &reason).await,
                Err(SendError::Transient(reason)) => {
                    self.metrics.failed.inc();
                    let wait = retries.next_wait();
                    tracing::warn!(%reason, ?wait, "email not sent; retrying");
                    // Not acknowledged: the event is delivered again later.
                    if self.pause(wait).await {
                        return Ok(Outcome::Shutdown);
                    }
                }
            }
        }
    }

    /// The one way an event that cannot be emailed leaves: published to the
    /// dead-letter topic with `reason`, then acknowledged.
    async fn reject(&self, mut delivered: Delivered<'_>, reason: &str) -> Result<Outcome, Error> {
        self.dead_letter(
            delivered.client,
            delivered.delivery,
            delivered.event,
            reason,
        )
        .await?;
        delivered.acknowledge().await
    }

    /// Publishes an unusable event to `<topic>.dlq` with the reason.
    async fn dead_letter(
        &self,
        client: &mut Client,
        delivery: &Delivery,
        event: &Event,
        reason: &str,
    ) -> Result<(), Error> {
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

/// One delivery being handled, and where it is acknowledged.
struct Delivered<'a> {
    /// The client of the gateway that serves the subscription.
    client: &'a mut Client,
    /// The subscription it came on.
    subscription_id: &'a str,
    /// The delivery.
    delivery: &'a Delivery,
    /// Its event.
    event: &'a Event,
}

impl Delivered<'_> {
    /// Acknowledges the delivery: its handling is done.
    async fn acknowledge(&mut self) -> Result<Outcome, Error> {
        self.client
            .acknowledge(traced(AcknowledgeRequest {
                subscription_id: self.subscription_id.to_owned(),
                ack_ids: vec![self.delivery.ack_id.clone()],
            }))
            .await?;
        Ok(Outcome::Done)
    }
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

//! The notifier's loop: subscribe through the gateway over StreamingSubscribe
//! (MANUAL acks on the stream, order by key on the user id), and handle
//! several deliveries at once, each in a task of its own: send one welcome
//! email, remember it, then ack it on the stream.
//!
//! - Already emailed (a redelivery after a crash): acked, skipped.
//! - Unusable event (no payload, no user_id, no usable email) or a permanent
//!   SMTP failure (5xx): dead-lettered with the reason; the gateway writes
//!   it to `<topic>.dlq`.
//! - Transient SMTP failure (unreachable, 4xx): nacked; the gateway delivers
//!   it again after the subscription's backoff (no event is held here).
//! - The gateway gone or the stream ended: reconnect with backoff; the group
//!   resumes from what was settled.
//! - Shutdown: the emails in progress are finished and settled first.

use std::sync::Arc;
use std::time::Duration;

use eventgateway::v1::streaming_subscribe_request::Kind as Inbound;
use eventgateway::v1::streaming_subscribe_response::Kind;
use eventgateway::v1::{
    AckMode, DeadLetter, DeadLetterPolicy, Delivery, Nack, RetryPolicy, SettleOutcome,
    SettleRequest, SettleResponse, StartFrom, StreamingSubscribeRequest, SubscribeRequest, Verb,
};
use eventgateway::{bounds, delivery_span, trace_context};
use eventgateway_runtime::shutdown::Shutdown;
use lettre::message::Mailbox;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::error::Error;
use crate::gateway::Gateway;
use crate::mailer::{Mailer, SendError};
use crate::metrics::Metrics;
use crate::registration;
use crate::store::SentStore;
use crate::templates::Templates;

/// How long, at shutdown, the answers to the last settles are waited for.
const LAST_ANSWERS: Duration = Duration::from_secs(5);

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
    /// What handles one delivery; shared by the tasks.
    handler: Arc<Handler>,
    /// The notifier's shutdown.
    shutdown: Shutdown,
    /// Waits between reconnects.
    backoff: Backoff,
    /// Counters served on /metrics.
    metrics: Metrics,
    /// Where the gateway is, and how to reach it.
    gateway: Gateway,
}

/// Handles one delivery: what it needs, shared by the tasks.
struct Handler {
    mailer: Mailer,
    templates: Templates,
    store: SentStore,
    from: Mailbox,
    metrics: Metrics,
    /// The consumer group, for the delivery spans.
    group: String,
}

/// What became of one delivery: the verb that settles it (or gives it
/// back).
#[derive(Debug)]
enum Verdict {
    /// Emailed (or emailed before): ack.
    Done,
    /// Not now (SMTP unreachable or 4xx): nack, to come again after the
    /// subscription's backoff.
    Later,
    /// Never (unusable event, 5xx): dead-letter with this reason.
    Never(String),
}

impl Notifier {
    /// Opens the store, the mailer and the templates.
    pub(crate) fn new(
        config: Config,
        shutdown: Shutdown,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let handler = Handler {
            mailer: Mailer::new(config.smtp_url.as_deref(), &config.outbox_dir)?,
            templates: Templates::load(config.templates_dir.as_deref())?,
            store: SentStore::open(&config.state_dir)?,
            from: config.mail_from.parse()?,
            metrics: metrics.clone(),
            group: config.group.clone(),
        };
        Ok(Self {
            handler: Arc::new(handler),
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
            let mut stop = self.shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.started() => return,
            }
        }
    }

    /// The subscription: MANUAL, order by key, the notifier's backoff as
    /// its retry policy, dead letters to `<topic>.dlq`.
    fn subscription(&self) -> SubscribeRequest {
        let config = &self.config;
        SubscribeRequest {
            topics: vec![config.topic.clone()],
            group: config.group.clone(),
            start_from: StartFrom::Earliest as i32,
            ack_mode: AckMode::Manual as i32,
            ack_timeout: prost_duration(config.ack_timeout),
            max_unacked: config.concurrency,
            ordered_by_key: true,
            retry_policy: Some(RetryPolicy {
                minimum_backoff: prost_duration(config.min_backoff),
                maximum_backoff: prost_duration(config.max_backoff),
            }),
            dead_letter_policy: Some(DeadLetterPolicy {
                topic: String::new(),
                max_delivery_attempts: 0,
            }),
            ..SubscribeRequest::default()
        }
    }

    async fn session(&mut self) -> Result<SessionEnd, Error> {
        if self.shutdown.is_started() {
            return Ok(SessionEnd::Shutdown);
        }
        let mut client = self.gateway.connect().await?;
        let (requests, outbound) = mpsc::channel(self.config.concurrency as usize + 1);
        let subscribe = StreamingSubscribeRequest {
            kind: Some(Inbound::Subscribe(self.subscription())),
        };
        // The channel is new and has room.
        let _ = requests.try_send(subscribe);
        let mut stream = client
            .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await?
            .into_inner();
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
        let mut working: JoinSet<(String, Verdict)> = JoinSet::new();
        // Settles sent and not answered yet.
        let mut unanswered = 0usize;
        let mut stopping = false;
        loop {
            if stopping && working.is_empty() {
                self.last_answers(&mut stream, unanswered).await;
                return Ok(SessionEnd::Shutdown);
            }
            tokio::select! {
                biased;
                () = stop.started(), if !stopping => stopping = true,
                Some(done) = working.join_next() => {
                    let (ack_id, verdict) = done.map_err(|error| Error::Task(error.to_string()))?;
                    if requests.send(settle(ack_id, verdict)).await.is_err() {
                        return Ok(SessionEnd::StreamEnded);
                    }
                    unanswered += 1;
                }
                message = stream.message() => match message {
                    Ok(Some(message)) => match message.kind {
                        Some(Kind::Delivery(delivery)) if !stopping => {
                            let handler = self.handler.clone();
                            working.spawn(async move {
                                let ack_id = delivery.ack_id.clone();
                                (ack_id, handler.handle(delivery).await)
                            });
                        }
                        Some(Kind::Settled(answer)) => {
                            unanswered = unanswered.saturating_sub(1);
                            self.answered(&answer);
                        }
                        _ => {}
                    },
                    Ok(None) => return Ok(SessionEnd::StreamEnded),
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), message = status.message(), "the stream ended");
                        // Emails in progress finish; their deliveries come
                        // again to the group's next member and are skipped.
                        while working.join_next().await.is_some() {}
                        return Ok(SessionEnd::StreamEnded);
                    }
                },
            }
        }
    }

    /// Reads the answers to the last settles, so that they reach the
    /// gateway before the stream goes (at most [`LAST_ANSWERS`]).
    async fn last_answers(
        &self,
        stream: &mut tonic::Streaming<eventgateway::v1::StreamingSubscribeResponse>,
        mut unanswered: usize,
    ) {
        let deadline = tokio::time::Instant::now() + LAST_ANSWERS;
        while unanswered > 0 {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Ok(Ok(Some(message))) => {
                    if let Some(Kind::Settled(answer)) = message.kind {
                        unanswered -= 1;
                        self.answered(&answer);
                    }
                }
                _ => return,
            }
        }
    }

    /// Counts dead letters the gateway took, and logs settles that did not
    /// count (the delivery was superseded or its partition moved: it comes
    /// again, and is skipped if it was emailed).
    fn answered(&self, answer: &SettleResponse) {
        for result in &answer.results {
            let accepted = result.outcome == SettleOutcome::Accepted as i32;
            if accepted && result.verb == Verb::DeadLetter as i32 {
                self.metrics.dead_lettered.inc();
            }
            if !accepted {
                tracing::info!(
                    ack_id = result.ack_id,
                    detail = result.detail,
                    "a settle did not count"
                );
            }
        }
    }
}

impl Handler {
    /// Handles one delivery, in a CONSUMER span that continues the trace
    /// the gateway handed over.
    async fn handle(&self, delivery: Delivery) -> Verdict {
        let event = delivery.event.clone().unwrap_or_default();
        let span = delivery_span!(target: module_path!(), "welcome", &delivery, &self.group);
        trace_context::continue_trace(&span, trace_context::from_attributes(&event.attributes));
        let verdict = self.welcome(&event).instrument(span.clone()).await;
        span.in_scope(|| match &verdict {
            Ok(Verdict::Never(reason)) => tracing::warn!(%reason, "event dead-lettered"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "email not handled; it comes again"),
        });
        verdict.unwrap_or(Verdict::Later)
    }

    /// Sends the welcome email of one event (or skips or rejects it).
    async fn welcome(&self, event: &eventgateway::v1::Event) -> Result<Verdict, Error> {
        if self.store.contains(&event.id)? {
            tracing::info!("already emailed; skipping the redelivery");
            return Ok(Verdict::Done);
        }
        let user = match registration::parse(event) {
            Ok(user) => user,
            Err(reason) => return Ok(Verdict::Never(reason)),
        };
        let message = match self.templates.render(&self.from, &user) {
            Ok(message) => message,
            Err(error) => return Ok(Verdict::Never(format!("cannot build the email: {error}"))),
        };
        let send = tracing::info_span!(
            "smtp",
            otel.name = "smtp send",
            otel.kind = "client",
            email.to = %user.email,
        );
        match self.mailer.send(message).instrument(send).await {
            Ok(()) => {
                self.metrics.sent.inc();
                self.store.insert(&event.id)?;
                tracing::info!(user_id = user.user_id, "welcome email sent");
                Ok(Verdict::Done)
            }
            Err(SendError::Permanent(reason)) => Ok(Verdict::Never(reason)),
            Err(SendError::Transient(reason)) => {
                self.metrics.failed.inc();
                tracing::warn!(%reason, "email not sent; the gateway delivers it again after a backoff");
                Ok(Verdict::Later)
            }
        }
    }
}

/// The settle message of one delivery's verdict.
fn settle(ack_id: String, verdict: Verdict) -> StreamingSubscribeRequest {
    let mut request = SettleRequest::default();
    match verdict {
        Verdict::Done => request.acks.push(ack_id),
        Verdict::Later => request.nacks.push(Nack {
            ack_id,
            delay: None,
        }),
        Verdict::Never(reason) => request.dead_letters.push(DeadLetter {
            ack_id,
            reason: bounds::truncated(reason, bounds::MAX_REASON_LEN),
        }),
    }
    StreamingSubscribeRequest {
        kind: Some(Inbound::Settle(request)),
    }
}

fn prost_duration(duration: Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(duration).ok()
}

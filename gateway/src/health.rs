//! gRPC health (`grpc.health.v1.Health`) that follows Kafka: NOT_SERVING
//! until Kafka first answers, NOT_SERVING once it stops answering (several
//! probes in a row: one slow answer under load is not an outage), and
//! SERVING again as soon as it is back; NOT_SERVING at once when the producer
//! failed for good, until a probe through the producer that replaced it is
//! answered. [`Readiness`] is the same answer
//! for new calls: no new work while Kafka is gone or the gateway stops.
//! Calls already under way are left to Kafka's own answer and their
//! deadline.
//!
//! A probe asks for the metadata of one topic whose name is illegal: every
//! broker answers it (an error for that topic), none creates it, and its
//! cost does not grow with the cluster.

use std::time::Duration;

use eventgateway_runtime::shutdown::Shutdown;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::error::Error;
use crate::kafka::producer::Producer;
use crate::kafka::{blocking, Admin};
use crate::metrics::Metrics;

/// The service names health is reported for: the whole server ("") and the
/// API service.
const SERVICES: [&str; 2] = ["", eventgateway::SERVICE_NAME];
/// Probes that must fail in a row before health turns NOT_SERVING.
const FAILURES_TO_NOT_SERVING: u32 = 3;
/// The topic a probe asks about.
const PROBE_TOPIC: &str = "__event-gateway health probe";

/// Sets every reported service to `status`.
pub(crate) async fn report(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Whether the gateway takes new work; cloning shares it.
#[derive(Clone)]
pub(crate) struct Readiness {
    /// Whether Kafka answered the last probe.
    kafka_up: watch::Receiver<bool>,
    /// The gateway's shutdown.
    shutdown: Shutdown,
}

impl Readiness {
    /// Ready while `kafka_up` says so and `shutdown` has not begun.
    pub(crate) fn new(kafka_up: watch::Receiver<bool>, shutdown: Shutdown) -> Self {
        Self { kafka_up, shutdown }
    }

    /// Ok when a new call may start; else why not (UNAVAILABLE).
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.shutdown.is_started() {
            return Err(Error::ShuttingDown);
        }
        if !*self.kafka_up.borrow() {
            return Err(Error::KafkaUnavailable(
                "the gateway cannot reach Kafka right now".into(),
            ));
        }
        Ok(())
    }
}

/// What probes Kafka and where its answers go.
pub(crate) struct Prober {
    /// The client that asks.
    pub(crate) client: Admin,
    /// The producer, whose failing for good counts as an outage.
    pub(crate) producer: Producer,
    /// The health statuses.
    pub(crate) reporter: HealthReporter,
    /// Whether Kafka answers, for [`Readiness`].
    pub(crate) kafka_up: watch::Sender<bool>,
    /// How often it asks (`--health-interval`).
    pub(crate) interval: Duration,
    /// Where failed probes are counted.
    pub(crate) metrics: Metrics,
}

/// Probes Kafka every interval until shutdown, keeping `kafka_up` and the
/// health statuses in step with the answers.
pub(crate) async fn watch_kafka(prober: Prober, mut shutdown: Shutdown) {
    let Prober {
        client,
        producer,
        reporter,
        kafka_up,
        interval,
        metrics,
    } = prober;
    let probe_timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut last: Option<bool> = None;
    let mut failures = 0;
    let mut fatal_errors = producer.failures();
    loop {
        let fatal = producer.take_failure();
        let answer = match &fatal {
            Some(reason) => Err(Error::KafkaUnavailable(format!(
                "the Kafka producer failed for good ({}); a new one replaces it",
                crate::text::clip(reason)
            ))),
            None => {
                let probe = client.clone();
                blocking(move || {
                    probe
                        .inner()
                        .fetch_metadata(Some(PROBE_TOPIC), probe_timeout)
                        .map(drop)
                        .map_err(|error| Error::from_kafka(&error, None))
                })
                .await
            }
        };
        if shutdown.is_started() {
            return;
        }
        match &answer {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                metrics.kafka().health_probe_failed();
                tracing::debug!(%error, failures, "a Kafka health probe failed");
            }
        }
        // Down only after several failures in a row (or before Kafka ever
        // answered, or at once for a producer that failed for good); up
        // again at the first answer.
        let up = answer.is_ok()
            || (fatal.is_none() && last == Some(true) && failures < FAILURES_TO_NOT_SERVING);
        if last != Some(up) {
            match &answer {
                Ok(()) => tracing::info!("Kafka answers: serving"),
                Err(error) => tracing::warn!(%error, "Kafka cannot be used: not serving"),
            }
            kafka_up.send_replace(up);
            let status = if up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            report(&reporter, status).await;
            last = Some(up);
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            // A producer that failed for good is reported at once.
            _ = fatal_errors.changed() => {}
            () = shutdown.started() => return,
        }
    }
}

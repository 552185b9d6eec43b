//! gRPC health (`grpc.health.v1.Health`) that follows Kafka: NOT_SERVING
//! until Kafka first answers, NOT_SERVING whenever it stops answering, and
//! SERVING again once it is back. [`Readiness`] is the same answer for the
//! calls themselves: no new work while Kafka is gone or the gateway stops.

use std::time::Duration;

use eventgateway_runtime::shutdown::Shutdown;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::error::Error;
use crate::kafka::blocking;

/// The service names health is reported for: the whole server ("") and the
/// API service.
const SERVICES: [&str; 2] = ["", eventgateway::SERVICE_NAME];

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

    /// Returns once a probe finds Kafka gone (at once if it is gone now);
    /// never once the probes stopped (at shutdown), so that what is in
    /// flight is still answered by Kafka itself.
    pub(crate) async fn kafka_lost(&self) {
        let mut kafka_up = self.kafka_up.clone();
        if kafka_up.wait_for(|up| !up).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Probes Kafka through `client` every `interval` until shutdown, keeping
/// `kafka_up` and the health statuses in step with the answers.
pub(crate) async fn watch_kafka(
    client: FutureProducer,
    reporter: HealthReporter,
    kafka_up: watch::Sender<bool>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    let probe_timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut last: Option<bool> = None;
    loop {
        let probe = client.clone();
        let answer = blocking(move || {
            probe
                .client()
                .fetch_metadata(None, probe_timeout)
                .map(drop)
                .map_err(|error| Error::from_kafka(&error, None))
        })
        .await;
        if shutdown.is_started() {
            return;
        }
        let up = answer.is_ok();
        if last != Some(up) {
            match &answer {
                Ok(()) => tracing::info!("Kafka answers: serving"),
                Err(error) => tracing::warn!(%error, "Kafka does not answer: not serving"),
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
            () = shutdown.started() => return,
        }
    }
}

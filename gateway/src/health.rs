//! gRPC health (`grpc.health.v1.Health`) that follows Kafka: NOT_SERVING
//! until Kafka first answers, NOT_SERVING whenever it stops answering, and
//! SERVING again once it is back.

use std::time::Duration;

use rdkafka::producer::Producer;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::kafka::{blocking, producer::Publisher};
use crate::shutdown::Shutdown;

/// The service names health is reported for: the whole server ("") and the
/// API service.
pub const SERVICES: [&str; 2] = ["", eventgateway::SERVICE_NAME];

/// Sets every reported service to `status`.
pub async fn report(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Probes Kafka every `interval` until shutdown, keeping `kafka_up` and the
/// health statuses in step with the answers.
pub async fn watch_kafka(
    publisher: Publisher,
    reporter: HealthReporter,
    kafka_up: watch::Sender<bool>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    let probe_timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut last: Option<bool> = None;
    loop {
        let producer = publisher.producer().clone();
        let answer = blocking(move || {
            producer
                .client()
                .fetch_metadata(None, probe_timeout)
                .map(drop)
                .map_err(|error| crate::error::Error::from_kafka(&error, ""))
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

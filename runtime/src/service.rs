//! The frame both binaries run in: logs and trace export set up, the
//! configuration's check answered (exit code 2 with its message), the
//! service run until it returns, the last spans flushed.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::telemetry;

/// Runs `service` as `name` (the default OpenTelemetry service name) once
/// `checked`, the configuration's check, passed; the exit code says how it
/// ended: 0, 1 (it failed, logged) or 2 (invalid configuration).
pub async fn run<E: Display>(
    name: &str,
    checked: Result<(), String>,
    service: impl Future<Output = Result<(), E>>,
) -> ExitCode {
    let telemetry = telemetry::init(name);
    if let Err(message) = checked {
        tracing::error!("invalid configuration: {message}");
        return ExitCode::from(2);
    }
    let code = match service.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{name} failed: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

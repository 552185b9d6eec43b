//! The frame both binaries run in: logs and trace export set up, the
//! configuration's check answered (exit code 2 with its message), the
//! service run until it returns, the last spans flushed.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use crate::telemetry;

/// Runs `service` as `name` (the default OpenTelemetry service name) with
/// what `checked`, the configuration's check, gave, once it passed; the
/// exit code says how it ended: 0, 1 (it failed, logged) or 2 (invalid
/// configuration).
pub async fn run<C, E: Display, F: Future<Output = Result<(), E>>>(
    name: &str,
    checked: Result<C, String>,
    service: impl FnOnce(C) -> F,
) -> ExitCode {
    let telemetry = telemetry::init(name);
    let checked = match checked {
        Ok(checked) => checked,
        Err(message) => {
            tracing::error!("invalid configuration: {message}");
            return ExitCode::from(2);
        }
    };
    let code = match service(checked).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{name} failed: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

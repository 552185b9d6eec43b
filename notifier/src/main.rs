//! The `notifier` binary: parse flags, start logging, run until SIGTERM or
//! Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use notifier::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let telemetry = eventgateway::telemetry::init("notifier");
    if let Err(message) = config.validate() {
        tracing::error!("invalid configuration: {message}");
        return ExitCode::from(2);
    }
    let code = match notifier::run(config, eventgateway::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("notifier failed: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

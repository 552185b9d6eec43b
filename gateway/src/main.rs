//! The `gateway` binary: parse flags, start logging, serve until SIGTERM or
//! Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use gateway::{shutdown, telemetry, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let telemetry = telemetry::init("gateway");
    if let Err(message) = config.validate() {
        tracing::error!("invalid configuration: {message}");
        return ExitCode::from(2);
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, addr = %config.listen, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let code = match gateway::run(config, listener, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("gateway failed: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

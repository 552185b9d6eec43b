//! The `gateway` command: parse flags, start logging, serve until SIGTERM or
//! Ctrl-C. Also what `gateway-bench` runs in its gateway process.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::{shutdown, telemetry, Config};

/// Longest the process waits at exit for blocking Kafka calls still running
/// (a consumer close against an unreachable coordinator can block for good).
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Runs the gateway with command-line `args` (the first is the program
/// name) and the environment; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config::parse_from(args);
    let code = runtime.block_on(serve(config));
    runtime.shutdown_timeout(EXIT_WAIT);
    code
}

async fn serve(config: Config) -> ExitCode {
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
    let code = match crate::run(config, listener, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("gateway failed: {error:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

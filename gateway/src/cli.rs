//! The `gateway` command: parse flags, start logging, serve until SIGTERM or
//! Ctrl-C. Also what `gateway-bench` runs in its gateway process.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use eventgateway_runtime::{service, shutdown};

use crate::config::{Config, Settings};

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
    let checked = config.validate();
    let code = runtime.block_on(service::run("gateway", checked, |settings| {
        serve(config, settings)
    }));
    runtime.shutdown_timeout(EXIT_WAIT);
    code
}

/// Listens on `--listen` and serves until SIGTERM or Ctrl-C.
async fn serve(config: Config, settings: Settings) -> anyhow::Result<()> {
    crate::edge::raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(config.edge.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.edge.listen))?;
    crate::server::run((config, settings), listener, shutdown::signal()).await
}

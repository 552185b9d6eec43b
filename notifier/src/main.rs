//! The `notifier` binary: parse flags, start logging, run until SIGTERM or
//! Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use eventgateway_runtime::{service, shutdown};
use notifier::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let checked = config.validate();
    service::run("notifier", checked, |()| {
        notifier::run(config, shutdown::signal())
    })
    .await
}

//! Logging for both binaries: structured lines on stderr, filtered by
//! `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the log subscriber; `RUST_LOG` overrides the default `info`.
/// Colours only on a terminal (and never with `NO_COLOR`), so that log
/// collectors get plain lines.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

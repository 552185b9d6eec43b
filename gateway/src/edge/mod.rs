//! The gateway's edge: what a client's connection and calls go through
//! before the EventGateway service sees them, so that no one client can
//! stall the others.
//!
//! - `listener`: accepts connections up to `--max-connections` (one more is
//!   closed at once, and logged), turns on TCP keepalive, and raises the
//!   open-files limit.
//! - `conn`: a connection that is closed when it starts no call within
//!   `--handshake-timeout`, or has none in progress for `--idle-timeout`.
//! - `layers`: the calls in progress on each connection (for that idle
//!   timeout), a bound on how long a request may take to arrive, and bad
//!   input answered as such when the gRPC library cannot decode it.
//!
//! - `authenticate`: each call's credentials (client certificate, bearer
//!   token) checked before any service sees it.
//! - `tls`: TLS on the listener, certificates re-read when they change,
//!   and client certificates when a client CA is set (mTLS).
//! - `web`: gRPC-Web calls from browsers turned into gRPC calls, and CORS
//!   for the origins an operator allows.
//! - `viewer`: the live event viewer page, served at `/` when turned on.
//! - `plain_http`: answers to plain HTTP callers: gRPC statuses as HTTP
//!   statuses with JSON bodies.
//! - `linger`: what is left of an HTTP/2 request's body after a plain HTTP
//!   route answered it early is read (within bounds), so that the client
//!   gets the answer instead of a stream reset.
//!
//! HTTP/2 keepalive pings, the per-connection stream limit and the call
//! timeout are set on the server itself (`server`).

mod authenticate;
mod conn;
mod layers;
mod linger;
mod listener;
mod per_address;
pub(crate) mod plain_http;
mod tls;
mod viewer;
mod web;

pub(crate) use authenticate::Authenticate;
pub(crate) use conn::IdleLimits;
pub(crate) use layers::{Arrival, BadInput, TrackCalls};
pub(crate) use linger::linger;
pub(crate) use listener::{incoming, raise_open_files_limit, Accepting};
pub(crate) use per_address::{overrides, AddressLimits, PerAddress};
pub(crate) use tls::{
    handshakes, metrics_server_config, plain, server_config, TlsFiles, Transport,
};
pub(crate) use viewer::ServeViewer;
pub(crate) use web::cors;

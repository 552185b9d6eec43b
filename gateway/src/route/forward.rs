//! The one hop: a unary Acknowledge or Settle for a subscription another
//! replica holds goes to that replica's internal listener, with the
//! replicas' secret and the caller's principal, and its answer comes back
//! as it is. An owner that does not answer within `--forward-timeout`, or
//! cannot be reached, is gone: its subscription ended with it, and its
//! events come again through the group.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway::v1::{AcknowledgeRequest, AcknowledgeResponse, SettleRequest, SettleResponse};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use super::{Owner, BASE64, PRINCIPAL_HEADER, SECRET_HEADER};
use crate::text::clip;

/// The most replicas a replica keeps a connection to; past it, the
/// connections start over (a route is signed, so only real replicas'
/// addresses get here).
const MAX_CHANNELS: usize = 256;

/// With TLS on, what a replica proves itself with to the others, and the
/// CA their certificates chain to.
#[derive(Debug, Clone)]
pub(crate) struct MtlsFiles {
    /// The replica's certificate chain (PEM): `--tls-cert`.
    pub(crate) cert: PathBuf,
    /// Its key (PEM): `--tls-key`.
    pub(crate) key: PathBuf,
    /// The CA (PEM) every replica's certificate chains to: `--internal-ca`.
    pub(crate) ca: PathBuf,
}

/// Connections to the other replicas, made as calls need them.
pub(super) struct Forwarder {
    timeout: Duration,
    tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Forwarder {
    pub(super) fn new(timeout: Duration, mtls: Option<MtlsFiles>) -> Result<Self, String> {
        let tls = match mtls {
            Some(files) => {
                let read = |path: &PathBuf, flag: &str| {
                    std::fs::read(path)
                        .map_err(|error| format!("{flag} {}: {error}", path.display()))
                };
                let identity = Identity::from_pem(
                    read(&files.cert, "--tls-cert")?,
                    read(&files.key, "--tls-key")?,
                );
                Some(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(read(&files.ca, "--internal-ca")?))
                        .identity(identity),
                )
            }
            None => None,
        };
        Ok(Self {
            timeout,
            tls,
            channels: Mutex::default(),
        })
    }

    /// The connection to the replica at `address` (made lazily: the
    /// first call connects).
    fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        if channels.len() >= MAX_CHANNELS {
            channels.clear();
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|error| format!("its address {} is not usable: {error}", clip(address)))?
            .connect_timeout(self.timeout);
        if let Some(tls) = &self.tls {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(host))
                .map_err(|error| format!("TLS to {}: {error}", clip(address)))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// What became of a forwarded call.
#[derive(Debug)]
pub(crate) enum Forwarded<T> {
    /// The owner answered.
    Answered(T),
    /// The owner refused the call: its status, as it sent it.
    Refused(Status),
    /// The owner is gone (why, in words).
    Gone(String),
}

/// Forwards calls to their owners: see the module.
pub(crate) struct Forward<'a> {
    pub(super) forwarder: &'a Forwarder,
    pub(super) secret: &'a str,
}

impl Forward<'_> {
    /// Settle `request` at `owner`, for `principal`.
    pub(crate) async fn settle(
        &self,
        owner: &Owner,
        request: SettleRequest,
        principal: Option<&str>,
    ) -> Forwarded<SettleResponse> {
        self.call(
            owner,
            request,
            principal,
            |mut client, request| async move { client.settle(request).await },
        )
        .await
    }

    /// Acknowledge `request` at `owner`, for `principal`.
    pub(crate) async fn acknowledge(
        &self,
        owner: &Owner,
        request: AcknowledgeRequest,
        principal: Option<&str>,
    ) -> Forwarded<AcknowledgeResponse> {
        self.call(
            owner,
            request,
            principal,
            |mut client, request| async move { client.acknowledge(request).await },
        )
        .await
    }

    async fn call<Q, A, F, R>(
        &self,
        owner: &Owner,
        request: Q,
        principal: Option<&str>,
        call: F,
    ) -> Forwarded<A>
    where
        F: FnOnce(EventGatewayClient<Channel>, tonic::Request<Q>) -> R,
        R: Future<Output = Result<tonic::Response<A>, Status>>,
    {
        let timeout = self.forwarder.timeout;
        let channel = match self.forwarder.channel(&owner.address) {
            Ok(channel) => channel,
            Err(why) => return Forwarded::Gone(why),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout);
        let metadata = request.metadata_mut();
        if let Ok(secret) = MetadataValue::try_from(self.secret) {
            metadata.insert(SECRET_HEADER, secret);
        }
        if let Some(principal) = principal {
            if let Ok(value) = MetadataValue::try_from(BASE64.encode(principal)) {
                metadata.insert(PRINCIPAL_HEADER, value);
            }
        }
        let answer = tokio::time::timeout(timeout, call(EventGatewayClient::new(channel), request));
        let late = || Forwarded::Gone(format!("no answer within --forward-timeout ({timeout:?})"));
        match answer.await {
            Err(_) => late(),
            Ok(Ok(response)) => Forwarded::Answered(response.into_inner()),
            Ok(Err(status)) => match status.code() {
                Code::Unavailable => Forwarded::Gone(clip(status.message()).to_string()),
                Code::DeadlineExceeded | Code::Cancelled => late(),
                // The owner's internal listener refused this replica's
                // credentials: the operator's to fix, not the caller's.
                Code::Unauthenticated => {
                    tracing::error!(
                        owner = %clip(&owner.address),
                        message = %clip(status.message()),
                        "a replica refused a forwarded call: do the replicas share --route-key-file (and, with TLS, --internal-ca)?"
                    );
                    Forwarded::Refused(Status::unavailable(
                        "the replica that holds this subscription refused this replica's credentials (a configuration fault); retry with backoff",
                    ))
                }
                _ => Forwarded::Refused(status),
            },
        }
    }
}

//! How the notifier reaches the gateway: over plaintext (`http://`) or TLS
//! (`https://`: the gateway's certificate checked against --gateway-ca, or
//! the Mozilla roots; a client certificate for mTLS), with a bearer token
//! from --gateway-token-file on every call. The token file is re-read when
//! it changes, so a token can be renewed in place; certificate files are
//! read at each connect.

use std::path::{Path, PathBuf};

use eventgateway::v1::event_gateway_client::EventGatewayClient;
use eventgateway_runtime::reload::{self, Reloaded};
use eventgateway_runtime::shutdown::Shutdown;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Config;
use crate::error::Error;

/// A client of the gateway whose calls carry the bearer token.
pub(crate) type Client = EventGatewayClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to each call, when a token file is
/// configured.
#[derive(Clone)]
pub(crate) struct Bearer(Option<Reloaded<MetadataValue<tonic::metadata::Ascii>>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = (*token.current()).clone();
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// The `authorization` value of a token file's bytes.
fn bearer_value(files: &[Vec<u8>]) -> Result<MetadataValue<tonic::metadata::Ascii>, String> {
    let token = std::str::from_utf8(&files[0])
        .map_err(|_| "the token file is not text".to_owned())?
        .trim();
    if token.is_empty() {
        return Err("the token file is empty".into());
    }
    // The error never repeats the token.
    format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token file holds characters a header cannot carry".to_owned())
}

/// Where and how the gateway is reached.
pub(crate) struct Gateway {
    url: String,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    bearer: Bearer,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    reload::read_file(path).map_err(Error::Settings)
}

impl Gateway {
    /// The gateway of `config`; the token file (read now, then watched
    /// until `shutdown`) must hold a token.
    pub(crate) fn new(config: &Config, shutdown: &Shutdown) -> Result<Self, Error> {
        let bearer = match &config.gateway_token_file {
            Some(path) => {
                let watch = reload::Watch {
                    what: "gateway token file",
                    paths: vec![path.clone()],
                    interval: config.reload_interval,
                    shutdown,
                };
                let token = reload::watch(watch, bearer_value, || {})
                    .map_err(|error| Error::Settings(format!("--gateway-token-file: {error}")))?;
                Bearer(Some(token))
            }
            None => Bearer(None),
        };
        Ok(Self {
            url: config.gateway_url.clone(),
            ca: config.gateway_ca.clone(),
            identity: config.gateway_cert.clone().zip(config.gateway_key.clone()),
            bearer,
        })
    }

    /// A new connection, and a client over it.
    pub(crate) async fn connect(&self) -> Result<Client, Error> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())?;
        if self.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &self.ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
                None => tls.with_webpki_roots(),
            };
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect().await?;
        Ok(EventGatewayClient::with_interceptor(
            channel,
            self.bearer.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_becomes_a_bearer_value_and_errors_never_show_it() {
        let value = bearer_value(&[b"  abc.def.ghi\n".to_vec()]).unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer abc.def.ghi");
        assert!(bearer_value(&[b"\n".to_vec()]).is_err());
        let error = bearer_value(&[b"secret\x01token".to_vec()]).unwrap_err();
        assert!(!error.contains("secret"), "{error}");
    }
}

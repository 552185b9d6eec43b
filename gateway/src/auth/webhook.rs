//! Webhook routes of the policy: topics that take plain bodies (what most
//! webhook senders POST: JSON, no CloudEvents headers) over HTTP, each
//! event's type and source set by the route, its id from a named request
//! header (or a new UUIDv7), and, when the route has signing secrets, the
//! body's Standard Webhooks signature checked before it is stored.
//!
//! ```toml
//! [[webhook]]
//! topic = "payments"
//! type = "com.example.payment"
//! source = "https://payments.example"
//! id_header = "webhook-id"                 # optional
//! signing_secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]   # optional, one or two
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::HeaderMap;
use ring::hmac;
use serde::Deserialize;
use toml::Spanned;

use super::place::at;

/// How far a signed webhook's timestamp may be from now (Standard
/// Webhooks' tolerance).
const TOLERANCE: Duration = Duration::from_secs(300);
/// The most signatures one request's header may carry.
const MAX_SIGNATURES: usize = 10;

/// One `[[webhook]]` route.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    /// The topic whose route it is.
    pub(crate) topic: String,
    /// The CloudEvents type of its events.
    pub(crate) event_type: String,
    /// The CloudEvents source of its events.
    pub(crate) source: String,
    /// The request header that holds an event's id, if one does.
    pub(crate) id_header: Option<String>,
    /// Standard Webhooks signing keys; none: bodies are not signed.
    keys: Vec<hmac::Key>,
}

impl Webhook {
    /// Checks the Standard Webhooks signature of `body` with `headers`
    /// (`webhook-id`, `webhook-timestamp`, `webhook-signature`) at `now`,
    /// when the route signs; why not, when it does not check out.
    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| format!("the webhook is signed on this route: {name} is missing"))
        };
        let (id, timestamp, signatures) = (
            header("webhook-id")?,
            header("webhook-timestamp")?,
            header("webhook-signature")?,
        );
        let seconds: u64 = timestamp
            .parse()
            .map_err(|_| "webhook-timestamp is not seconds since 1970".to_owned())?;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if now.abs_diff(seconds) > TOLERANCE.as_secs() {
            return Err(format!(
                "webhook-timestamp is more than {} s from now",
                TOLERANCE.as_secs()
            ));
        }
        let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
        let matches = signatures
            .split(' ')
            .take(MAX_SIGNATURES)
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|signature| BASE64.decode(signature).ok())
            .any(|tag| {
                self.keys
                    .iter()
                    .any(|key| hmac::verify(key, &signed, &tag).is_ok())
            });
        match matches {
            true => Ok(()),
            false => Err(
                "the webhook's signature does not match its body with this route's secrets".into(),
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookFile {
    topic: Spanned<String>,
    #[serde(rename = "type")]
    event_type: String,
    source: String,
    id_header: Option<String>,
    signing_secrets: Option<Spanned<Vec<String>>>,
}

impl WebhookFile {
    pub(super) fn check(self, text: &str) -> Result<Webhook, String> {
        let span = self.topic.span();
        let topic = self.topic.into_inner();
        if !eventgateway::bounds::is_topic_name(&topic) {
            return Err(at(
                text,
                span,
                "a webhook's topic is not a Kafka topic name",
            ));
        }
        if self.event_type.is_empty() || self.source.is_empty() {
            return Err(at(text, span, "a webhook needs a type and a source"));
        }
        let (secrets_span, secrets) = match self.signing_secrets {
            Some(secrets) => (secrets.span(), secrets.into_inner()),
            None => (span.clone(), Vec::new()),
        };
        if secrets.len() > 2 {
            return Err(at(
                text,
                secrets_span,
                "a webhook has at most two signing secrets",
            ));
        }
        let keys = secrets
            .iter()
            .map(|secret| {
                let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
                BASE64
                    .decode(encoded)
                    .ok()
                    .filter(|key| key.len() >= 16)
                    .map(|key| hmac::Key::new(hmac::HMAC_SHA256, &key))
                    .ok_or_else(|| {
                        at(
                            text,
                            secrets_span.clone(),
                            "a signing secret is whsec_ and the base64 of at least 16 bytes",
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Webhook {
            topic,
            event_type: self.event_type,
            source: self.source,
            id_header: self.id_header.map(|name| name.to_ascii_lowercase()),
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(secrets: &str) -> Webhook {
        let text = format!("topic = \"payments\"\ntype = \"t\"\nsource = \"/s\"\n{secrets}\n");
        let file: WebhookFile = toml::from_str(&text).unwrap();
        file.check(&text).unwrap()
    }

    fn signed(secret: &[u8], id: &str, at: u64, body: &[u8]) -> HeaderMap {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let message = [id.as_bytes(), b".", at.to_string().as_bytes(), b".", body].concat();
        let tag = BASE64.encode(hmac::sign(&key, &message));
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", at.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            format!("v1,bm9wZQ== v1,{tag}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_signed_route_takes_a_body_signed_with_one_of_its_secrets_within_five_minutes() {
        let secret = b"0123456789abcdef0123";
        let signing = route(&format!(
            "signing_secrets = [\"whsec_{}\"]",
            BASE64.encode(secret)
        ));
        let now = SystemTime::now();
        let at = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let body = br#"{"amount": 5}"#;
        assert_eq!(
            signing.verify(&signed(secret, "msg_1", at, body), body, now),
            Ok(())
        );
        let refused =
            |headers: HeaderMap, body: &[u8]| signing.verify(&headers, body, now).unwrap_err();
        assert!(
            refused(signed(secret, "msg_1", at, body), b"{\"amount\": 500}")
                .contains("does not match")
        );
        assert!(
            refused(signed(b"another secret!!", "msg_1", at, body), body)
                .contains("does not match")
        );
        assert!(refused(signed(secret, "msg_1", at - 301, body), body).contains("from now"));
        assert!(refused(HeaderMap::new(), body).contains("webhook-id is missing"));
        assert_eq!(
            route("").verify(&HeaderMap::new(), body, now),
            Ok(()),
            "an unsigned route"
        );
    }
}

//! Who a caller is: the principal of its client certificate (mTLS, `x509`)
//! or of its bearer token (JWT, `jwt` with keys from `jwks`), checked once
//! per call by the edge; what it may do (`policy`, with `quota`s), asked by
//! the service (`access`); the policy's webhook routes (`webhook`, where
//! plain bodies may be POSTed, and their signatures); and the audit log
//! (`audit`).
//!
//! With tokens on, every guarded call needs a valid token and its principal
//! is the token's `sub` (a client certificate, when mTLS is on too, only
//! lets the connection in). With mTLS alone, the principal is the
//! certificate's. With neither, calls have no principal and everything is
//! open, as without this module. Health checks are never guarded;
//! reflection is guarded only when asked.

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod jwks;
pub(crate) mod jwt;
mod place;
pub(crate) mod policy;
mod quota;
pub(crate) mod share;
pub(crate) mod webhook;
pub(crate) mod x509;

use std::net::SocketAddr;
use std::sync::Arc;

use jwks::Jwks;
use jwt::Expected;

/// Who made a call (a request extension on every call).
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    /// The authenticated principal; none when authentication is off.
    pub(crate) principal: Option<Arc<str>>,
    /// The client's address.
    pub(crate) peer: Option<SocketAddr>,
}

/// Bearer tokens: where their keys come from, what they must say, and the
/// ones that verified lately.
#[derive(Clone)]
pub(crate) struct Tokens {
    pub(crate) jwks: Jwks,
    pub(crate) expected: Expected,
    pub(crate) verified: Arc<jwt::VerifiedTokens>,
}

/// How calls are authenticated.
#[derive(Clone, Default)]
pub(crate) struct Authentication {
    /// mTLS is on: connections carry a verified client certificate.
    pub(crate) certificates: bool,
    /// Bearer tokens are required.
    pub(crate) tokens: Option<Tokens>,
    /// Reflection is guarded too.
    pub(crate) protect_reflection: bool,
}

/// The path prefix of health checks.
const HEALTH: &str = "/grpc.health.v1.Health/";
/// The path prefix of reflection (v1 and v1alpha).
const REFLECTION: &str = "/grpc.reflection.";

impl Authentication {
    /// Whether any authentication is on.
    pub(crate) fn is_on(&self) -> bool {
        self.certificates || self.tokens.is_some()
    }

    /// Whether a call to `path` must be authenticated.
    pub(crate) fn guards(&self, path: &str) -> bool {
        self.is_on()
            && !path.starts_with(HEALTH)
            && (self.protect_reflection || !path.starts_with(REFLECTION))
    }

    /// The principal of a call with `authorization` metadata on a
    /// connection whose client certificate names `certificate`.
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
        certificate: Option<&Arc<str>>,
    ) -> Result<Arc<str>, AuthFailure> {
        let Some(tokens) = &self.tokens else {
            return certificate.cloned().ok_or(AuthFailure::NoPrincipal);
        };
        let value = authorization.ok_or(AuthFailure::TokenMissing)?;
        let token = value
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or(AuthFailure::NotBearer)?;
        let kid = jwt::key_id(token)?;
        let keys = tokens.jwks.keys_for(kid.as_deref()).await;
        tokens.verified.verify(token, &keys, &tokens.expected)
    }
}

/// The token of an `authorization: Bearer <token>` value.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why a caller could not be authenticated (the `reason` label of
/// `gateway_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// mTLS is on and the client sent no certificate.
    NoClientCertificate,
    /// The client's certificate does not chain to the client CA, has
    /// expired, or is not for client authentication.
    BadClientCertificate,
    /// The client's certificate names no principal.
    NoPrincipal,
    /// No `authorization` metadata.
    TokenMissing,
    /// `authorization` is not `Bearer <token>`.
    NotBearer,
    /// The token is not a JWT.
    TokenMalformed,
    /// The token is larger than a token may be.
    TokenTooLarge,
    /// The token names a key the key set does not have.
    TokenUnknownKey,
    /// The token names an algorithm other than its key's (or none, or HMAC).
    TokenAlgorithm,
    /// The signature does not verify.
    TokenSignature,
    /// `exp` has passed.
    TokenExpired,
    /// `nbf` is still ahead.
    TokenNotYetValid,
    /// `iss` is not the configured issuer.
    TokenWrongIssuer,
    /// `aud` does not hold the configured audience.
    TokenWrongAudience,
    /// `exp`, `iss`, `aud` or `sub` is missing.
    TokenMissingClaim,
}

impl AuthFailure {
    /// The reason, as a label and in the audit log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            AuthFailure::NoClientCertificate => "no_client_certificate",
            AuthFailure::BadClientCertificate => "bad_client_certificate",
            AuthFailure::NoPrincipal => "no_principal",
            AuthFailure::TokenMissing => "token_missing",
            AuthFailure::NotBearer => "not_bearer",
            AuthFailure::TokenMalformed => "token_malformed",
            AuthFailure::TokenTooLarge => "token_too_large",
            AuthFailure::TokenUnknownKey => "token_unknown_key",
            AuthFailure::TokenAlgorithm => "token_algorithm",
            AuthFailure::TokenSignature => "token_signature",
            AuthFailure::TokenExpired => "token_expired",
            AuthFailure::TokenNotYetValid => "token_not_yet_valid",
            AuthFailure::TokenWrongIssuer => "token_wrong_issuer",
            AuthFailure::TokenWrongAudience => "token_wrong_audience",
            AuthFailure::TokenMissingClaim => "token_missing_claim",
        }
    }

    /// What the UNAUTHENTICATED status says: what was missing or wrong,
    /// never the token.
    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthFailure::NoClientCertificate | AuthFailure::BadClientCertificate => {
                "a valid client certificate is required"
            }
            AuthFailure::NoPrincipal => {
                "the client certificate names no principal (no URI SAN, DNS SAN or common name)"
            }
            AuthFailure::TokenMissing => {
                "missing credentials: send the metadata 'authorization: Bearer <JWT>'"
            }
            AuthFailure::NotBearer => "the authorization metadata is not 'Bearer <JWT>'",
            AuthFailure::TokenMalformed => {
                "the bearer token is not a JWT with a known signing algorithm"
            }
            AuthFailure::TokenTooLarge => "the bearer token is over its limit of 16 KiB",
            AuthFailure::TokenUnknownKey => {
                "the bearer token is signed with a key the gateway does not know (unknown kid)"
            }
            AuthFailure::TokenAlgorithm => {
                "the bearer token's algorithm is not accepted for its key (RS256, ES256 and EdDSA are)"
            }
            AuthFailure::TokenSignature => "the bearer token's signature does not verify",
            AuthFailure::TokenExpired => "the bearer token has expired",
            AuthFailure::TokenNotYetValid => "the bearer token is not valid yet (nbf)",
            AuthFailure::TokenWrongIssuer => "the bearer token's issuer (iss) is not accepted",
            AuthFailure::TokenWrongAudience => {
                "the bearer token's audience (aud) does not include this gateway"
            }
            AuthFailure::TokenMissingClaim => {
                "the bearer token lacks a required claim (exp, iss, aud and sub are required)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_the_token_of_a_bearer_value_only() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn health_is_open_and_reflection_is_open_unless_protected() {
        let mut auth = Authentication {
            certificates: true,
            ..Authentication::default()
        };
        assert!(!auth.guards("/grpc.health.v1.Health/Check"));
        assert!(!auth.guards("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(auth.guards("/eventgateway.v1.EventGateway/PublishEvent"));
        auth.protect_reflection = true;
        assert!(auth.guards("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
        assert!(!Authentication::default().guards("/eventgateway.v1.EventGateway/PublishEvent"));
    }
}

//! Bearer tokens (JWT): verified against the keys of a JWKS document, with
//! the configured issuer and audience, and `exp`/`nbf` within a leeway.
//!
//! Only RS256 (RSA keys), ES256 (P-256 keys) and EdDSA (Ed25519 keys) are
//! accepted, each with keys of its own kind only: `alg: none` never parses,
//! and a token that names HMAC (or any algorithm other than its key's) is
//! refused, so a public key can never serve as an HMAC secret. Symmetric and
//! unsupported keys in the document are left out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::AuthFailure;

/// The longest token looked at; a longer one is refused unread.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// One usable key of a JWKS document.
struct Key {
    /// The one algorithm tokens signed with it may name.
    algorithm: Algorithm,
    decoding: DecodingKey,
}

/// The usable keys of a JWKS document, by key id.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Key>,
    /// Keys without an id: tried for tokens without one.
    unnamed: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("unnamed", &self.unnamed.len())
            .finish()
    }
}

/// The algorithm a key may verify, if it is a kind this gateway accepts.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let declared = jwk.common.key_algorithm;
    let agrees = match declared {
        None => true,
        Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => algorithm == Algorithm::EdDSA,
        Some(_) => false,
    };
    agrees.then_some(algorithm)
}

impl KeySet {
    /// The usable keys of a JWKS document (`{"keys": [...]}`); an error when
    /// it is not one, or has no usable key.
    pub(crate) fn parse(document: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(document)
            .map_err(|error| format!("not a JWKS document ({{\"keys\": [...]}}): {error}"))?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for value in document.keys {
            let usable = serde_json::from_value::<Jwk>(value).ok().and_then(|jwk| {
                let algorithm = algorithm_of(&jwk)?;
                let decoding = DecodingKey::from_jwk(&jwk).ok()?;
                Some((
                    jwk.common.key_id,
                    Key {
                        algorithm,
                        decoding,
                    },
                ))
            });
            match usable {
                Some((Some(id), key)) => {
                    set.keys.insert(id, key);
                }
                Some((None, key)) => set.unnamed.push(key),
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::debug!(
                skipped,
                "JWKS keys left out: only RSA (RS256), P-256 (ES256) and Ed25519 (EdDSA) keys verify tokens"
            );
        }
        if set.keys.is_empty() && set.unnamed.is_empty() {
            return Err(
                "the JWKS document has no RSA, P-256 or Ed25519 public key to verify tokens with"
                    .into(),
            );
        }
        Ok(set)
    }

    /// Whether the set has a key with id `kid` (or, for `None`, a key
    /// without an id).
    pub(crate) fn has(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.contains_key(kid),
            None => !self.unnamed.is_empty(),
        }
    }
}

/// What a token must say beside its signature.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    /// The `iss` claim.
    pub(crate) issuer: String,
    /// A value of the `aud` claim.
    pub(crate) audience: String,
    /// Slack on `exp` and `nbf`, for clocks that disagree.
    pub(crate) leeway: Duration,
}

/// The claims read from a verified token.
#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

/// A token that verified: its principal, and what is checked again on
/// every later use.
pub(crate) struct VerifiedToken {
    /// The `sub` claim.
    pub(crate) principal: Arc<str>,
    /// `exp`, seconds since the epoch.
    expires: u64,
    /// `nbf`, seconds since the epoch (0 without one).
    not_before: u64,
}

/// The key id a token names, if it parses as a JWT at all.
pub(crate) fn key_id(token: &str) -> Result<Option<String>, AuthFailure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthFailure::TokenTooLarge);
    }
    jsonwebtoken::decode_header(token)
        .map(|header| header.kid)
        .map_err(|_| AuthFailure::TokenMalformed)
}

/// The principal (`sub`) of `token`, verified with `keys` as `expected`
/// says.
pub(crate) fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expected,
) -> Result<VerifiedToken, AuthFailure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthFailure::TokenTooLarge);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::TokenMalformed)?;
    let candidates: Vec<&Key> = match &header.kid {
        Some(kid) => keys.keys.get(kid).into_iter().collect(),
        None => keys.unnamed.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(AuthFailure::TokenUnknownKey);
    }
    let key = candidates
        .into_iter()
        .find(|key| key.algorithm == header.alg)
        .ok_or(AuthFailure::TokenAlgorithm)?;
    let mut validation = Validation::new(key.algorithm);
    validation.set_issuer(&[&expected.issuer]);
    validation.set_audience(&[&expected.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = expected.leeway.as_secs();
    let data =
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|error| {
            match error.kind() {
                ErrorKind::ExpiredSignature => AuthFailure::TokenExpired,
                ErrorKind::ImmatureSignature => AuthFailure::TokenNotYetValid,
                ErrorKind::InvalidIssuer => AuthFailure::TokenWrongIssuer,
                ErrorKind::InvalidAudience => AuthFailure::TokenWrongAudience,
                ErrorKind::InvalidAlgorithm => AuthFailure::TokenAlgorithm,
                ErrorKind::InvalidSignature => AuthFailure::TokenSignature,
                ErrorKind::MissingRequiredClaim(_) => AuthFailure::TokenMissingClaim,
                _ => AuthFailure::TokenMalformed,
            }
        })?;
    let principal = data
        .claims
        .sub
        .filter(|sub| !sub.is_empty())
        .ok_or(AuthFailure::TokenMissingClaim)?;
    Ok(VerifiedToken {
        principal: principal.into(),
        expires: data.claims.exp.ok_or(AuthFailure::TokenMissingClaim)?,
        not_before: data.claims.nbf.unwrap_or(0),
    })
}

/// Seconds since the epoch, now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The tokens that verified lately, so that a client sending the same
/// token on every call pays for its signature check once. An entry holds
/// only while the key set it was verified with is the current one (a JWKS
/// change verifies every token again), and its `exp` and `nbf` are checked
/// on every use, with the same leeway. Only tokens that verified are kept,
/// at most [`CACHED_TOKENS`] of at most [`MAX_CACHED_TOKEN_BYTES`] each.
#[derive(Default)]
pub(crate) struct VerifiedTokens(Mutex<HashMap<Box<str>, Cached>>);

/// A verified token, and the key set it verified with.
type Cached = (Weak<KeySet>, Arc<VerifiedToken>);

/// Most tokens kept verified.
const CACHED_TOKENS: usize = 4096;
/// Longest token kept verified.
const MAX_CACHED_TOKEN_BYTES: usize = 2048;

impl VerifiedTokens {
    /// The principal of `token`: from the cache when it verified with
    /// `keys` before and is still within its times, else verified now.
    pub(crate) fn verify(
        &self,
        token: &str,
        keys: &Arc<KeySet>,
        expected: &Expected,
    ) -> Result<Arc<str>, AuthFailure> {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        let cached = lock()
            .get(token)
            .filter(|(with, _)| Weak::ptr_eq(with, &Arc::downgrade(keys)))
            .map(|(_, verified)| verified.clone());
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let verified = Arc::new(verify(token, keys, expected)?);
                if token.len() <= MAX_CACHED_TOKEN_BYTES {
                    let mut entries = lock();
                    if entries.len() >= CACHED_TOKENS {
                        entries.clear();
                    }
                    let entry = (Arc::downgrade(keys), verified.clone());
                    entries.insert(token.into(), entry);
                }
                verified
            }
        };
        let (now, leeway) = (now(), expected.leeway.as_secs());
        if verified.expires.saturating_add(leeway) < now {
            return Err(AuthFailure::TokenExpired);
        }
        if verified.not_before > now.saturating_add(leeway) {
            return Err(AuthFailure::TokenNotYetValid);
        }
        Ok(verified.principal.clone())
    }
}

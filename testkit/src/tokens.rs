//! Bearer tokens made at test time: signing keys of each accepted kind
//! (ES256 and EdDSA from rcgen, RS256 from the openssl command), the JWKS
//! document of their public keys, tokens with any claims, and the tokens
//! no gateway may take (`alg: none`, HMAC keyed with a public key).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use serde_json::{json, Value};

/// A signing key with its key id.
pub struct Signer {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    /// The public key as a JWK.
    jwk: Value,
    /// The public key's bytes (what an HMAC forgery would use).
    public: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Signer {
    /// A P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Self {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk,
            public: point,
        }
    }

    /// An Ed25519 key (EdDSA).
    pub fn eddsa(kid: &str) -> Self {
        let pair = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let public = pair.public_key_raw().to_vec();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&public)});
        Self {
            kid: kid.into(),
            algorithm: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk,
            public,
        }
    }

    /// A 2048-bit RSA key (RS256), made by the openssl command.
    pub fn rs256(kid: &str) -> Self {
        let openssl = |args: &[&str], input: Option<&[u8]>| -> Vec<u8> {
            use std::io::Write as _;
            let mut child = Command::new("openssl")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("openssl runs");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.unwrap_or_default()).unwrap();
            drop(stdin);
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "openssl {args:?}");
            output.stdout
        };
        let pem = openssl(&["genrsa", "-traditional", "2048"], None);
        let der = openssl(&["rsa", "-traditional", "-outform", "DER"], Some(&pem));
        let modulus = openssl(&["rsa", "-noout", "-modulus"], Some(&pem));
        let hex = String::from_utf8(modulus).unwrap();
        let hex = hex.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": b64(&n), "e": "AQAB"});
        Self {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(&der),
            jwk,
            public: n,
        }
    }

    /// The public key, as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A token with `claims`, signed with this key and naming its key id.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A token naming this key's id but signed with HS256, the public key's
    /// bytes as the secret: what a forger who read the JWKS would send.
    pub fn hmac_forgery(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&self.public)).unwrap()
    }
}

/// A JWKS document of the `signers`' public keys.
pub fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk().clone()).collect::<Vec<_>>()}).to_string()
}

/// Claims for `sub` from `iss` to `aud`, valid for an hour from now.
pub fn claims(sub: &str, iss: &str, aud: &str) -> Value {
    json!({"sub": sub, "iss": iss, "aud": aud, "iat": now(), "exp": now() + 3600})
}

/// An unsigned token (`alg: none`) with `claims`.
pub fn unsigned_token(claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT"});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// `message` as a request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a token is ASCII"),
    );
    request
}

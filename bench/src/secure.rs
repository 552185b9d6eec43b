//! The gateway with its edge secured, for the TLS-and-token scenarios: TLS
//! with a certificate of a CA made here, bearer tokens checked against a
//! JWKS file, and a policy that grants the benchmark's principal every
//! topic. Its files live in a temporary directory until this goes.

use std::path::PathBuf;

use testkit::{claims, jwks, Ca, Signer};

use crate::clients::Target;

const ISSUER: &str = "https://gateway-bench.invalid";
const AUDIENCE: &str = "event-gateway";

/// The secured gateway's flags and how to reach it.
pub(crate) struct Secure {
    dir: PathBuf,
    /// The gateway flags that turn TLS, tokens and the policy on.
    pub(crate) args: Vec<String>,
    /// How the benchmark's clients reach it.
    pub(crate) target: Target,
}

impl Secure {
    /// Certificates, keys, a JWKS file, a policy and a token for a gateway
    /// on `port`.
    pub(crate) fn new(port: u16) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("event-gateway-bench-secure-{port}"));
        std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        let ca = Ca::new("gateway-bench CA");
        let (cert, key) = ca.server("gateway-bench").write(&dir, "server");
        let signer = Signer::es256("gateway-bench");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|error| format!("{}: {error}", path.display()))?;
            Ok::<_, String>(path)
        };
        let jwks_file = write("jwks.json", &jwks(&[&signer]))?;
        let policy = write(
            "policy.toml",
            "[[grant]]\nprincipals = [\"gateway-bench\"]\npublish = [\"*\"]\nsubscribe = [\"*\"]\n",
        )?;
        let token = signer.sign(&claims("gateway-bench", ISSUER, AUDIENCE));
        let path = |p: PathBuf| p.display().to_string();
        let args = vec![
            format!("--tls-cert={}", path(cert)),
            format!("--tls-key={}", path(key)),
            format!("--jwks-file={}", path(jwks_file)),
            format!("--jwt-issuer={ISSUER}"),
            format!("--jwt-audience={AUDIENCE}"),
            format!("--policy-file={}", path(policy)),
        ];
        let target = Target::tls(port, &ca.cert, &token)?;
        Ok(Self { dir, args, target })
    }
}

impl Drop for Secure {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The gateway with its edge secured, for the TLS-and-token scenarios: TLS
//! with a certificate of a CA made here, bearer tokens checked against a
//! JWKS file, and a policy that grants the benchmark's principal every
//! topic. Its files live in a temporary directory until this goes.

use testkit::{SecureEdge, AUDIENCE, ISSUER};

use crate::clients::Target;

/// The secured gateway's flags and how to reach it.
pub(crate) struct Secure {
    /// Its files, kept while it runs.
    _edge: SecureEdge,
    /// The gateway flags that turn TLS, tokens and the policy on.
    pub(crate) args: Vec<String>,
    /// How the benchmark's clients reach it.
    pub(crate) target: Target,
}

impl Secure {
    /// Certificates, keys, a JWKS file, a policy and a token for a gateway
    /// on `port`.
    pub(crate) fn new(port: u16) -> Result<Self, String> {
        let edge = SecureEdge::new("bench-secure");
        edge.write_policy(
            "[[grant]]\nprincipals = [\"gateway-bench\"]\npublish = [\"*\"]\nsubscribe = [\"*\"]\n",
        );
        let path = |p: &std::path::Path| p.display().to_string();
        let args = vec![
            format!("--tls-cert={}", path(&edge.server.0)),
            format!("--tls-key={}", path(&edge.server.1)),
            format!("--jwks-file={}", path(&edge.jwks_path)),
            format!("--jwt-issuer={ISSUER}"),
            format!("--jwt-audience={AUDIENCE}"),
            format!("--policy-file={}", path(&edge.policy_path())),
        ];
        let target = Target::tls(port, &edge.ca.cert, &edge.token("gateway-bench"))?;
        Ok(Self {
            _edge: edge,
            args,
            target,
        })
    }
}

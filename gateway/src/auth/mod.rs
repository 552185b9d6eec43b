//! Who a caller is, and what it may do: the principal of a client
//! certificate (`x509`), and the audit log of authentication failures.

pub(crate) mod audit;
pub(crate) mod x509;

/// Why a caller could not be authenticated (the `reason` label of
/// `gateway_auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// mTLS is on and the client sent no certificate.
    NoClientCertificate,
    /// The client's certificate does not chain to the client CA, has
    /// expired, or is not for client authentication.
    BadClientCertificate,
}

impl AuthFailure {
    /// The reason, as a label and in the audit log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            AuthFailure::NoClientCertificate => "no_client_certificate",
            AuthFailure::BadClientCertificate => "bad_client_certificate",
        }
    }
}

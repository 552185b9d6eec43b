//! The principal a client certificate names: its URI SAN (for example a
//! SPIFFE id), else its first DNS SAN, else its subject's common name.

use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::der::oid::db::rfc4519::CN;
use x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
use x509_cert::der::Decode as _;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// The principal `der` (a verified client certificate) names, if it names
/// one.
pub(crate) fn principal(der: &[u8]) -> Option<String> {
    let certificate = Certificate::from_der(der).ok()?;
    let tbs = &certificate.tbs_certificate;
    let names = tbs
        .extensions
        .iter()
        .flatten()
        .filter(|extension| extension.extn_id == ID_CE_SUBJECT_ALT_NAME)
        .filter_map(|extension| SubjectAltName::from_der(extension.extn_value.as_bytes()).ok())
        .flat_map(|names| names.0)
        .collect::<Vec<_>>();
    let uri = names.iter().find_map(|name| match name {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            _ => None,
        })
    };
    let common_name = || {
        tbs.subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|attribute| attribute.oid == CN)
            .find_map(|attribute| {
                let value = &attribute.value;
                value
                    .decode_as::<Utf8StringRef<'_>>()
                    .map(|s| s.to_string())
                    .or_else(|_| {
                        value
                            .decode_as::<PrintableStringRef<'_>>()
                            .map(|s| s.to_string())
                    })
                    .or_else(|_| value.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()))
                    .ok()
            })
    };
    uri.or_else(dns)
        .or_else(common_name)
        .filter(|principal| !principal.is_empty())
}

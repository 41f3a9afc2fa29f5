//! Certificates made with rcgen: a CA (new, or loaded back from its files), serving certificates
//! signed by it, self-signed certificates, SHA-256 fingerprints (what a joining node pins the CA
//! by), and the check that a serving chain verifies against a CA for a name.
//!
//! A separate CA matters for clients that verify: rustls (kube-rs) rejects a self-signed leaf
//! used as a trust anchor (kube-rs#1767), so the API server serves a leaf signed by its CA.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// Errors making or reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed (key generation, an invalid name, signing).
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The PEM text held no certificate.
    #[error("no certificate found in the PEM text")]
    NoCertificate,
    /// A CA's key is not the one its certificate carries.
    #[error("the CA key does not belong to the CA certificate")]
    KeyMismatch,
    /// A certificate chain does not verify against a CA for a name.
    #[error("the certificate does not verify for {name}: {reason}")]
    Verify {
        /// The server name checked.
        name: String,
        /// Why it fails.
        reason: String,
    },
}

/// A certificate (chain) and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate, followed by its issuers' certificates if any.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// The subject alternative names of a serving certificate.
#[derive(Debug, Clone, Default)]
pub struct Sans {
    /// DNS names (ASCII).
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

/// Certificates are made to last: nothing in berth rotates them yet.
const NOT_AFTER_YEAR: i32 = 2099;

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// A certificate authority: a self-signed CA certificate and its key, able to sign leaves.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// The parameters of a CA named `name`; the same name gives the same subject, so a CA loaded
/// back from its key signs leaves that chain to the certificate made at generation.
fn ca_params(name: &str) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(NOT_AFTER_YEAR, 1, 1);
    Ok(params)
}

impl CertificateAuthority {
    /// A new CA named `name` (its common name), valid until 2099.
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let params = ca_params(name)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA `generate(name)` made, back from its certificate and key (PEM), to sign more
    /// leaves: the certificate itself is kept as it is (its fingerprint is what nodes pin).
    pub fn load(name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let cert_der = first_certificate(cert_pem)?;
        let key = KeyPair::from_pem(key_pem)?;
        // The certificate carries its public key verbatim (SubjectPublicKeyInfo).
        let spki = key.subject_public_key_info();
        if !cert_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(CertError::KeyMismatch);
        }
        Ok(Self {
            issuer: Issuer::new(ca_params(name)?, key),
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A serving (server-auth) certificate named `name` for `sans`, signed by this CA and valid
    /// until 2099; its PEM chain is the leaf followed by the CA certificate.
    pub fn issue_serving(&self, name: &str, sans: &Sans) -> Result<CertifiedKey, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for dns in &sans.dns {
            let dns = dns.clone().try_into()?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        for ip in &sans.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(NOT_AFTER_YEAR, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem()),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A self-signed certificate for `names` (DNS names, or IP addresses written out), for endpoints
/// whose clients do not verify the server.
pub fn self_signed(names: Vec<String>) -> Result<CertifiedKey, CertError> {
    let certified = rcgen::generate_simple_self_signed(names)?;
    Ok(CertifiedKey {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}

fn first_certificate(cert_pem: &str) -> Result<CertificateDer<'static>, CertError> {
    rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .find_map(Result::ok)
        .ok_or(CertError::NoCertificate)
}

/// The SHA-256 fingerprint (lowercase hex of the DER) of the first certificate in `cert_pem`.
pub fn sha256_fingerprint(cert_pem: &str) -> Result<String, CertError> {
    let der = first_certificate(cert_pem)?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// Whether the certificate chain `chain_pem` (leaf first) verifies against the CA certificate
/// `ca_pem` for the server name `name` (a DNS name or an IP address), as a TLS client checks it.
pub fn verify_serving(chain_pem: &str, ca_pem: &str, name: &str) -> Result<(), CertError> {
    let fail = |reason: String| CertError::Verify {
        name: name.to_string(),
        reason,
    };
    let chain: Vec<_> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    let (leaf, intermediates) = chain.split_first().ok_or(CertError::NoCertificate)?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(first_certificate(ca_pem)?)
        .map_err(|e| fail(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| fail(e.to_string()))?;
    let server = ServerName::try_from(name.to_string()).map_err(|e| fail(e.to_string()))?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        leaf,
        intermediates,
        &server,
        &[],
        UnixTime::now(),
    )
    .map(|_| ())
    .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_signs_serving_certificates_with_its_chain() {
        let ca = CertificateAuthority::generate("test-ca").expect("ca");
        let sans = Sans {
            dns: vec!["localhost".into()],
            ips: vec![IpAddr::from([127, 0, 0, 1])],
        };
        let leaf = ca.issue_serving("test-server", &sans).expect("leaf");
        assert_eq!(leaf.cert_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(leaf.cert_pem.ends_with(&ca.cert_pem()));
        assert!(ca.key_pem().contains("PRIVATE KEY"));
        let bad = Sans {
            dns: vec!["naïve".into()],
            ips: vec![],
        };
        assert!(ca.issue_serving("x", &bad).is_err(), "DNS names are ASCII");
    }

    #[test]
    fn a_loaded_ca_signs_leaves_that_verify_against_the_original_certificate() {
        let ca = CertificateAuthority::generate("test-ca").expect("ca");
        let loaded =
            CertificateAuthority::load("test-ca", &ca.cert_pem(), &ca.key_pem()).expect("load");
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        let sans = Sans {
            dns: vec!["node.example".into()],
            ips: vec![IpAddr::from([192, 0, 2, 7])],
        };
        let leaf = loaded.issue_serving("test-server", &sans).expect("leaf");
        verify_serving(&leaf.cert_pem, &ca.cert_pem(), "node.example").expect("dns name");
        verify_serving(&leaf.cert_pem, &ca.cert_pem(), "192.0.2.7").expect("ip");
        assert!(verify_serving(&leaf.cert_pem, &ca.cert_pem(), "other.example").is_err());
        let stranger = CertificateAuthority::generate("test-ca").expect("ca");
        assert!(verify_serving(&leaf.cert_pem, &stranger.cert_pem(), "node.example").is_err());
        assert!(matches!(
            CertificateAuthority::load("test-ca", &ca.cert_pem(), &stranger.key_pem()),
            Err(CertError::KeyMismatch)
        ));
    }

    #[test]
    fn fingerprints_are_sha256_of_the_der() {
        let ca = CertificateAuthority::generate("test-ca").expect("ca");
        let fp = sha256_fingerprint(&ca.cert_pem()).expect("fingerprint");
        assert_eq!(fp.len(), 64);
        assert_eq!(
            fp,
            hex::encode(Sha256::digest(
                first_certificate(&ca.cert_pem).unwrap().as_ref()
            )),
            "the DER, not the PEM text"
        );
        assert!(matches!(
            sha256_fingerprint("nothing"),
            Err(CertError::NoCertificate)
        ));
    }
}

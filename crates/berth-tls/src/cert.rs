//! Certificates made with rcgen: a CA, serving certificates signed by it, self-signed
//! certificates, and SHA-256 fingerprints (what a joining node pins the CA by).
//!
//! A separate CA matters for clients that verify: rustls (kube-rs) rejects a self-signed leaf
//! used as a trust anchor (kube-rs#1767), so the API server serves a leaf signed by its CA.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
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
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// A new CA named `name` (its common name), valid until 2099.
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(NOT_AFTER_YEAR, 1, 1);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
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

/// The SHA-256 fingerprint (lowercase hex of the DER) of the first certificate in `cert_pem`.
pub fn sha256_fingerprint(cert_pem: &str) -> Result<String, CertError> {
    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .find_map(Result::ok)
        .ok_or(CertError::NoCertificate)?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
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
    fn fingerprints_are_sha256_of_the_der() {
        let ca = CertificateAuthority::generate("test-ca").expect("ca");
        let fp = sha256_fingerprint(&ca.cert_pem()).expect("fingerprint");
        assert_eq!(fp.len(), 64);
        assert_eq!(
            fp,
            hex::encode(Sha256::digest(ca.issuer.der().as_ref())),
            "the DER, not the PEM text"
        );
        assert!(matches!(
            sha256_fingerprint("nothing"),
            Err(CertError::NoCertificate)
        ));
    }
}

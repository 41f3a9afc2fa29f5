//! The server's TLS material: a CA and a serving certificate signed by it, generated on first start
//! under `<data>/server/tls/` and reused afterwards.
//!
//! A separate CA matters: rustls (kube-rs) rejects a self-signed leaf used as
//! `certificate-authority-data` (kube-rs#1767).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Errors while creating or loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// File I/O failed.
    #[error("tls file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected the material.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM file held no usable key or certificate.
    #[error("no {what} found in {path}")]
    Missing { what: &'static str, path: PathBuf },
}

/// The PEM files of the server's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The CA certificate (goes into kubeconfig `certificate-authority-data`).
    pub ca_pem: String,
    /// The serving certificate chain path.
    pub cert_path: PathBuf,
    /// The serving key path.
    pub key_path: PathBuf,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })
}

fn write(path: &Path, data: &str) -> Result<(), TlsError> {
    std::fs::write(path, data).map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })?;
    if path.extension().is_some_and(|e| e == "key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| TlsError::Io {
                path: path.into(),
                source,
            },
        )?;
    }
    Ok(())
}

/// Loads the TLS material from `dir`, generating it first if any file is missing.
pub fn load_or_create(dir: &Path) -> Result<TlsMaterial, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.into(),
        source,
    })?;
    let ca_path = dir.join("ca.crt");
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
        generate(dir)?;
    }
    Ok(TlsMaterial {
        ca_pem: read(&ca_path)?,
        cert_path,
        key_path,
    })
}

fn generate(dir: &Path) -> Result<(), TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "berth-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    for ip in host_addresses() {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            if let Ok(name) = host.to_string().try_into() {
                params.subject_alt_names.push(SanType::DnsName(name));
            }
        }
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "berth-apiserver");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    write(&dir.join("server.key"), &key.serialize_pem())?;
    write(
        &dir.join("server.crt"),
        &format!("{}{}", cert.pem(), ca_cert.pem()),
    )?;
    // The CA certificate is written last: its presence marks the set as complete.
    write(&dir.join("ca.crt"), &ca_cert.pem())?;
    Ok(())
}

/// Loopback plus the host's own addresses (as the kernel reports them), for IP SANs.
fn host_addresses() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse().ok(), "::1".parse().ok()]
        .into_iter()
        .flatten()
        .collect();
    // /proc/net/fib_trie lists local IPv4 addresses as "/32 host LOCAL" entries.
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let lines: Vec<&str> = trie.lines().collect();
        for pair in lines.windows(2) {
            if pair[1].contains("/32 host LOCAL") {
                if let Ok(ip) = pair[0].trim().trim_start_matches("|-- ").parse::<IpAddr>() {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
        }
    }
    ips
}

/// A rustls server configuration (HTTP/2 and HTTP/1.1 via ALPN) from the material.
pub fn server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(&m.cert_path)?.as_bytes())
        .filter_map(|c| c.ok())
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Missing {
            what: "certificate",
            path: m.cert_path.clone(),
        });
    }
    let key = rustls_pemfile::private_key(&mut read(&m.key_path)?.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Missing {
            what: "private key",
            path: m.key_path.clone(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

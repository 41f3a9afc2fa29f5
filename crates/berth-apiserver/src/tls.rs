//! Where the API server keeps its TLS material and what its serving certificate names: a CA and
//! a serving certificate signed by it (made by `berth-tls`), generated on first start under
//! `<data>/server/tls/` and reused afterwards.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_tls::{Alpn, CertificateAuthority, Sans};

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
    #[error(transparent)]
    Cert(#[from] berth_tls::CertError),
    /// The serving certificate or key is unusable.
    #[error(transparent)]
    Config(#[from] berth_tls::ConfigError),
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
    let ca = CertificateAuthority::generate("berth-ca")?;
    let serving = ca.issue_serving("berth-apiserver", &serving_sans())?;
    write(&dir.join("ca.key"), &ca.key_pem())?;
    write(&dir.join("server.key"), &serving.key_pem)?;
    write(&dir.join("server.crt"), &serving.cert_pem)?;
    // The CA certificate is written last: its presence marks the set as complete.
    write(&dir.join("ca.crt"), &ca.cert_pem())?;
    Ok(())
}

/// The names clients reach the API server by: localhost, the in-cluster service name, the host
/// name, loopback and the host's own addresses.
fn serving_sans() -> Sans {
    let mut dns = vec![
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        // Certificate DNS names are ASCII; a host name that is not is left out.
        if !host.is_empty() && host != "localhost" && host.is_ascii() {
            dns.push(host.to_string());
        }
    }
    Sans {
        dns,
        ips: host_addresses(),
    }
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
    Ok(berth_tls::server_config_from_files(
        &m.cert_path,
        &m.key_path,
        Alpn::H2AndHttp11,
    )?)
}

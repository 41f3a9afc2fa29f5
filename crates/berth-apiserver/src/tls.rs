//! Where the API server keeps its TLS material and what its serving certificate names: a CA and
//! a serving certificate signed by it (made by `berth-tls`), generated on first start under
//! `<data>/server/tls/` and reused afterwards.
//!
//! The serving certificate must name every address clients reach the server at: loopback, the
//! host name and addresses, the bind address and `--tls-san` values. Hosts gain addresses and
//! operators add names after the first start, so at every start the names the certificate
//! carries (recorded beside it in `server.sans`, one per line) are compared with those it should
//! carry, and a certificate lacking one is re-issued by the same CA (`ca.key`). The CA never
//! changes: join tokens pin its fingerprint and kubeconfigs carry it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_tls::{Alpn, CertificateAuthority, CertifiedKey, Sans};

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

/// Writes one PEM file atomically; keys are private (0600) from their creation.
fn write(path: &Path, data: &str) -> Result<(), TlsError> {
    let is_key = path.extension().is_some_and(|e| e == "key");
    let written = if is_key {
        berth_fs::write_atomic_private(path, data.as_bytes())
    } else {
        berth_fs::write_atomic(path, data.as_bytes())
    };
    written.map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })
}

/// The CA's common name.
const CA_NAME: &str = "berth-ca";

/// Loads the TLS material from `dir`, generating it first if any file is missing, and
/// re-issuing the serving certificate if it lacks one of the names it should carry: the usual
/// ones ([`host_sans`]), `extra` (DNS names or IP addresses) and `listen` unless unspecified.
pub fn load_or_create(
    dir: &Path,
    extra: &[String],
    listen: IpAddr,
) -> Result<TlsMaterial, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.into(),
        source,
    })?;
    let ca_path = dir.join("ca.crt");
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    let wanted = wanted_sans(extra, listen);
    if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
        generate(dir, &wanted)?;
    } else if !covers(&read_sans(dir), &wanted) {
        reissue(dir, &wanted)?;
    }
    Ok(TlsMaterial {
        ca_pem: read(&ca_path)?,
        cert_path,
        key_path,
    })
}

fn generate(dir: &Path, sans: &Sans) -> Result<(), TlsError> {
    let ca = CertificateAuthority::generate(CA_NAME)?;
    write(&dir.join("ca.key"), &ca.key_pem())?;
    write_serving(dir, &ca.issue_serving(SERVING_NAME, sans)?, sans)?;
    // The CA certificate is written last: its presence marks the set as complete.
    write(&dir.join("ca.crt"), &ca.cert_pem())?;
    Ok(())
}

/// A new serving certificate for `sans` from the CA already in `dir`.
fn reissue(dir: &Path, sans: &Sans) -> Result<(), TlsError> {
    let ca_pem = read(&dir.join("ca.crt"))?;
    let ca = CertificateAuthority::load(CA_NAME, &ca_pem, &read(&dir.join("ca.key"))?)?;
    tracing::info!(dns = ?sans.dns, ips = ?sans.ips, "re-issuing the API serving certificate");
    let serving = ca.issue_serving(SERVING_NAME, sans)?;
    // What clients will check: never replace the certificate with one that does not chain to
    // the CA; the start fails with the reason instead, the old files untouched.
    berth_tls::verify_serving(&serving.cert_pem, &ca_pem, "localhost")?;
    write_serving(dir, &serving, sans)
}

/// The serving certificate's common name.
const SERVING_NAME: &str = "berth-apiserver";

/// Writes the serving certificate and key, then the record of the names they carry. The record
/// goes first and comes back last, so a crash in between leaves no record: the next start
/// re-issues rather than trusting a key and certificate that may not match.
fn write_serving(dir: &Path, serving: &CertifiedKey, sans: &Sans) -> Result<(), TlsError> {
    let record = dir.join(SANS_FILE);
    match std::fs::remove_file(&record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(TlsError::Io {
                path: record,
                source: e,
            });
        }
        _ => {}
    }
    write(&dir.join("server.key"), &serving.key_pem)?;
    write(&dir.join("server.crt"), &serving.cert_pem)?;
    write(&record, &render_sans(sans))
}

/// The record of the names the serving certificate carries.
const SANS_FILE: &str = "server.sans";

fn render_sans(sans: &Sans) -> String {
    let ips = sans.ips.iter().map(IpAddr::to_string);
    sans.dns
        .iter()
        .cloned()
        .chain(ips)
        .map(|n| n + "\n")
        .collect()
}

/// The names recorded beside the serving certificate (none if there is no record).
fn read_sans(dir: &Path) -> Sans {
    let text = std::fs::read_to_string(dir.join(SANS_FILE)).unwrap_or_default();
    let mut sans = Sans::default();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        add_name(&mut sans, name);
    }
    sans
}

/// Adds `name` as an IP SAN if it is an address, else as a DNS SAN; once.
fn add_name(sans: &mut Sans, name: &str) {
    match name.parse::<IpAddr>() {
        Ok(ip) if !sans.ips.contains(&ip) => sans.ips.push(ip),
        Ok(_) => {}
        Err(_) if !sans.dns.iter().any(|d| d == name) => sans.dns.push(name.to_string()),
        Err(_) => {}
    }
}

/// Whether `have` names everything `want` does.
fn covers(have: &Sans, want: &Sans) -> bool {
    want.dns.iter().all(|d| have.dns.contains(d)) && want.ips.iter().all(|i| have.ips.contains(i))
}

/// What the serving certificate should name: [`host_sans`], `extra`, and `listen` unless it is
/// the unspecified address (then the host's addresses cover it).
fn wanted_sans(extra: &[String], listen: IpAddr) -> Sans {
    let mut sans = host_sans();
    for name in extra.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        add_name(&mut sans, name);
    }
    if !listen.is_unspecified() {
        add_name(&mut sans, &listen.to_string());
    }
    sans
}

/// The names clients reach the API server by: localhost, the in-cluster service name, the host
/// name, loopback and the host's own addresses.
fn host_sans() -> Sans {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn a_missing_name_reissues_the_serving_certificate_from_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let any = IpAddr::from([0, 0, 0, 0]);
        let first = load_or_create(dir, &[], any).unwrap();
        let fingerprint = crate::jointoken::ca_fingerprint(&first.ca_pem).unwrap();
        let cert = file(dir, "server.crt");
        berth_tls::verify_serving(&cert, &first.ca_pem, "127.0.0.1").unwrap();
        assert!(berth_tls::verify_serving(&cert, &first.ca_pem, "api.example").is_err());

        load_or_create(dir, &[], any).unwrap();
        assert_eq!(file(dir, "server.crt"), cert, "nothing new to name: kept");

        let extra = ["api.example".to_string(), "192.0.2.7".to_string()];
        let again = load_or_create(dir, &extra, IpAddr::from([198, 51, 100, 9])).unwrap();
        let reissued = file(dir, "server.crt");
        assert_ne!(reissued, cert, "re-issued");
        assert_eq!(again.ca_pem, first.ca_pem, "the CA is unchanged");
        assert_eq!(
            crate::jointoken::ca_fingerprint(&again.ca_pem).unwrap(),
            fingerprint
        );
        for name in [
            "api.example",
            "192.0.2.7",
            "198.51.100.9",
            "127.0.0.1",
            "localhost",
        ] {
            berth_tls::verify_serving(&reissued, &again.ca_pem, name).unwrap();
        }
        server_config(&again).unwrap();

        load_or_create(dir, &extra[..1], any).unwrap();
        assert_eq!(file(dir, "server.crt"), reissued, "a name fewer: kept");
    }

    #[test]
    fn a_certificate_without_a_record_of_its_names_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let any = IpAddr::from([0, 0, 0, 0]);
        let first = load_or_create(dir, &[], any).unwrap();
        let cert = file(dir, "server.crt");
        // As a data dir from before the record existed.
        std::fs::remove_file(dir.join(SANS_FILE)).unwrap();
        let again = load_or_create(dir, &[], any).unwrap();
        assert_ne!(file(dir, "server.crt"), cert);
        assert_eq!(again.ca_pem, first.ca_pem);
        assert!(dir.join(SANS_FILE).exists());
    }
}

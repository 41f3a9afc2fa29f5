//! rustls server configurations from a PEM certificate chain and key, on the ring provider, with
//! the application protocols offered through ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors building a server configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading a PEM file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM held no usable certificate or private key.
    #[error("no {what} found in {source_name}")]
    Missing {
        /// `certificate` or `private key`.
        what: &'static str,
        /// Where it was looked for (a path, or `PEM text`).
        source_name: String,
    },
    /// rustls rejected the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The application protocols a server offers through ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2, with HTTP/1.1 for clients without it.
    H2AndHttp11,
    /// HTTP/1.1 only: for endpoints whose clients upgrade connections (WebSocket), which HTTP/2
    /// connections cannot do.
    Http11,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http11 => vec![b"http/1.1".to_vec()],
        }
    }
}

/// A server configuration serving the certificate chain `cert_pem` with the key `key_pem`.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn: Alpn,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    build(cert_pem, key_pem, alpn, "PEM text", "PEM text")
}

/// A server configuration serving the PEM certificate chain in `cert` with the PEM key in `key`.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    alpn: Alpn,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })
    };
    let (cert_name, key_name) = (cert.display().to_string(), key.display().to_string());
    build(&read(cert)?, &read(key)?, alpn, &cert_name, &key_name)
}

fn build(
    cert_pem: &str,
    key_pem: &str,
    alpn: Alpn,
    cert_name: &str,
    key_name: &str,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let missing = |what, name: &str| ConfigError::Missing {
        what,
        source_name: name.to_string(),
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(missing("certificate", cert_name));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| missing("private key", key_name))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.protocols();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_pem_with_the_chosen_protocols() {
        let ck = crate::self_signed(vec!["localhost".into()]).expect("cert");
        let h2 = server_config(&ck.cert_pem, &ck.key_pem, Alpn::H2AndHttp11).expect("config");
        assert_eq!(h2.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let h1 = server_config(&ck.cert_pem, &ck.key_pem, Alpn::Http11).expect("config");
        assert_eq!(h1.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(matches!(
            server_config(&ck.key_pem, &ck.key_pem, Alpn::Http11),
            Err(ConfigError::Missing {
                what: "certificate",
                ..
            })
        ));
        assert!(matches!(
            server_config(&ck.cert_pem, &ck.cert_pem, Alpn::Http11),
            Err(ConfigError::Missing {
                what: "private key",
                ..
            })
        ));
    }

    #[test]
    fn reads_files_and_names_the_missing_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let ck = crate::self_signed(vec!["localhost".into()]).expect("cert");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, &ck.cert_pem).expect("write");
        std::fs::write(&key, &ck.key_pem).expect("write");
        server_config_from_files(&cert, &key, Alpn::H2AndHttp11).expect("config");
        let gone = dir.path().join("gone.pem");
        let err = server_config_from_files(&cert, &gone, Alpn::H2AndHttp11).expect_err("missing");
        assert!(err.to_string().contains("gone.pem"), "{err}");
    }
}

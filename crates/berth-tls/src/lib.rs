//! `berth-tls`: TLS material and the one accept loop that serves HTTPS for the API server, the registry and the node endpoint.
//!
//! - [`cert`]: certificates made with rcgen: a CA, serving certificates it signs (IP and DNS
//!   SANs), self-signed certificates, the SHA-256 fingerprint of a certificate, and the check
//!   that a serving chain verifies for a name;
//! - [`config`]: rustls server configurations from PEM (in memory or files), with ALPN;
//! - [`serve`]: the accept loop: TCP accept, TLS handshake per connection, HTTP/1.1 (with
//!   upgrades) or HTTP/2 through hyper-util's auto builder.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cert;
pub mod config;
pub mod serve;

pub use cert::{
    CertError, CertificateAuthority, CertifiedKey, Sans, self_signed, sha256_fingerprint,
    verify_serving,
};
pub use config::{Alpn, ConfigError, server_config, server_config_from_files};
pub use serve::{serve, serve_router};

//! The join token's text: `B10<ca-sha256>::<id>.<secret>`.
//!
//! - `B10` marks the format (K3s writes `K10`);
//! - `<ca-sha256>` is the SHA-256 fingerprint (64 lowercase hex digits) of the DER of the server's
//!   CA certificate, so a joining agent can verify the server on first contact;
//! - `<id>.<secret>` is a kubeadm-style bootstrap token: 6 and 16 characters of `[a-z0-9]`. The id
//!   names the token (it is shown by `berth token list`); the secret is what proves possession.
//!
//! The short form `<id>.<secret>` (no fingerprint) is accepted too; the agent then needs the CA
//! certificate some other way (`--certificate-authority`).

use rand::Rng;

/// The format marker in front of the fingerprint.
pub const PREFIX: &str = "B10";
/// Length of the id part.
const ID_LEN: usize = 6;
/// Length of the secret part.
const SECRET_LEN: usize = 16;
/// The characters of ids and secrets.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a token's text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    /// The fingerprint part is not 64 hex digits.
    #[error(
        "the join token's CA fingerprint is not a SHA-256 hex digest (want B10<64 hex>::<id>.<secret>)"
    )]
    Fingerprint,
    /// The credential part is not `<id>.<secret>`.
    #[error(
        "the join token's credential is not <6 chars>.<16 chars> of [a-z0-9] (want B10<64 hex>::<id>.<secret>)"
    )]
    Credential,
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The CA fingerprint, if the token carries one.
    pub ca_fingerprint: Option<String>,
    /// The token id (public).
    pub id: String,
    /// The token secret.
    pub secret: String,
}

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn valid_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl JoinToken {
    /// A new random token pinned to `ca_fingerprint`.
    pub fn generate(ca_fingerprint: &str) -> Self {
        JoinToken {
            ca_fingerprint: Some(ca_fingerprint.to_string()),
            id: random_string(ID_LEN),
            secret: random_string(SECRET_LEN),
        }
    }

    /// Parses the long (`B10<fp>::<id>.<secret>`) or the short (`<id>.<secret>`) form.
    pub fn parse(text: &str) -> Result<Self, TokenFormatError> {
        let text = text.trim();
        let (fingerprint, credential) = match text.split_once("::") {
            Some((head, cred)) => {
                let fp = head
                    .strip_prefix(PREFIX)
                    .filter(|fp| fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or(TokenFormatError::Fingerprint)?;
                (Some(fp.to_ascii_lowercase()), cred)
            }
            None => (None, text),
        };
        let (id, secret) = parse_credential(credential).ok_or(TokenFormatError::Credential)?;
        Ok(JoinToken {
            ca_fingerprint: fingerprint,
            id,
            secret,
        })
    }

    /// The `<id>.<secret>` part, which the agent presents as its bearer token when joining.
    pub fn credential(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The SHA-256 of the secret (hex): what the server stores instead of the secret.
    pub fn secret_hash(&self) -> String {
        sha256_hex(&self.secret)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_fingerprint {
            Some(fp) => write!(f, "{PREFIX}{fp}::{}", self.credential()),
            None => f.write_str(&self.credential()),
        }
    }
}

/// Splits `<id>.<secret>`, checking both parts.
pub fn parse_credential(text: &str) -> Option<(String, String)> {
    let (id, secret) = text.split_once('.')?;
    (valid_part(id, ID_LEN) && valid_part(secret, SECRET_LEN))
        .then(|| (id.to_string(), secret.to_string()))
}

/// The SHA-256 of `text`, lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The CA fingerprint a token pins: the SHA-256 of the first certificate's DER in `ca_pem`.
pub fn ca_fingerprint(ca_pem: &str) -> Result<String, berth_tls::CertError> {
    berth_tls::sha256_fingerprint(ca_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn generated_tokens_round_trip_through_their_text() {
        let t = JoinToken::generate(FP);
        let text = t.to_string();
        assert!(text.starts_with(&format!("B10{FP}::")), "{text}");
        assert_eq!(JoinToken::parse(&text).unwrap(), t);
        assert_eq!(t.id.len(), 6);
        assert_eq!(t.secret.len(), 16);
        assert_ne!(JoinToken::generate(FP).secret, t.secret);
    }

    #[test]
    fn the_short_form_has_no_fingerprint() {
        let t = JoinToken::parse("abcdef.0123456789abcdef\n").unwrap();
        assert_eq!(t.ca_fingerprint, None);
        assert_eq!(t.credential(), "abcdef.0123456789abcdef");
        assert_eq!(t.to_string(), "abcdef.0123456789abcdef");
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_part_named() {
        let fp_err = Err(TokenFormatError::Fingerprint);
        assert_eq!(JoinToken::parse("K10abc::abcdef.0123456789abcdef"), fp_err);
        assert_eq!(JoinToken::parse("B10abc::abcdef.0123456789abcdef"), fp_err);
        let cred_err = Err(TokenFormatError::Credential);
        assert_eq!(JoinToken::parse(&format!("B10{FP}::abc.def")), cred_err);
        assert_eq!(
            JoinToken::parse("ABCDEF.0123456789abcdef"),
            cred_err,
            "upper case"
        );
        assert_eq!(JoinToken::parse("a-long-old-hex-token"), cred_err);
    }

    #[test]
    fn the_stored_hash_is_not_the_secret() {
        let t = JoinToken::generate(FP);
        assert_eq!(t.secret_hash().len(), 64);
        assert!(!t.secret_hash().contains(&t.secret));
        assert_eq!(t.secret_hash(), sha256_hex(&t.secret));
    }
}

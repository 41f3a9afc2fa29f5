//! Access control: who may pull and push, Basic credentials, and bearer tokens issued by the
//! registry's own token endpoint (the distribution token flow that docker, podman, skopeo and
//! containerd follow).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderMap;

use crate::storage::lock;

/// Lifetime of issued tokens, reported as `expires_in`.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// The `service` named in challenges and token requests.
pub const SERVICE: &str = "berth-registry";

/// Who must authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Anyone may pull and push.
    None,
    /// Anyone may pull; pushing and deleting need credentials.
    #[default]
    Push,
    /// Everything needs credentials.
    All,
}

/// An unknown `--registry-auth` value.
#[derive(Debug, thiserror::Error)]
#[error("unknown registry auth mode {0:?} (expected none, push or all)")]
pub struct UnknownAuthMode(String);

impl FromStr for AuthMode {
    type Err = UnknownAuthMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(AuthMode::None),
            "push" => Ok(AuthMode::Push),
            "all" => Ok(AuthMode::All),
            _ => Err(UnknownAuthMode(s.to_string())),
        }
    }
}

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read (GET/HEAD).
    Pull,
    /// Write or delete.
    Push,
}

/// What a caller has shown it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Grant {
    Nothing,
    Pull,
    PushAndPull,
}

/// The registry's user and password (`DIR/registry/credentials`, one `user:password` line).
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// Reads the credentials file, creating it (mode 0600, user `berth`, random password) on
    /// first start.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(s) => {
                let line = s.lines().next().unwrap_or("");
                let (user, password) = line.split_once(':').ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not `user:password`", path.display()),
                    )
                })?;
                Ok(Credentials {
                    user: user.to_string(),
                    password: password.to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(e),
        }
    }

    fn create(path: &Path) -> io::Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let creds = Credentials {
            user: "berth".to_string(),
            password: hex::encode(rand::random::<[u8; 24]>()),
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{}:{}", creds.user, creds.password)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        tracing::info!(path = %path.display(), "generated registry credentials");
        Ok(creds)
    }
}

/// Decides requests and issues tokens.
pub struct Auth {
    mode: AuthMode,
    creds: Credentials,
    tokens: Mutex<HashMap<String, (Grant, Instant)>>,
}

/// A successful token request.
#[derive(serde::Serialize)]
pub struct TokenResponse {
    /// The token (docker's field).
    pub token: String,
    /// The same token (OAuth2 field name).
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
}

impl Auth {
    /// Access control in `mode` with `creds` as the one account.
    pub fn new(mode: AuthMode, creds: Credentials) -> Self {
        Auth {
            mode,
            creds,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The account.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Whether a request with `headers` may do `access`.
    pub fn allows(&self, headers: &HeaderMap, access: Access) -> bool {
        let needed = match (self.mode, access) {
            (AuthMode::None, _) | (AuthMode::Push, Access::Pull) => return true,
            (_, Access::Pull) => Grant::Pull,
            (_, Access::Push) => Grant::PushAndPull,
        };
        self.grant_of(headers) >= needed
    }

    /// Whether the caller presented valid credentials or a valid token (for `GET /v2/`).
    pub fn authenticated(&self, headers: &HeaderMap) -> bool {
        self.grant_of(headers) > Grant::Nothing
    }

    fn grant_of(&self, headers: &HeaderMap) -> Grant {
        let Some(value) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Grant::Nothing;
        };
        if let Some(b) = value.strip_prefix("Basic ") {
            return if self.basic_ok(b) {
                Grant::PushAndPull
            } else {
                Grant::Nothing
            };
        }
        if let Some(t) = value.strip_prefix("Bearer ") {
            let mut tokens = lock(&self.tokens);
            let now = Instant::now();
            tokens.retain(|_, (_, exp)| *exp > now);
            return tokens
                .get(t.trim())
                .map(|(g, _)| *g)
                .unwrap_or(Grant::Nothing);
        }
        Grant::Nothing
    }

    fn basic_ok(&self, b64: &str) -> bool {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.creds.user, self.creds.password);
        constant_time_eq(&raw, expected.as_bytes())
    }

    /// Answers a token request: the account's credentials get push and pull; anonymous callers
    /// get pull unless the mode is `all`. `None` means the credentials were wrong (or missing
    /// where required).
    pub fn issue_token(&self, headers: &HeaderMap) -> Option<TokenResponse> {
        let has_auth = headers.contains_key(http::header::AUTHORIZATION);
        let grant = match self.grant_of(headers) {
            Grant::Nothing if has_auth => return None,
            Grant::Nothing if self.mode == AuthMode::All => return None,
            Grant::Nothing if self.mode == AuthMode::None => Grant::PushAndPull,
            Grant::Nothing => Grant::Pull,
            g => g,
        };
        let token = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        // Drop expired tokens here too, so anonymous token requests cannot grow the map forever.
        tokens.retain(|_, (_, exp)| *exp > now);
        tokens.insert(token.clone(), (grant, now + TOKEN_TTL));
        drop(tokens);
        Some(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: TOKEN_TTL.as_secs(),
            issued_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_issued_at_an_rfc3339_utc_second() {
        let creds = Credentials {
            user: "u".into(),
            password: "p".into(),
        };
        let auth = Auth::new(AuthMode::Push, creds);
        let t = auth
            .issue_token(&HeaderMap::new())
            .expect("anonymous pull token");
        assert_eq!(t.token.len(), 64);
        assert!(t.token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            t.token,
            auth.issue_token(&HeaderMap::new()).expect("t").token
        );
        assert_eq!(
            t.issued_at.len(),
            "2027-01-01T00:00:00Z".len(),
            "{}",
            t.issued_at
        );
        assert!(t.issued_at.ends_with('Z'));
        chrono::DateTime::parse_from_rfc3339(&t.issued_at).expect("RFC 3339");
    }
}

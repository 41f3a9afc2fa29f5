//! Registry credentials (explicit or from a docker `config.json`) and `WWW-Authenticate` parsing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, Result};

/// Username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "Credentials({})", self.username)
    }
}

impl Credentials {
    /// Parses `user:password` (the form of docker's `auth` field and the registry's credentials file).
    pub fn from_pair(s: &str) -> Option<Self> {
        let (u, p) = s.trim_end_matches(['\n', '\r']).split_once(':')?;
        Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }

    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where credentials come from.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// Explicit credentials per registry host (take precedence).
    pub explicit: BTreeMap<String, Credentials>,
    /// A docker config.json to consult for hosts without explicit credentials.
    pub docker_config: Option<PathBuf>,
}

impl AuthConfig {
    /// Consults `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub fn from_environment() -> Self {
        AuthConfig {
            explicit: BTreeMap::new(),
            docker_config: Some(docker_config_path()),
        }
    }

    /// The credentials for `registry`, if any.
    pub fn for_registry(&self, registry: &str) -> Option<Credentials> {
        if let Some(c) = self.explicit.get(registry) {
            return Some(c.clone());
        }
        let path = self.docker_config.as_ref()?;
        let cfg = DockerConfig::load(path).ok()?;
        cfg.get(registry)
    }
}

/// The default docker config path.
pub fn docker_config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".docker/config.json")
}

/// A docker `config.json`, kept as JSON so that fields berth doesn't know survive a rewrite.
#[derive(Debug, Default)]
pub struct DockerConfig {
    value: serde_json::Value,
}

impl DockerConfig {
    /// Loads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(b) => Ok(DockerConfig {
                value: serde_json::from_slice(&b)
                    .map_err(|e| Error::json(path.display().to_string(), e))?,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig {
                value: serde_json::json!({}),
            }),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Credentials stored for `registry` (`auth` base64 or `username`/`password`).
    pub fn get(&self, registry: &str) -> Option<Credentials> {
        let auths = self.value.get("auths")?.as_object()?;
        let entry = auths
            .iter()
            .find(|(k, _)| host_of(k) == registry)
            .map(|(_, v)| v)?;
        if let Some(a) = entry
            .get("auth")
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty())
        {
            let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
            return Credentials::from_pair(&String::from_utf8(raw).ok()?);
        }
        let u = entry.get("username")?.as_str()?;
        let p = entry.get("password")?.as_str()?;
        Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }

    /// Sets credentials for `registry`.
    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        if !self.value.is_object() {
            self.value = serde_json::json!({});
        }
        let raw = format!("{}:{}", creds.username, creds.password);
        let auth = base64::engine::general_purpose::STANDARD.encode(raw);
        self.value["auths"][registry] = serde_json::json!({ "auth": auth });
    }

    /// Writes the file (mode 0600, via a temp file and rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let bytes =
            serde_json::to_vec_pretty(&self.value).map_err(|e| Error::json("docker config", e))?;
        berth_fs::write_atomic_private(path, &bytes).map_err(|e| Error::io("write", path, e))
    }
}

/// Docker writes some keys as URLs (`https://index.docker.io/v1/`); compare hosts only.
fn host_of(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`: send credentials directly.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: get a token from the realm.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses a header value; `None` for unknown schemes or a Bearer without realm.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// Parses `k="v", k2=v2` where quoted values may contain commas (scopes do).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas_in_scope() {
        let h = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#;
        assert_eq!(
            Challenge::parse(h),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(
            Challenge::parse("bearer realm=http://127.0.0.1:1/token"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: None,
                scope: None
            })
        );
    }

    #[test]
    fn docker_config_round_trip_and_auth_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"auths":{"https://reg.example:5000/v1/":{"auth":"dXNlcjpwYTpzcw=="}},"credsStore":"x"}"#).unwrap();
        let mut cfg = DockerConfig::load(&p).unwrap();
        assert_eq!(
            cfg.get("reg.example:5000"),
            Some(Credentials {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        cfg.set(
            "127.0.0.1:9",
            &Credentials {
                username: "a".into(),
                password: "b".into(),
            },
        );
        cfg.save(&p).unwrap();
        let again = DockerConfig::load(&p).unwrap();
        assert_eq!(again.get("127.0.0.1:9").unwrap().password, "b");
        assert!(std::fs::read_to_string(&p).unwrap().contains("credsStore"));
        let auth = AuthConfig {
            explicit: BTreeMap::new(),
            docker_config: Some(p),
        };
        assert_eq!(auth.for_registry("127.0.0.1:9").unwrap().username, "a");
        assert!(auth.for_registry("other").is_none());
    }
}

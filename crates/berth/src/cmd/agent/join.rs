//! Joining a server: the agent's credentials under its data dir, made once from a join token.
//!
//! With `--server URL --token TOKEN` and nothing saved yet, the agent
//! 1. settles the CA: `--certificate-authority FILE` if given, else `GET /cacerts` (the only
//!    request ever made without verifying the server; it sends nothing secret); either way the
//!    CA's SHA-256 must equal the fingerprint the token carries, and a token without one needs
//!    `--certificate-authority`;
//! 2. posts `{"nodeName"}` to `/v1-berth/join` with the token, over TLS verified against that CA
//!    only (no system roots);
//! 3. writes `ca.crt`, `kubeconfig.yaml` (its node credential) and `endpoint-token` (what the API
//!    server will present to its node endpoint) into its data dir, private, and uses them from
//!    then on: a restart needs neither `--token` nor the join token to be still valid.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_apiserver::jointoken::{JoinToken, ca_fingerprint};
use serde_json::{Value, json};

/// The files a joined agent keeps in its data dir.
pub struct Saved {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// The kubeconfig with the node credential.
    pub kubeconfig: PathBuf,
    /// The token the API server presents to this node's endpoint.
    pub endpoint_token: PathBuf,
}

impl Saved {
    /// The files under `data_dir`.
    pub fn under(data_dir: &Path) -> Self {
        Saved {
            ca: data_dir.join("ca.crt"),
            kubeconfig: data_dir.join("kubeconfig.yaml"),
            endpoint_token: data_dir.join("endpoint-token"),
        }
    }

    /// Whether a join has left its credentials here.
    pub fn exist(&self) -> bool {
        self.kubeconfig.exists() && self.endpoint_token.exists()
    }

    /// The saved endpoint token.
    pub fn read_endpoint_token(&self) -> anyhow::Result<String> {
        let t = std::fs::read_to_string(&self.endpoint_token)
            .with_context(|| format!("reading {}", self.endpoint_token.display()))?;
        Ok(t.trim().to_string())
    }
}

/// What joining needs.
pub struct Request<'a> {
    /// `https://HOST:PORT`.
    pub server: &'a str,
    /// The join token's text.
    pub token: &'a str,
    /// `--certificate-authority`.
    pub ca_file: Option<&'a Path>,
    /// This node's name.
    pub node_name: &'a str,
}

/// Joins and saves the credentials in `saved`.
pub async fn join(req: &Request<'_>, saved: &Saved) -> anyhow::Result<()> {
    let token = JoinToken::parse(req.token).context("reading --token")?;
    let ca_pem = settle_ca(req, &token).await?;
    let answer = post_join(req, &token, &ca_pem).await?;
    let field = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("the join answer has no {k}"))
    };
    let (credential, endpoint_token) = (field("token")?, field("endpointToken")?);
    let user = format!("system:node:{}", req.node_name);
    let kubeconfig =
        berth_apiserver::kubeconfig::render_for(&user, req.server, &ca_pem, &credential);
    write(&saved.ca, &ca_pem)?;
    write(&saved.endpoint_token, &format!("{endpoint_token}\n"))?;
    // Written last: its presence (with the endpoint token) marks the join as complete.
    write(&saved.kubeconfig, &kubeconfig)?;
    eprintln!(
        "berth agent: joined {} as node {}; credentials in {}",
        req.server,
        req.node_name,
        saved.kubeconfig.display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    berth_fs::write_atomic_private(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The CA certificate to trust, checked against the token's fingerprint.
async fn settle_ca(req: &Request<'_>, token: &JoinToken) -> anyhow::Result<String> {
    let ca_pem = match (req.ca_file, &token.ca_fingerprint) {
        (Some(file), _) => std::fs::read_to_string(file)
            .with_context(|| format!("reading --certificate-authority {}", file.display()))?,
        (None, Some(_)) => fetch_ca(req.server).await?,
        (None, None) => bail!(
            "the join token carries no CA fingerprint (B10<sha256>::...): pass --certificate-authority, \
             the agent never talks to a server it cannot verify"
        ),
    };
    let actual = ca_fingerprint(&ca_pem).context("reading the CA certificate")?;
    if let Some(pinned) = token.ca_fingerprint.as_ref().filter(|p| **p != actual) {
        bail!(
            "the server's CA certificate has SHA-256 {actual}, but the join token pins {pinned}: \
             refusing to join (wrong token, or not the server it was made for)"
        );
    }
    Ok(ca_pem)
}

/// `GET /cacerts` without verifying the server: what it answers is checked against the token.
async fn fetch_ca(server: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .build()
        .context("building the HTTPS client")?;
    let url = format!("{}/cacerts", server.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("fetching the CA certificate from {url}"))?;
    if !resp.status().is_success() {
        bail!("fetching {url}: {}", resp.status());
    }
    resp.text().await.context("reading the CA certificate")
}

/// `POST /v1-berth/join` over TLS verified against `ca_pem` alone.
async fn post_join(req: &Request<'_>, token: &JoinToken, ca_pem: &str) -> anyhow::Result<Value> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("reading the CA")?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .context("building the HTTPS client")?;
    let url = format!("{}/v1-berth/join", req.server.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .bearer_auth(token.credential())
        .json(&json!({"nodeName": req.node_name}))
        .send()
        .await
        .with_context(|| format!("joining at {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        bail!("the server refused to join this node ({status}): {message}");
    }
    Ok(body)
}

//! `berth token create|list|delete`: join tokens beside the default one (`DIR/server/node-token`),
//! kept by the API server as Secrets `kube-system/bootstrap-token-<id>` (see
//! `berth_apiserver::tokenstore`). Like `kubeadm token`, the CLI writes those Secrets itself
//! through the API with the admin kubeconfig; only the secret's hash is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use berth_apiserver::jointoken::{JoinToken, ca_fingerprint};
use berth_apiserver::tokenstore::{self, KEY_DESCRIPTION, KEY_EXPIRATION, KEY_ID};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::client::connect::ConnArgs;

/// Arguments of `berth token`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The subcommands.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print it (`B10<ca-sha256>::<id>.<secret>`).
    Create {
        /// How long it stays valid (`24h`, `30m`, `90s`; `0` for ever).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// What it is for (shown by `list`).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List join tokens: id, time left, expiry, description (never their secrets).
    List,
    /// Delete join tokens by id (agents that joined with them keep their credentials).
    Delete {
        /// Token ids (the 6 characters before the dot).
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Runs `berth token`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(token(args))?
}

async fn token(args: Args) -> anyhow::Result<()> {
    let conn = args.conn.connect().await?;
    let api: Api<Secret> = Api::namespaced(conn.client.clone(), "kube-system");
    match args.command {
        TokenCommand::Create { ttl, description } => {
            let token = create(&conn.client, &api, ttl, &description).await?;
            println!("{token}");
        }
        TokenCommand::List => list(&api).await?,
        TokenCommand::Delete { ids } => {
            for id in ids {
                api.delete(&tokenstore::secret_name(&id), &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting join token {id}"))?;
                println!("join token {id} deleted");
            }
        }
    }
    Ok(())
}

async fn create(
    client: &kube::Client,
    api: &Api<Secret>,
    ttl: Duration,
    description: &str,
) -> anyhow::Result<JoinToken> {
    // Fetched over the admin kubeconfig's verified connection, so it is the server's real CA.
    let request = http::Request::get("/cacerts")
        .body(Vec::new())
        .context("building the request")?;
    let ca_pem = client
        .request_text(request)
        .await
        .context("fetching the server's CA certificate")?;
    let token = JoinToken::generate(&ca_fingerprint(&ca_pem).context("reading the CA")?);
    let mut data = BTreeMap::from([
        (KEY_ID, token.id.clone()),
        (tokenstore::KEY_SECRET_HASH, token.secret_hash()),
        (KEY_DESCRIPTION, description.to_string()),
        ("usage-bootstrap-authentication", "true".to_string()),
    ]);
    if !ttl.is_zero() {
        let ttl = chrono::Duration::from_std(ttl).context("--ttl is too long")?;
        let expiry = chrono::Utc::now() + ttl;
        data.insert(
            KEY_EXPIRATION,
            expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(tokenstore::secret_name(&token.id)),
            ..Default::default()
        },
        type_: Some(tokenstore::SECRET_TYPE.into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    api.create(&PostParams::default(), &secret)
        .await
        .context("storing the join token")?;
    Ok(token)
}

async fn list(api: &Api<Secret>) -> anyhow::Result<()> {
    let secrets = api
        .list(&ListParams::default())
        .await
        .context("listing join tokens")?;
    println!("{:<8} {:<10} {:<22} DESCRIPTION", "ID", "TTL", "EXPIRES");
    for s in secrets
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(tokenstore::SECRET_TYPE))
    {
        let field = |k: &str| {
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        };
        let id = field(KEY_ID).unwrap_or_default();
        let expiry = field(KEY_EXPIRATION);
        let ttl = match &expiry {
            None => "<forever>".to_string(),
            Some(e) => time_left(e),
        };
        let description = field(KEY_DESCRIPTION).unwrap_or_default();
        let expires = expiry.unwrap_or_else(|| "<never>".into());
        println!("{id:<8} {ttl:<10} {expires:<22} {description}");
    }
    Ok(())
}

/// What is left of a token's life: `23h`, `12m`, `40s`, or `<expired>`.
fn time_left(expiry: &str) -> String {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(expiry) else {
        return "<invalid>".into();
    };
    let left = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    match left.num_seconds() {
        s if s <= 0 => "<expired>".into(),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses `24h`, `30m`, `90s`, `2d` or a plain number of seconds: the flags' durations plus days.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    match s.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .map(|n| Duration::from_secs(n.saturating_mul(86_400)))
            .map_err(|_| format!("{s:?} is not a duration like 24h, 30m or 90s")),
        None => berth_api::duration::parse(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_a_unit() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn time_left_counts_down_to_expired() {
        assert_eq!(time_left("2000-01-01T00:00:00Z"), "<expired>");
        let later = (chrono::Utc::now() + chrono::Duration::seconds(7300)).to_rfc3339();
        assert_eq!(time_left(&later), "2h");
        assert_eq!(time_left("nope"), "<invalid>");
    }
}

//! The distribution client: pulls images into a [`ContentStore`] and pushes them from one.
//!
//! Loopback registries (`localhost`, `127.*`, `::1`) and hosts in `insecure` are spoken to over
//! plain HTTP, everything else over HTTPS (rustls). Authentication follows the registry's
//! `WWW-Authenticate` challenge: Basic sends the credentials, Bearer fetches a token from the
//! realm (with the credentials, if any) for the repository scope and caches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::auth::{AuthConfig, Challenge};
use crate::error::{Error, Result};
use crate::store::ContentStore;
use berth_oci::Reference;
use berth_oci::digest::Digest;
use berth_oci::manifest::{self, Descriptor, Document, Manifest};
use berth_oci::media;

/// Progress of one blob transfer.
#[derive(Clone, Debug)]
pub struct ProgressEvent {
    /// The blob.
    pub digest: Digest,
    /// Bytes transferred so far.
    pub done: u64,
    /// Total bytes.
    pub total: u64,
    /// Whether the blob was already present (skipped, mounted or cached).
    pub skipped: bool,
}

/// A progress callback, called from transfer tasks.
pub type Progress = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// The result of [`RegistryClient::pull_image`]; everything it names is in the content store.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// Digest of the platform image manifest.
    pub manifest_digest: Digest,
    /// Digest of the index the manifest was selected from, if the reference named an index.
    pub index_digest: Option<Digest>,
    /// The image manifest.
    pub manifest: Manifest,
    /// Digest of the config blob.
    pub config_digest: Digest,
    /// The decoded image config.
    pub config: oci_spec::image::ImageConfiguration,
    /// Layer descriptors, base first.
    pub layers: Vec<Descriptor>,
}

/// Client options.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Where credentials come from.
    pub auth: AuthConfig,
    /// Registries spoken to over plain HTTP although not on loopback.
    pub insecure: Vec<String>,
    /// Upload blobs in chunks of this size (PATCH) instead of one monolithic PUT.
    pub chunk_size: Option<u64>,
}

/// How to authenticate to one registry, learnt from its challenge.
#[derive(Clone, Debug)]
enum AuthState {
    Basic(String),
    Bearer {
        scope_tokens: HashMap<String, String>,
    },
}

/// An OCI distribution client.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    opts: ClientOptions,
    auth: Arc<Mutex<HashMap<String, AuthState>>>,
}

impl RegistryClient {
    /// Creates a client.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http {
                url: String::new(),
                source: e,
            })?;
        Ok(RegistryClient {
            http,
            opts,
            auth: Arc::default(),
        })
    }

    /// `http` or `https` for a registry host.
    pub fn scheme(&self, registry: &str) -> &'static str {
        let host = registry
            .rsplit_once(':')
            .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(registry, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.starts_with("127.") || host == "::1";
        if loopback
            || self
                .opts
                .insecure
                .iter()
                .any(|i| i == registry || i == host)
        {
            "http"
        } else {
            "https"
        }
    }

    fn url(&self, r: &Reference, tail: &str) -> String {
        format!(
            "{}://{}/v2/{}/{}",
            self.scheme(r.registry()),
            r.registry(),
            r.repository(),
            tail
        )
    }

    /// Sends a request built by `build`, answering an auth challenge once if needed.
    async fn send(
        &self,
        r: &Reference,
        push: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let scope = format!(
            "repository:{}:{}",
            r.repository(),
            if push { "pull,push" } else { "pull" }
        );
        let resp = self
            .with_auth(r.registry(), &scope, build())
            .send()
            .await
            .map_err(http_err)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let header = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let challenge = header
            .as_deref()
            .and_then(Challenge::parse)
            .ok_or_else(|| Error::Auth {
                registry: r.registry().to_string(),
                reason: format!("401 with unusable challenge {header:?}"),
            })?;
        self.authenticate(r.registry(), &scope, challenge).await?;
        self.with_auth(r.registry(), &scope, build())
            .send()
            .await
            .map_err(http_err)
    }

    fn with_auth(&self, registry: &str, scope: &str, req: RequestBuilder) -> RequestBuilder {
        let auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        match auth.get(registry) {
            Some(AuthState::Basic(h)) => req.header(reqwest::header::AUTHORIZATION, h),
            Some(AuthState::Bearer { scope_tokens }) => match scope_tokens.get(scope) {
                Some(t) => req.bearer_auth(t),
                None => req,
            },
            None => req,
        }
    }

    async fn authenticate(&self, registry: &str, scope: &str, challenge: Challenge) -> Result<()> {
        let creds = self.opts.auth.for_registry(registry);
        let state = match challenge {
            Challenge::Basic => {
                let c = creds.ok_or_else(|| Error::Auth {
                    registry: registry.into(),
                    reason: "credentials required (berth login)".into(),
                })?;
                AuthState::Basic(c.basic_header())
            }
            Challenge::Bearer { realm, service, .. } => {
                let mut req = self.http.get(&realm).query(&[("scope", scope)]);
                if let Some(s) = &service {
                    req = req.query(&[("service", s)]);
                }
                if let Some(c) = &creds {
                    req = req.header(reqwest::header::AUTHORIZATION, c.basic_header());
                }
                let resp = req.send().await.map_err(http_err)?;
                if !resp.status().is_success() {
                    return Err(Error::Auth {
                        registry: registry.into(),
                        reason: format!("token endpoint {realm} answered {}", resp.status()),
                    });
                }
                let body: serde_json::Value = resp.json().await.map_err(http_err)?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| Error::Auth {
                        registry: registry.into(),
                        reason: "token response has no token".into(),
                    })?;
                let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
                let mut scope_tokens = match auth.remove(registry) {
                    Some(AuthState::Bearer { scope_tokens }) => scope_tokens,
                    _ => HashMap::new(),
                };
                scope_tokens.insert(scope.to_string(), token.to_string());
                auth.insert(registry.to_string(), AuthState::Bearer { scope_tokens });
                return Ok(());
            }
        };
        self.auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_string(), state);
        Ok(())
    }

    /// Checks that `registry` accepts the configured credentials (`GET /v2/`, answering its
    /// challenge with them), as `docker login` does.
    pub async fn login_check(&self, registry: &str) -> Result<()> {
        let url = format!("{}://{}/v2/", self.scheme(registry), registry);
        let resp = self.http.get(&url).send().await.map_err(http_err)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            check(resp, "GET", &url).await?;
            return Ok(());
        }
        let creds = self
            .opts
            .auth
            .for_registry(registry)
            .ok_or_else(|| Error::Auth {
                registry: registry.into(),
                reason: "no credentials".into(),
            })?;
        let header = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let auth = match header.as_deref().and_then(Challenge::parse) {
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut req = self
                    .http
                    .get(&realm)
                    .header(reqwest::header::AUTHORIZATION, creds.basic_header());
                if let Some(s) = &service {
                    req = req.query(&[("service", s)]);
                }
                let resp = req.send().await.map_err(http_err)?;
                if !resp.status().is_success() {
                    return Err(Error::Auth {
                        registry: registry.into(),
                        reason: format!("token endpoint answered {}", resp.status()),
                    });
                }
                let body: serde_json::Value = resp.json().await.map_err(http_err)?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                format!("Bearer {token}")
            }
            _ => creds.basic_header(),
        };
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Auth {
                registry: registry.into(),
                reason: "credentials rejected".into(),
            });
        }
        check(resp, "GET", &url).await.map(|_| ())
    }

    /// Fetches a manifest or index: (bytes, digest, content type).
    pub async fn fetch_manifest(
        &self,
        r: &Reference,
        object: &str,
    ) -> Result<(Vec<u8>, Digest, Option<String>)> {
        let url = self.url(r, &format!("manifests/{object}"));
        let resp = self
            .send(r, false, || {
                self.http
                    .get(&url)
                    .header(reqwest::header::ACCEPT, media::ACCEPT_ALL)
            })
            .await?;
        let resp = check(resp, "GET", &url).await?;
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(http_err)?.to_vec();
        let digest = Digest::of(&bytes);
        if let Ok(want) = Digest::parse(object)
            && want != digest
        {
            return Err(Error::DigestMismatch {
                expected: want.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok((bytes, digest, ct))
    }

    /// Pulls an image (resolving an index to this host's linux platform) into `store`.
    pub async fn pull_image(
        &self,
        r: &Reference,
        store: &ContentStore,
        progress: Option<Progress>,
    ) -> Result<PulledImage> {
        let (bytes, digest, ct) = self.fetch_manifest(r, &r.object()).await?;
        let (bytes, digest, index_digest) = match Document::parse(&bytes, ct.as_deref())? {
            Document::Manifest(_) => (bytes, digest, None),
            Document::Index(idx) => {
                store.write_bytes(&bytes)?;
                let child = idx.select("linux", manifest::host_arch())?;
                let (b, d, _) = self.fetch_manifest(r, &child.digest.to_string()).await?;
                (b, d, Some(digest))
            }
        };
        let Document::Manifest(m) = Document::parse(&bytes, None)? else {
            return Err(Error::Manifest("an index points at another index".into()));
        };
        self.fetch_blob(r, &m.config, store, None).await?;
        futures::stream::iter(
            m.layers
                .iter()
                .map(|l| self.fetch_blob(r, l, store, progress.clone())),
        )
        .buffer_unordered(3)
        .try_collect::<Vec<()>>()
        .await?;
        store.write_bytes(&bytes)?;
        let config_bytes = store.read(&m.config.digest)?;
        let config =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::json("image config", e))?;
        Ok(PulledImage {
            manifest_digest: digest,
            index_digest,
            config_digest: m.config.digest.clone(),
            layers: m.layers.clone(),
            manifest: m,
            config,
        })
    }

    /// Streams one blob into the store (skipping it if present), verifying its digest.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        store: &ContentStore,
        progress: Option<Progress>,
    ) -> Result<()> {
        let _guard = store.lock(&d.digest).await;
        let report = |done, skipped| {
            if let Some(p) = &progress {
                p(ProgressEvent {
                    digest: d.digest.clone(),
                    done,
                    total: d.size,
                    skipped,
                });
            }
        };
        if store.exists(&d.digest) {
            report(d.size, true);
            return Ok(());
        }
        let url = self.url(r, &format!("blobs/{}", d.digest));
        let resp = check(
            self.send(r, false, || self.http.get(&url)).await?,
            "GET",
            &url,
        )
        .await?;
        let mut w = store.writer(Some(d.digest.clone())).await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            w.write(&chunk.map_err(http_err)?).await?;
            report(w.size(), false);
        }
        w.commit().await?;
        Ok(())
    }

    /// Pushes the image whose manifest `manifest_digest` is in `store` to `r` (tag or digest).
    pub async fn push_image(
        &self,
        r: &Reference,
        store: &ContentStore,
        manifest_digest: &Digest,
        mount_from: Option<&str>,
        progress: Option<Progress>,
    ) -> Result<Digest> {
        let bytes = store.read(manifest_digest)?;
        let Document::Manifest(m) = Document::parse(&bytes, None)? else {
            return Err(Error::Manifest("pushing indexes is not supported".into()));
        };
        let blobs: Vec<&Descriptor> = std::iter::once(&m.config).chain(m.layers.iter()).collect();
        futures::stream::iter(
            blobs
                .into_iter()
                .map(|d| self.push_blob(r, d, store, mount_from, progress.clone())),
        )
        .buffer_unordered(3)
        .try_collect::<Vec<()>>()
        .await?;
        let media = m
            .media_type
            .clone()
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        let url = self.url(r, &format!("manifests/{}", r.object()));
        let resp = self
            .send(r, true, || {
                self.http
                    .put(&url)
                    .header(reqwest::header::CONTENT_TYPE, &media)
                    .body(bytes.clone())
            })
            .await?;
        check(resp, "PUT", &url).await?;
        Ok(manifest_digest.clone())
    }

    /// Uploads one blob unless the registry has it (HEAD) or can mount it from `mount_from`.
    async fn push_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        store: &ContentStore,
        mount_from: Option<&str>,
        progress: Option<Progress>,
    ) -> Result<()> {
        let report = |done, skipped| {
            if let Some(p) = &progress {
                p(ProgressEvent {
                    digest: d.digest.clone(),
                    done,
                    total: d.size,
                    skipped,
                });
            }
        };
        let head_url = self.url(r, &format!("blobs/{}", d.digest));
        let head = self.send(r, true, || self.http.head(&head_url)).await?;
        if head.status().is_success() {
            report(d.size, true);
            return Ok(());
        }
        let start_url = self.url(r, "blobs/uploads/");
        let mount_query: Vec<(&str, String)> = match mount_from {
            Some(from) if from != r.repository() => {
                vec![("mount", d.digest.to_string()), ("from", from.to_string())]
            }
            _ => vec![],
        };
        let resp = self
            .send(r, true, || self.http.post(&start_url).query(&mount_query))
            .await?;
        if resp.status() == StatusCode::CREATED {
            report(d.size, true);
            return Ok(());
        }
        let resp = check(resp, "POST", &start_url).await?;
        let mut location = self.location(r, &resp, &start_url)?;
        let scope = format!("repository:{}:pull,push", r.repository());
        if let Some(chunk) = self.opts.chunk_size.filter(|c| *c > 0 && *c < d.size) {
            location = self
                .upload_chunks(r, d, store, &location, chunk, &scope, &report)
                .await?;
            let url = with_digest(&location, &d.digest);
            let resp = self
                .with_auth(
                    r.registry(),
                    &scope,
                    self.http
                        .put(&url)
                        .header(reqwest::header::CONTENT_LENGTH, 0),
                )
                .send()
                .await
                .map_err(http_err)?;
            check(resp, "PUT", &url).await?;
            return Ok(());
        }
        let file = store.open_blob(&d.digest).await?;
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p2, dg, total) = (progress.clone(), d.digest.clone(), d.size);
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect_ok(move |b| {
                let done = counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed)
                    + b.len() as u64;
                if let Some(p) = &p2 {
                    p(ProgressEvent {
                        digest: dg.clone(),
                        done,
                        total,
                        skipped: false,
                    });
                }
            });
        let url = with_digest(&location, &d.digest);
        let req = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, d.size)
            .body(reqwest::Body::wrap_stream(stream));
        let resp = self
            .with_auth(r.registry(), &scope, req)
            .send()
            .await
            .map_err(http_err)?;
        check(resp, "PUT", &url).await?;
        Ok(())
    }

    /// Sends the blob in PATCH chunks; returns the final upload location.
    #[allow(clippy::too_many_arguments)]
    async fn upload_chunks(
        &self,
        r: &Reference,
        d: &Descriptor,
        store: &ContentStore,
        location: &str,
        chunk: u64,
        scope: &str,
        report: &(dyn Fn(u64, bool) + Sync),
    ) -> Result<String> {
        use tokio::io::AsyncReadExt as _;
        let mut file = store.open_blob(&d.digest).await?;
        let mut location = location.to_string();
        let mut offset = 0u64;
        while offset < d.size {
            let n = chunk.min(d.size - offset);
            let mut buf = vec![0u8; n as usize];
            file.read_exact(&mut buf)
                .await
                .map_err(|e| Error::io("read", store.path(&d.digest), e))?;
            let req = self
                .http
                .patch(&location)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(
                    reqwest::header::CONTENT_RANGE,
                    format!("{}-{}", offset, offset + n - 1),
                )
                .body(buf);
            let resp = self
                .with_auth(r.registry(), scope, req)
                .send()
                .await
                .map_err(http_err)?;
            let resp = check(resp, "PATCH", &location).await?;
            location = self.location(r, &resp, &location)?;
            offset += n;
            report(offset, false);
        }
        Ok(location)
    }

    /// The absolute upload URL from a `Location` header (which may be relative).
    fn location(&self, r: &Reference, resp: &Response, base: &str) -> Result<String> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| Error::Registry {
                method: "POST".into(),
                url: base.into(),
                status: resp.status().as_u16(),
                body: "no Location header".into(),
            })?;
        if loc.starts_with("http://") || loc.starts_with("https://") {
            Ok(loc.to_string())
        } else {
            Ok(format!(
                "{}://{}{}",
                self.scheme(r.registry()),
                r.registry(),
                loc
            ))
        }
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn http_err(e: reqwest::Error) -> Error {
    Error::Http {
        url: e.url().map(|u| u.to_string()).unwrap_or_default(),
        source: e,
    }
}

/// Turns a non-success response into [`Error::Registry`] with the start of its body.
async fn check(resp: Response, method: &str, url: &str) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let mut body = resp.text().await.unwrap_or_default();
    body.truncate(500);
    Err(Error::Registry {
        method: method.into(),
        url: url.into(),
        status,
        body,
    })
}

//! A registry served on 127.0.0.1:0 from a temp dir, and small push helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use berth_oci::digest::{Algorithm, Digest};
use berth_registry::{AuthMode, Config, Registry};

pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub client: reqwest::Client,
    pub user: String,
    pub password: String,
}

pub async fn start(auth: AuthMode) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(dir.path(), Config { auth, tls: false }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let creds = reg.credentials();
    tokio::spawn(async move { reg.serve(listener).await });
    TestRegistry {
        dir,
        base,
        client: reqwest::Client::new(),
        user: creds.user,
        password: creds.password,
    }
}

pub fn sha256(b: &[u8]) -> Digest {
    Digest::of_with(Algorithm::Sha256, b)
}

impl TestRegistry {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resolves a (possibly relative) Location against the registry.
    pub fn location(&self, resp: &reqwest::Response) -> String {
        let loc = resp.headers()["location"].to_str().unwrap();
        if loc.starts_with("http") {
            loc.to_string()
        } else {
            self.url(loc)
        }
    }

    /// Monolithic POST ?digest= upload.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = sha256(data);
        let r = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes config + one layer and an OCI manifest naming them under `tag`; returns
    /// (manifest bytes, manifest digest, layer digest).
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
    ) -> (Vec<u8>, Digest, Digest) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let cd = self.push_blob(repo, config).await;
        let ld = self.push_blob(repo, layer).await;
        let m = image_manifest(&cd, config.len(), &ld, layer.len(), None);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let md = sha256(&m);
        (m, md, ld)
    }

    pub fn storage_root(&self) -> PathBuf {
        self.dir.path().join("registry")
    }

    /// Every file (path and content) of the registry's storage, except staging and the lock:
    /// what a rejected request must leave unchanged.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        walk(&self.storage_root(), &mut out);
        out.retain(|(p, _)| {
            let rel = p.strip_prefix(self.storage_root()).unwrap();
            !rel.starts_with("uploads") && rel != Path::new("lock")
        });
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        } else {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn image_manifest(
    cd: &Digest,
    csize: usize,
    ld: &Digest,
    lsize: usize,
    extra: Option<(&str, &str)>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": lsize}]
    });
    if let Some((k, v)) = extra {
        m[k] = serde_json::from_str(v).unwrap();
    }
    serde_json::to_vec(&m).unwrap()
}

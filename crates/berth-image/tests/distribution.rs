//! The distribution client against Debian's `docker-registry` (started per test on a free
//! loopback port with storage in a temp dir): monolithic and chunked pushes, pulls with
//! progress, index resolution to linux/amd64, and OCI layout export/import read by skopeo.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::{ClientOptions, ContentStore, LocalImages, Reference, RegistryClient};
use berth_oci::manifest::{Descriptor, Index, Platform};
use berth_oci::media;

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(&cfg, format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", storage.display())).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local store holding a synthetic 2-layer image tagged `t/img:1`.
async fn source(dir: &Path) -> (LocalImages, berth_image::Digest, u64) {
    let images = LocalImages::open(dir.join("images")).unwrap();
    let d = berth_testkit::synthetic::random_image(images.content(), 2, 3_000_000, 7)
        .await
        .unwrap();
    let size = images
        .manifest(&d)
        .unwrap()
        .layers
        .iter()
        .map(|l| l.size)
        .sum();
    (images, d, size)
}

fn client(chunk: Option<u64>) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        chunk_size: chunk,
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn monolithic_and_chunked_pushes_pull_back_identically() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (images, digest, size) = source(tmp.path()).await;
    for (repo, chunk) in [("mono/img:1", None), ("chunked/img:1", Some(1_000_000))] {
        let r = Reference::parse(&format!("{}/{repo}", reg.host())).unwrap();
        client(chunk)
            .push_image(&r, images.content(), &digest, None, None)
            .await
            .unwrap();
        let dst = ContentStore::open(tmp.path().join(repo.replace(['/', ':'], "_"))).unwrap();
        let seen = Arc::new(Mutex::new(0u64));
        let s2 = seen.clone();
        let progress: berth_image::Progress = Arc::new(move |ev| {
            if ev.done == ev.total {
                *s2.lock().unwrap() += ev.total;
            }
        });
        let pulled = client(None)
            .pull_image(&r, &dst, Some(progress))
            .await
            .unwrap();
        assert_eq!(pulled.manifest_digest, digest);
        assert_eq!(pulled.layers.len(), 2);
        for l in &pulled.layers {
            assert_eq!(
                dst.read(&l.digest).unwrap(),
                images.content().read(&l.digest).unwrap()
            );
        }
        assert_eq!(*seen.lock().unwrap(), size);
    }
    // A second push of the same image skips every blob (HEAD finds them).
    let r = Reference::parse(&format!("{}/mono/img:2", reg.host())).unwrap();
    let skipped = Arc::new(Mutex::new(0));
    let s2 = skipped.clone();
    let progress: berth_image::Progress = Arc::new(move |ev| {
        if ev.skipped {
            *s2.lock().unwrap() += 1;
        }
    });
    client(None)
        .push_image(&r, images.content(), &digest, None, Some(progress))
        .await
        .unwrap();
    assert_eq!(*skipped.lock().unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_resolves_to_the_linux_amd64_manifest() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (images, digest, _) = source(tmp.path()).await;
    let c = client(None);
    let by_digest = Reference::parse(&format!("{}/multi/img@{digest}", reg.host())).unwrap();
    c.push_image(&by_digest, images.content(), &digest, None, None)
        .await
        .unwrap();
    let mbytes = images.content().read(&digest).unwrap();
    let entry = |arch: &str, attest: bool| Descriptor {
        media_type: media::OCI_MANIFEST.into(),
        digest: digest.clone(),
        size: mbytes.len() as u64,
        platform: Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: None,
        }),
        annotations: if attest {
            [(
                "vnd.docker.reference.type".to_string(),
                "attestation-manifest".to_string(),
            )]
            .into()
        } else {
            Default::default()
        },
    };
    // The only amd64 entry that is not an attestation is the last one.
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: vec![
            entry("arm64", false),
            entry("amd64", true),
            entry("amd64", false),
        ],
        annotations: Default::default(),
    };
    let ibytes = serde_json::to_vec(&index).unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .put(format!(
            "http://{}/v2/multi/img/manifests/multi",
            reg.host()
        ))
        .header("Content-Type", media::OCI_INDEX)
        .body(ibytes.clone())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let dst = ContentStore::open(tmp.path().join("dst")).unwrap();
    let r = Reference::parse(&format!("{}/multi/img:multi", reg.host())).unwrap();
    let pulled = c.pull_image(&r, &dst, None).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.index_digest, Some(berth_image::Digest::of(&ibytes)));
}

#[tokio::test(flavor = "multi_thread")]
async fn layout_export_is_readable_by_skopeo_and_imports_back() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (images, digest, _) = source(tmp.path()).await;
    let layout = tmp.path().join("layout");
    berth_image::layout::export(images.content(), &digest, &layout, "v1").unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/from/layout:v1", reg.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Reference::parse(&format!("{}/from/layout:v1", reg.host())).unwrap();
    let (_, remote, _) = client(None).fetch_manifest(&r, "v1").await.unwrap();
    assert_eq!(remote, digest);
    let back = ContentStore::open(tmp.path().join("back")).unwrap();
    assert_eq!(
        berth_image::layout::import(&layout, Some("v1"), &back)
            .await
            .unwrap(),
        digest
    );
    assert_eq!(back.list().unwrap().len(), 4);
    assert!(
        berth_image::layout::import(&layout, Some("nope"), &back)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_archives_save_for_skopeo_and_load_from_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, digest, _) = source(tmp.path()).await;
    let saved = tmp.path().join("saved.tar");
    berth_image::archive::save(images.content(), &digest, &["t/img:1".to_string()], &saved)
        .unwrap();
    // skopeo reads it as a docker archive and writes a legacy one (uncompressed layers) back.
    let legacy = tmp.path().join("legacy.tar");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", saved.display()))
        .arg(format!("docker-archive:{}:t/img:2", legacy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = ContentStore::open(tmp.path().join("loaded")).unwrap();
    let (loaded, tags) = berth_image::archive::load(&legacy, &store).unwrap();
    assert!(tags.len() == 1 && tags[0].ends_with("t/img:2"), "{tags:?}");
    let Ok(berth_oci::manifest::Document::Manifest(m)) =
        berth_oci::manifest::Document::parse(&store.read(&loaded).unwrap(), None)
    else {
        panic!("not a manifest")
    };
    // Uncompressed legacy layers are stored under their diff_ids, as the config lists them.
    let config: serde_json::Value =
        serde_json::from_slice(&store.read(&m.config.digest).unwrap()).unwrap();
    let diff_ids: Vec<String> = m.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    assert_eq!(m.layers.len(), 2);
}

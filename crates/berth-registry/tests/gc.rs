//! Garbage collection of blobs no manifest references.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod common;

use berth_registry::{AuthMode, OpenError, gc};
use common::{OCI_MANIFEST, image_manifest};

#[test]
fn gc_removes_only_unreferenced_blobs_and_refuses_while_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (reg, kept, orphan, manifest_digest) = rt.block_on(async {
        let reg = common::start(AuthMode::None).await;
        let (_, md, layer) = reg.push_image("app", "v1", b"referenced layer").await;
        let orphan = reg.push_blob("app", b"never referenced").await;
        // A manifest whose only tag is gone still keeps its blobs (it is reachable by digest).
        let cd = reg.push_blob("other", b"{}").await;
        let ld = reg.push_blob("other", b"untagged but referenced").await;
        let m = image_manifest(&cd, 2, &ld, 23, None);
        assert_eq!(
            reg.put_manifest("other", "tmp", OCI_MANIFEST, &m)
                .await
                .status(),
            201
        );
        reg.client
            .delete(reg.url("/v2/other/manifests/tmp"))
            .send()
            .await
            .unwrap();
        (reg, vec![layer, ld, cd], orphan, md)
    });

    // While the registry serves the directory, GC refuses to run.
    assert!(matches!(gc(reg.dir.path()), Err(OpenError::Locked(_))));

    // Stop serving: dropping the runtime drops the server and its lock.
    drop(rt);
    let report = gc(reg.dir.path()).unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.bytes_freed, b"never referenced".len() as u64);
    let blob =
        |d: &berth_oci::digest::Digest| reg.storage_root().join("blobs/sha256").join(d.hex());
    assert!(!blob(&orphan).exists());
    for d in kept.iter().chain([&manifest_digest]) {
        assert!(blob(d).exists(), "{d} must be kept");
    }
    assert!(
        !reg.storage_root()
            .join("repos/app/_layers/sha256")
            .join(orphan.hex())
            .exists()
    );

    // The store still serves what was kept.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let reg2 = berth_registry::Registry::open(reg.dir.path(), Default::default()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { reg2.serve(listener).await });
        let r = reqwest::get(format!("{base}/v2/app/manifests/v1"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = reqwest::get(format!("{base}/v2/app/blobs/{}", kept[0]))
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"referenced layer");
    });
}

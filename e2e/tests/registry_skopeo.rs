//! `berth registry` against the real `skopeo`: push an OCI image built on the fly (busybox-static
//! layer, via `umoci`), pull it back byte for byte, with and without credentials; garbage
//! collection through `berth registry gc`; and a copy into Debian's docker-registry.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use berth_e2e::berth_bin;
use berth_e2e::peer::{DockerRegistry, skopeo, skopeo_copy, skopeo_raw_manifest};
use berth_e2e::registry::BerthRegistry;
use berth_e2e::umoci::busybox_layout;

/// Every blob file of an OCI layout: name -> bytes.
fn layout_blobs(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The manifest digest a layout's index.json lists for `tag`.
fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn skopeo_pushes_with_credentials_and_pulls_anonymously_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let src = busybox_layout(work.path());
    let reg = BerthRegistry::start("push");
    let dest = format!("docker://{}/e2e/busybox:v1", reg.host());
    skopeo_copy(
        &format!("oci:{}:base", src.display()),
        &dest,
        Some(&reg.creds()),
    )
    .unwrap();

    // The registry serves the exact manifest bytes that were pushed.
    let want = layout_manifest_digest(&src);
    let raw = skopeo_raw_manifest(&dest, None).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&raw)), want);

    // An anonymous pull gets every blob back unchanged.
    let pulled = work.path().join("pulled");
    skopeo_copy(&dest, &format!("oci:{}:v1", pulled.display()), None).unwrap();
    assert_eq!(layout_manifest_digest(&pulled), want);
    let (got, sent) = (layout_blobs(&pulled), layout_blobs(&src));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&sent));
    assert_eq!(
        names(&got).len(),
        3,
        "manifest, config and the busybox layer"
    );
    assert!(got == sent, "pulled blobs differ from the pushed ones");

    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/e2e/busybox", reg.host()),
    ])
    .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
}

#[test]
fn push_without_credentials_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let src = busybox_layout(work.path());
    let reg = BerthRegistry::start("push");
    let err = skopeo_copy(
        &format!("oci:{}:base", src.display()),
        &format!("docker://{}/e2e/anon:v1", reg.host()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );
    let wrong = skopeo_copy(
        &format!("oci:{}:base", src.display()),
        &format!("docker://{}/e2e/anon:v1", reg.host()),
        Some("berth:wrong"),
    );
    assert!(wrong.is_err());
    // Nothing of it is visible.
    assert!(skopeo_raw_manifest(&format!("docker://{}/e2e/anon:v1", reg.host()), None).is_err());
    assert!(!reg.data_dir().join("registry/repos/e2e/anon").exists());
}

#[test]
fn auth_all_requires_credentials_to_pull() {
    let work = tempfile::tempdir().unwrap();
    let src = busybox_layout(work.path());
    let reg = BerthRegistry::start("all");
    let dest = format!("docker://{}/private/busybox:v1", reg.host());
    skopeo_copy(
        &format!("oci:{}:base", src.display()),
        &dest,
        Some(&reg.creds()),
    )
    .unwrap();
    assert!(skopeo_raw_manifest(&dest, None).is_err());
    let raw = skopeo_raw_manifest(&dest, Some(&reg.creds())).unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        layout_manifest_digest(&src)
    );
}

#[test]
fn gc_after_delete_frees_the_image_and_refuses_while_serving() {
    let work = tempfile::tempdir().unwrap();
    let src = busybox_layout(work.path());
    let reg = BerthRegistry::start("push");
    let dest = format!("docker://{}/gc/busybox:v1", reg.host());
    skopeo_copy(
        &format!("oci:{}:base", src.display()),
        &dest,
        Some(&reg.creds()),
    )
    .unwrap();
    let gc = |data: &Path| {
        Command::new(berth_bin())
            .args(["registry", "gc", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    };

    let busy = gc(reg.data_dir());
    assert!(
        !busy.status.success(),
        "gc must refuse while the registry serves the directory"
    );

    let out = skopeo(&[
        "delete",
        "--tls-verify=false",
        "--creds",
        &reg.creds(),
        &dest,
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = reg.stop();
    let out = gc(data.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Manifest, config and the busybox layer.
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("removed 3 blobs"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_dir(data.path().join("registry/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn copy_between_berth_and_docker_registry() {
    let work = tempfile::tempdir().unwrap();
    let src = busybox_layout(work.path());
    let berth = BerthRegistry::start("none");
    let peer = DockerRegistry::start().unwrap();
    let in_berth = format!("docker://{}/mirror/busybox:v1", berth.host());
    let in_peer = format!("docker://{}/mirror/busybox:v1", peer.host());
    skopeo_copy(&format!("oci:{}:base", src.display()), &in_berth, None).unwrap();
    skopeo_copy(&in_berth, &in_peer, None).unwrap();
    let back = format!("docker://{}/mirror/back:v1", berth.host());
    skopeo_copy(&in_peer, &back, None).unwrap();
    let want = layout_manifest_digest(&src);
    for r in [&in_peer, &back] {
        let raw = skopeo_raw_manifest(r, None).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&raw)), want, "{r}");
    }
}

#[test]
fn skopeo_over_tls_with_a_trusted_certificate() {
    let work = tempfile::tempdir().unwrap();
    let src = busybox_layout(work.path());
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = (certs.join("registry.crt"), work.path().join("registry.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg = BerthRegistry::start_with(
        "push",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let dest = format!("docker://{}/tls/busybox:v1", reg.host());
    // TLS verification stays on: skopeo trusts the registry's certificate from --dest-cert-dir.
    let out = skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs.to_str().unwrap(),
        "--dest-creds",
        &reg.creds(),
        &format!("oci:{}:base", src.display()),
        &dest,
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        certs.to_str().unwrap(),
        &dest,
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&out.stdout)),
        layout_manifest_digest(&src)
    );
    // Without trusting the certificate, skopeo refuses.
    assert!(
        !skopeo(&["inspect", "--raw", &dest])
            .unwrap()
            .status
            .success()
    );
}

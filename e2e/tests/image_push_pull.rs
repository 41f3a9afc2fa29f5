//! `berth pull` / `berth push` / `berth images` / `berth tag` / `berth rmi` / `berth login`
//! round trips against Debian's `docker-registry` and against `berth registry`, with the source
//! image made by `umoci` (busybox-static layer) and placed with `skopeo`. Each test has its own
//! data dirs, docker config dir and registries, so they run in parallel.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_e2e::berth_bin;
use berth_e2e::peer::{DockerRegistry, skopeo, skopeo_copy, skopeo_raw_manifest};
use berth_e2e::registry::BerthRegistry;
use berth_e2e::umoci::busybox_layout;

/// Runs berth with `DOCKER_CONFIG` pointing into `home` (never the user's real config).
fn berth(home: &Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env("DOCKER_CONFIG", home.join("docker"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "berth failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The digest berth prints after `NAME: digest: `.
fn printed_digest(stdout: &str) -> String {
    stdout.rsplit("digest: ").next().unwrap().trim().to_string()
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "sha256:{}",
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    )
}

#[test]
fn pull_push_round_trip_through_docker_registry_keeps_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start().unwrap();
    let layout = busybox_layout(tmp.path());
    let src = format!("{}/src/busybox:v1", reg.host());
    skopeo_copy(
        &format!("oci:{}:base", layout.display()),
        &format!("docker://{src}"),
        None,
    )
    .unwrap();
    let want = sha256(&skopeo_raw_manifest(&format!("docker://{src}"), None).unwrap());

    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let pulled = ok(berth(tmp.path(), &["pull", "--data-dir", d, &src]));
    assert_eq!(printed_digest(&pulled), want);

    let images = ok(berth(tmp.path(), &["images", "--data-dir", d]));
    assert!(
        images.lines().next().unwrap().starts_with("REPOSITORY"),
        "{images}"
    );
    assert!(
        images.contains(&format!("{}/src/busybox", reg.host())) && images.contains("v1"),
        "{images}"
    );

    // Push to another repository (cross-repo mount) and to a new tag of the same one.
    for dst in [
        format!("{}/copy/bb:v2", reg.host()),
        format!("{}/src/busybox:again", reg.host()),
    ] {
        let pushed = ok(berth(tmp.path(), &["push", "--data-dir", d, &src, &dst]));
        assert_eq!(printed_digest(&pushed), want);
        assert_eq!(
            sha256(&skopeo_raw_manifest(&format!("docker://{dst}"), None).unwrap()),
            want
        );
    }
    // skopeo can read the pushed image's blobs back: copy it to a layout and compare manifests.
    let back = tmp.path().join("back");
    skopeo_copy(
        &format!("docker://{}/copy/bb:v2", reg.host()),
        &format!("oci:{}:x", back.display()),
        None,
    )
    .unwrap();

    // A second data dir pulls the pushed copy to the same digest.
    let data2 = tmp.path().join("data2");
    let again = ok(berth(
        tmp.path(),
        &[
            "pull",
            "--data-dir",
            data2.to_str().unwrap(),
            &format!("{}/copy/bb:v2", reg.host()),
        ],
    ));
    assert_eq!(printed_digest(&again), want);
}

#[test]
fn push_to_berth_registry_needs_credentials_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let peer_reg = DockerRegistry::start().unwrap();
    let berth_reg = BerthRegistry::start("push");
    let layout = busybox_layout(tmp.path());
    let src = format!("{}/src/busybox:v1", peer_reg.host());
    skopeo_copy(
        &format!("oci:{}:base", layout.display()),
        &format!("docker://{src}"),
        None,
    )
    .unwrap();

    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let want = printed_digest(&ok(berth(tmp.path(), &["pull", "--data-dir", d, &src])));
    let dst = format!("{}/team/busybox:v1", berth_reg.host());

    // No credentials anywhere: the registry refuses the push.
    let refused = berth(tmp.path(), &["push", "--data-dir", d, &src, &dst]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("berth login"),
        "{stderr}"
    );

    // Wrong credentials: login fails and stores nothing.
    let bad = berth(
        tmp.path(),
        &["login", &berth_reg.host(), "-u", "berth", "-p", "wrong"],
    );
    assert!(!bad.status.success());
    assert!(!tmp.path().join("docker/config.json").exists());

    // Login with --data-dir keeps the credentials under that data dir, never in the user's
    // Docker config. Without -u/-p, a loopback registry's generated credentials are read from
    // the data dir's registry.
    let host = berth_reg.host();
    let reg_data = berth_reg.data_dir();
    ok(berth(
        tmp.path(),
        &["login", "--data-dir", reg_data.to_str().unwrap(), &host],
    ));
    let stored = std::fs::read_to_string(reg_data.join("auth/config.json")).unwrap();
    assert!(stored.contains(&host), "{stored}");
    assert!(!tmp.path().join("docker/config.json").exists());
    // A push with a data dir uses the credentials its own login stored there.
    let creds = berth_reg.creds();
    let (user, pass) = creds.split_once(':').unwrap();
    ok(berth(
        tmp.path(),
        &["login", "--data-dir", d, &host, "-u", user, "-p", pass],
    ));
    assert!(!tmp.path().join("docker/config.json").exists());
    assert_eq!(
        printed_digest(&ok(berth(
            tmp.path(),
            &["push", "--data-dir", d, &src, &dst]
        ))),
        want
    );
    // Without --data-dir, login writes the Docker-compatible config, as `docker login` does.
    ok(berth(tmp.path(), &["login", &host, "-u", user, "-p", pass]));
    let stored = std::fs::read_to_string(tmp.path().join("docker/config.json")).unwrap();
    assert!(stored.contains(&host), "{stored}");
    let raw = skopeo_raw_manifest(&format!("docker://{dst}"), Some(&berth_reg.creds())).unwrap();
    assert_eq!(sha256(&raw), want);

    // Anonymous pull (berth registry's default auth mode) into a fresh data dir.
    let data2 = tmp.path().join("data2");
    let d2 = data2.to_str().unwrap();
    std::fs::remove_file(tmp.path().join("docker/config.json")).unwrap();
    assert_eq!(
        printed_digest(&ok(berth(tmp.path(), &["pull", "--data-dir", d2, &dst]))),
        want
    );

    // tag + rmi: removing one of two names keeps the blobs, removing the last frees them.
    ok(berth(
        tmp.path(),
        &["tag", "--data-dir", d2, &dst, "local/copy:x"],
    ));
    let blobs = |p: &Path| {
        std::fs::read_dir(p.join("images/blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs(&data2);
    assert!(before >= 3);
    ok(berth(tmp.path(), &["rmi", "--data-dir", d2, &dst]));
    assert_eq!(blobs(&data2), before);
    let images = ok(berth(tmp.path(), &["images", "--data-dir", d2]));
    assert!(
        images.contains("local/copy") && !images.contains("team/busybox"),
        "{images}"
    );
    ok(berth(
        tmp.path(),
        &["rmi", "--data-dir", d2, "local/copy:x"],
    ));
    assert_eq!(blobs(&data2), 0);
    assert!(
        !berth(tmp.path(), &["rmi", "--data-dir", d2, "local/copy:x"])
            .status
            .success()
    );
}

#[test]
fn docker_schema2_images_round_trip_with_their_media_types() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start().unwrap();
    let layout = busybox_layout(tmp.path());
    let src = format!("{}/docker/busybox:v1", reg.host());
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{}:base", layout.display()),
        &format!("docker://{src}"),
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = skopeo_raw_manifest(&format!("docker://{src}"), None).unwrap();
    assert!(
        String::from_utf8_lossy(&raw)
            .contains("application/vnd.docker.distribution.manifest.v2+json")
    );
    let want = sha256(&raw);

    let d = tmp.path().join("data");
    let d = d.to_str().unwrap();
    assert_eq!(
        printed_digest(&ok(berth(tmp.path(), &["pull", "--data-dir", d, &src]))),
        want
    );
    let dst = format!("{}/docker/copy:v1", reg.host());
    assert_eq!(
        printed_digest(&ok(berth(
            tmp.path(),
            &["push", "--data-dir", d, &src, &dst]
        ))),
        want
    );
    assert_eq!(
        skopeo_raw_manifest(&format!("docker://{dst}"), None).unwrap(),
        raw
    );
}

//! `berth pull --unpack` of hostile images: each of berth-testkit's hostile layers is pushed as an
//! image to Debian's `docker-registry` with `skopeo`, then pulled and unpacked by the berth binary.
//! Every escape is refused with an error naming it, and nothing is written outside the unpack
//! directory; the one layer that is confined instead (absolute paths) lands inside it. A benign
//! image unpacked the same way is the control.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use berth_e2e::berth_bin;
use berth_e2e::peer::{DockerRegistry, skopeo_copy};
use berth_testkit::hostile;

/// `berth pull --unpack DIR IMAGE` with its own data dir and docker config under `home`.
fn pull_unpack(home: &Path, image: &str, dir: &Path) -> Output {
    Command::new(berth_bin())
        .args(["pull", "--data-dir"])
        .arg(home.join("data"))
        .arg("--unpack")
        .arg(dir)
        .arg(image)
        .env("DOCKER_CONFIG", home.join("docker"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn pull_unpack_refuses_hostile_layers_and_writes_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start().unwrap();
    let outside = hostile::outside_dir(tmp.path()).unwrap();
    for layer in hostile::hostile_layers(&outside).unwrap() {
        let layout =
            berth_testkit::busybox::write_layout(tmp.path(), layer.name, &layer.tar).unwrap();
        let image = format!("{}/hostile/{}:latest", reg.host(), layer.name);
        skopeo_copy(
            &format!("oci:{}:latest", layout.display()),
            &format!("docker://{image}"),
            None,
        )
        .unwrap();
        let dir = tmp.path().join("rootfs").join(layer.name);
        let out = pull_unpack(tmp.path(), &image, &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if layer.refused {
            assert!(!out.status.success(), "{}: unpacked", layer.name);
            assert!(
                stderr.contains("escapes the unpack root"),
                "{}: {stderr}",
                layer.name
            );
        } else {
            assert!(out.status.success(), "{}: {stderr}", layer.name);
            let inside = dir.join(outside.strip_prefix("/").unwrap()).join("evil");
            assert_eq!(std::fs::read(inside).unwrap(), b"pwn", "{}", layer.name);
        }
        hostile::assert_outside_untouched(&outside);
    }
}

/// The control: a benign image (the busybox test image) unpacks completely, links intact.
#[test]
fn pull_unpack_writes_a_benign_image_root_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start().unwrap();
    let layout = berth_testkit::busybox::busybox_layout(tmp.path()).unwrap();
    let image = format!("{}/test/busybox:latest", reg.host());
    skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{image}"),
        None,
    )
    .unwrap();
    let dir = tmp.path().join("rootfs");
    let out = pull_unpack(tmp.path(), &image, &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(dir.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(
        std::fs::read_to_string(dir.join("etc/passwd"))
            .unwrap()
            .contains("app:x:1000")
    );
}

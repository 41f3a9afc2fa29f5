//! `berth build`: the churn-model example Dockerfile (config fields, .dockerignore, reproducible
//! digests with and without the build cache) and a fixture exercising ARG/--build-arg, ADD of a
//! tar archive, --chown, globs, WORKDIR, ENTRYPOINT, a base image pulled from a registry, and
//! the RUN error.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_e2e::peer::{DockerRegistry, skopeo_copy};
use berth_e2e::umoci::umoci;
use berth_e2e::{berth_bin, repo_root};
use serde_json::Value;

fn berth(home: &Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output) -> (String, String) {
    let (o, e) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "berth failed:\n{o}\n{e}");
    (o, e)
}

fn printed_digest(stdout: &str) -> String {
    stdout
        .lines()
        .last()
        .unwrap()
        .rsplit("digest: ")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

fn blob(data: &Path, digest: &str) -> PathBuf {
    data.join("images/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn json_blob(data: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob(data, digest)).unwrap()).unwrap()
}

/// `tar -tvzf` of a layer: lines "mode owner ... path". The exit status is not checked because
/// umoci writes small layers without the tar end-of-archive blocks (GNU tar then exits 2 after
/// listing every entry).
fn layer_listing(data: &Path, digest: &str) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvzf")
        .arg(blob(data, digest))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The churn-model context: the example's Dockerfile, .dockerignore and model, plus the real
/// static binary if `build-static.sh` has run, else a stand-in executable; and files the
/// .dockerignore must keep out.
fn churn_context(dir: &Path) -> PathBuf {
    let ex = repo_root().join("examples/churn-model");
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("dist")).unwrap();
    std::fs::create_dir_all(ctx.join("models")).unwrap();
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    for f in ["Dockerfile", ".dockerignore", "models/churn.json"] {
        std::fs::copy(ex.join(f), ctx.join(f)).unwrap();
    }
    let real = ex.join("dist/churn-model");
    let bin = if real.exists() {
        real
    } else {
        PathBuf::from("/bin/busybox")
    };
    std::fs::copy(bin, ctx.join("dist/churn-model")).unwrap();
    std::fs::write(ctx.join("src/secret.rs"), "not for the image").unwrap();
    std::fs::write(ctx.join("dist/other"), "not for the image").unwrap();
    ctx
}

#[test]
fn churn_model_builds_reproducibly_with_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = churn_context(tmp.path());
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let c = ctx.to_str().unwrap();
    let (out1, err1) = ok(berth(
        tmp.path(),
        &["build", "--data-dir", d, "-t", "churn-model:v1", c],
    ));
    assert!(
        err1.contains("3 layer step(s) built, 0 from cache"),
        "{err1}"
    );
    let digest = printed_digest(&out1);

    // Same inputs: cached, same digest; a fresh data dir (no cache) also gives the same digest.
    let (out2, err2) = ok(berth(
        tmp.path(),
        &["build", "--data-dir", d, "-t", "churn-model:v1", c],
    ));
    assert!(
        err2.contains("0 layer step(s) built, 3 from cache"),
        "{err2}"
    );
    assert_eq!(printed_digest(&out2), digest);
    let fresh = tmp.path().join("fresh");
    let (out3, _) = ok(berth(
        tmp.path(),
        &[
            "build",
            "--data-dir",
            fresh.to_str().unwrap(),
            "-t",
            "churn-model:v1",
            c,
        ],
    ));
    assert_eq!(printed_digest(&out3), digest);

    let manifest = json_blob(&data, &digest);
    let config = json_blob(&data, manifest["config"]["digest"].as_str().unwrap());
    let cfg = &config["config"];
    assert_eq!(
        cfg["Env"],
        serde_json::json!(["MODEL_PATH=/app/models/churn.json", "LOG_LEVEL=info"])
    );
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"8000/tcp": {}}));
    assert_eq!(cfg["User"], "10001:10001");
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/app/churn-model", "--healthcheck"])
    );
    assert_eq!(cfg["Cmd"], serde_json::json!(["/app/churn-model"]));
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(config["os"], "linux");

    // One layer (only the final stage's COPY), with the binary and model, owned by root, and
    // nothing the .dockerignore excludes.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let listing = layer_listing(&data, layers[0]["digest"].as_str().unwrap()).join("\n");
    assert!(
        listing.contains("app/churn-model") && listing.contains("app/models/churn.json"),
        "{listing}"
    );
    assert!(
        !listing.contains("secret")
            && !listing.contains("other")
            && !listing.contains("Dockerfile"),
        "{listing}"
    );
    assert!(listing.lines().all(|l| l.contains(" 0/0 ")), "{listing}");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

    let (images, _) = ok(berth(tmp.path(), &["images", "--data-dir", d]));
    assert!(
        images.contains("churn-model") && images.contains("v1"),
        "{images}"
    );
}

#[test]
fn fixture_build_with_args_archives_chown_and_a_registry_base() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = DockerRegistry::start().unwrap();
    // A base image in the registry: umoci scratch image with one file.
    let layout = tmp.path().join("oci");
    let l = layout.to_str().unwrap().to_string();
    for args in [
        vec!["init", "--layout", &l],
        vec!["new", "--image", &format!("{l}:base")],
        vec![
            "insert",
            "--image",
            &format!("{l}:base"),
            "/etc/hostname",
            "/etc/base-file",
        ],
    ] {
        umoci(&args);
    }
    let base = format!("{}/base/img:1", reg.host());
    skopeo_copy(&format!("oci:{l}:base"), &format!("docker://{base}"), None).unwrap();

    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("conf/sub")).unwrap();
    std::fs::write(ctx.join("conf/a.yaml"), "a").unwrap();
    std::fs::write(ctx.join("conf/b.yaml"), "b").unwrap();
    std::fs::write(ctx.join("conf/sub/c.txt"), "c").unwrap();
    std::fs::create_dir_all(tmp.path().join("arch/inner")).unwrap();
    std::fs::write(tmp.path().join("arch/inner/x.txt"), "from the archive").unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(ctx.join("bundle.tar.gz"))
        .arg("-C")
        .arg(tmp.path().join("arch"))
        .arg("inner")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "ARG BASE={base}\n\
             FROM $BASE\n\
             ARG VERSION=dev\n\
             ENV APP_HOME=/srv/app \\\n    VERSION=${{VERSION}}\n\
             WORKDIR $APP_HOME\n\
             COPY --chown=1000:1000 conf/*.yaml conf/\n\
             ADD bundle.tar.gz /data/\n\
             LABEL org.example.version=\"$VERSION\" other=x\n\
             EXPOSE 9000/udp 8080\n\
             ENTRYPOINT exec /app --version ${{VERSION:-none}}\n\
             HEALTHCHECK --interval=5s --timeout=1s --retries=2 CMD /app ping\n"
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let (out, _) = ok(berth(
        tmp.path(),
        &[
            "build",
            "--data-dir",
            d,
            "-t",
            "fixture:1",
            "--build-arg",
            "VERSION=1.2.3",
            ctx.to_str().unwrap(),
        ],
    ));
    let manifest = json_blob(&data, &printed_digest(&out));
    let config = json_blob(&data, manifest["config"]["digest"].as_str().unwrap());
    let cfg = &config["config"];
    assert_eq!(
        cfg["Env"],
        serde_json::json!(["APP_HOME=/srv/app", "VERSION=1.2.3"])
    );
    assert_eq!(cfg["WorkingDir"], "/srv/app");
    assert_eq!(cfg["Labels"]["org.example.version"], "1.2.3");
    assert_eq!(
        cfg["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "9000/udp": {}})
    );
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "exec /app --version ${VERSION:-none}"])
    );
    assert_eq!(
        cfg["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "/app ping"], "Interval": 5_000_000_000u64, "Timeout": 1_000_000_000u64, "Retries": 2})
    );

    // Base layer + COPY + ADD.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert!(
        layer_listing(&data, layers[0]["digest"].as_str().unwrap())
            .join("\n")
            .contains("etc/base-file")
    );
    let copy = layer_listing(&data, layers[1]["digest"].as_str().unwrap()).join("\n");
    assert!(
        copy.contains("srv/app/conf/a.yaml")
            && copy.contains("srv/app/conf/b.yaml")
            && !copy.contains("c.txt"),
        "{copy}"
    );
    assert!(
        copy.lines()
            .filter(|l| l.contains(".yaml"))
            .all(|l| l.contains(" 1000/1000 ")),
        "{copy}"
    );
    let add = layer_listing(&data, layers[2]["digest"].as_str().unwrap()).join("\n");
    assert!(
        add.contains("data/inner/x.txt") && !add.contains("bundle"),
        "{add}"
    );

    // RUN is refused with its line number.
    std::fs::write(
        ctx.join("Dockerfile.run"),
        "FROM scratch\nCOPY conf/a.yaml /\nRUN echo hi\n",
    )
    .unwrap();
    let out = berth(
        tmp.path(),
        &[
            "build",
            "--data-dir",
            d,
            "-t",
            "x:1",
            "-f",
            ctx.join("Dockerfile.run").to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("RUN needs a container runtime"),
        "{err}"
    );
}

//! The Dockerfile builder on local contexts (no registry): cache hits and invalidation, digest
//! changes when content changes, stage inheritance, ENTRYPOINT/CMD rules, step errors, and
//! `COPY --from` hostile images (refused by the confined unpacker, nothing written outside).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use berth_image::build::{BuildError, BuildOptions, Builder};
use berth_image::{ClientOptions, LocalImages, Reference, RegistryClient};
use serde_json::Value;

fn build(
    images: &LocalImages,
    ctx: &Path,
    dockerfile: &str,
    tag: &str,
) -> Result<berth_image::build::BuildOutput, BuildError> {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let log = |_: &str| {};
    let opts = BuildOptions {
        context: ctx.to_path_buf(),
        dockerfile: None,
        build_args: HashMap::new(),
        tags: vec![Reference::parse(tag).unwrap()],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(Builder::new(images, &client, &log).build(&opts))
}

fn config(images: &LocalImages, out: &berth_image::build::BuildOutput) -> Value {
    serde_json::from_slice(&images.content().read(&out.config_digest).unwrap()).unwrap()
}

#[test]
fn cache_is_reused_until_content_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a.txt"), "one").unwrap();
    std::fs::write(ctx.join("b.txt"), "two").unwrap();
    let images = LocalImages::open(tmp.path().join("images")).unwrap();
    let df = "FROM scratch\nCOPY a.txt /a\nCOPY b.txt /b\n";
    let first = build(&images, &ctx, df, "t:1").unwrap();
    assert_eq!((first.built_steps, first.cached_steps), (2, 0));
    let again = build(&images, &ctx, df, "t:1").unwrap();
    assert_eq!((again.built_steps, again.cached_steps), (0, 2));
    assert_eq!(again.manifest_digest, first.manifest_digest);
    // Changing the second file rebuilds only the second step and changes the image.
    std::fs::write(ctx.join("b.txt"), "changed").unwrap();
    let changed = build(&images, &ctx, df, "t:1").unwrap();
    assert_eq!((changed.built_steps, changed.cached_steps), (1, 1));
    assert_ne!(changed.manifest_digest, first.manifest_digest);
    // Changing the first file invalidates both (the second's parent changed).
    std::fs::write(ctx.join("a.txt"), "changed too").unwrap();
    let both = build(&images, &ctx, df, "t:1").unwrap();
    assert_eq!((both.built_steps, both.cached_steps), (2, 0));
    assert_eq!(images.resolve("t:1").unwrap(), both.manifest_digest);
}

#[test]
fn stages_inherit_and_entrypoint_resets_an_inherited_cmd() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("dir/nested")).unwrap();
    std::fs::write(ctx.join("dir/nested/f"), "x").unwrap();
    let images = LocalImages::open(tmp.path().join("images")).unwrap();
    let df = "FROM scratch AS base\n\
              ENV A=1\n\
              CMD [\"base-cmd\"]\n\
              WORKDIR /w\n\
              COPY dir sub/\n\
              FROM base\n\
              WORKDIR rel\n\
              ENV B=$A-2\n\
              ENTRYPOINT [\"ep\"]\n\
              FROM scratch\n\
              COPY --from=0 /w/sub/nested/f /copied\n\
              CMD [\"final\"]\n";
    let out = build(&images, &ctx, df, "stages:1").unwrap();
    let cfg = config(&images, &out);
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["final"]));
    assert_eq!(cfg["config"].get("Env"), None);
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

    let df_mid = "FROM scratch AS base\nENV A=1\nCMD [\"base-cmd\"]\nWORKDIR /w\nFROM base\nWORKDIR rel\nENV B=$A-2\nENTRYPOINT [\"ep\"]\n";
    let mid = build(&images, &ctx, df_mid, "stages:2").unwrap();
    let cfg = config(&images, &mid);
    assert_eq!(cfg["config"]["Env"], serde_json::json!(["A=1", "B=1-2"]));
    assert_eq!(cfg["config"]["WorkingDir"], "/w/rel");
    assert_eq!(cfg["config"]["Entrypoint"], serde_json::json!(["ep"]));
    assert_eq!(
        cfg["config"].get("Cmd"),
        None,
        "an inherited CMD is reset by ENTRYPOINT"
    );
}

#[test]
fn step_errors_name_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("kept"), "k").unwrap();
    std::fs::write(ctx.join("ignored"), "i").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "ignored\n").unwrap();
    let images = LocalImages::open(tmp.path().join("images")).unwrap();
    let err = build(
        &images,
        &ctx,
        "FROM scratch\nCOPY kept /k\nCOPY missing /m\n",
        "e:1",
    )
    .unwrap_err();
    assert!(
        matches!(&err, BuildError::Step { line: 3, message } if message.contains("missing")),
        "{err}"
    );
    let err = build(&images, &ctx, "FROM scratch\n\nCOPY ignored /i\n", "e:1").unwrap_err();
    assert!(matches!(&err, BuildError::Step { line: 3, .. }), "{err}");
    let err = build(
        &images,
        &ctx,
        "FROM scratch\nCOPY --chown=app kept /k\n",
        "e:1",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("line 2") && err.to_string().contains("numeric"),
        "{err}"
    );
    let err = build(
        &images,
        &ctx,
        "FROM scratch\nCOPY ../etc/passwd /p\n",
        "e:1",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("outside the build context"),
        "{err}"
    );
    std::os::unix::fs::symlink("/etc", ctx.join("escape")).unwrap();
    let err = build(
        &images,
        &ctx,
        "FROM scratch\nCOPY escape/hostname /h\n",
        "e:1",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("outside the build context"),
        "{err}"
    );
    assert!(images.list().unwrap().is_empty());
}

/// Tags a local image `hostile-<name>:1` of one gzip layer made of `tar`; returns its name.
fn hostile_image(images: &LocalImages, name: &str, tar: &[u8]) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, tar).unwrap();
    let layer = gz.finish().unwrap();
    let store = images.content();
    let layer_digest = store.write_bytes(&layer).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [berth_image::Digest::of(tar).to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": store.write_bytes(&config).unwrap().to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest.to_string(), "size": layer.len()}],
    }))
    .unwrap();
    let image = format!("hostile-{name}:1");
    let digest = store.write_bytes(&manifest).unwrap();
    images
        .tag(&Reference::parse(&image).unwrap(), &digest)
        .unwrap();
    image
}

#[test]
fn copy_from_a_hostile_image_is_refused_and_writes_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let outside = berth_testkit::hostile::outside_dir(tmp.path()).unwrap();
    let images = LocalImages::open(tmp.path().join("images")).unwrap();
    for layer in berth_testkit::hostile::hostile_layers(&outside).unwrap() {
        let image = hostile_image(&images, layer.name, &layer.tar);
        // The one layer not refused puts `evil` at `<outside>` inside the image's root.
        let evil = outside.join("evil");
        let df = format!(
            "FROM scratch\nCOPY --from={image} {} /evil\n",
            evil.display()
        );
        let result = build(&images, &ctx, &df, "out:1");
        if layer.refused {
            let err = result.expect_err(layer.name);
            assert!(
                matches!(&err, BuildError::Step { line: 2, message } if message.contains("escapes")),
                "{}: {err}",
                layer.name
            );
        } else {
            result.unwrap_or_else(|e| panic!("{}: {e}", layer.name));
        }
        berth_testkit::hostile::assert_outside_untouched(&outside);
    }
}

//! The example's image: a statically linked churn-model binary (a plain cargo build links glibc
//! dynamically and would not start in the FROM-scratch image), built into an image with berth's
//! builder and pushed into the embedded registry.

use std::collections::HashMap;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context as _;
use berth_image::auth::{AuthConfig, Credentials};
use berth_image::build::{BuildOptions, Builder};
use berth_image::{ClientOptions, LocalImages, Reference, RegistryClient};

use super::example::Source;

/// Runs examples/churn-model/build-static.sh unless dist/churn-model is newer than the sources.
pub fn build_static(source: &Source) -> anyhow::Result<()> {
    let dir = source.example_dir();
    let binary = modified(&dir.join("dist/churn-model"));
    let sources = newest(
        [dir.join("src"), dir.join("models"), dir.join("Cargo.toml")]
            .iter()
            .map(|p| p.as_path()),
    );
    if let (Some(binary), Some(sources)) = (binary, sources)
        && binary >= sources
    {
        eprintln!("berth up: dist/churn-model is up to date");
        return Ok(());
    }
    eprintln!("berth up: building churn-model statically (examples/churn-model/build-static.sh)");
    let script = dir.join("build-static.sh");
    let status = std::process::Command::new("sh")
        .arg(&script)
        .current_dir(source.root())
        // Cargo's output is for the user, not for whoever reads berth up's stdout.
        .stdout(std::process::Stdio::from(
            std::io::stderr().as_fd().try_clone_to_owned()?,
        ))
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(status.success(), "{} failed ({status})", script.display());
    Ok(())
}

/// Builds the image from examples/churn-model tagged `image_ref` into DATA_DIR/images and pushes
/// it to the registry `image_ref` names (blobs already there are skipped).
pub async fn build_and_push(
    source: &Source,
    data_dir: &Path,
    image_ref: &str,
) -> anyhow::Result<()> {
    let dir = data_dir.join("images");
    let images = LocalImages::open(&dir)
        .with_context(|| format!("opening the image store {}", dir.display()))?;
    let reference = Reference::parse(image_ref)?;
    let client = registry_client(data_dir, reference.registry())?;
    let opts = BuildOptions {
        context: source.example_dir(),
        dockerfile: None,
        build_args: HashMap::new(),
        tags: vec![reference.clone()],
    };
    let log = |line: &str| tracing::debug!(target: "berth::up", "{line}");
    let built = Builder::new(&images, &client, &log).build(&opts).await?;
    eprintln!(
        "berth up: built {image_ref} ({} step(s) built, {} cached)",
        built.built_steps, built.cached_steps
    );
    let digest = client
        .push_image(
            &reference,
            images.content(),
            &built.manifest_digest,
            None,
            None,
        )
        .await
        .with_context(|| format!("pushing {image_ref}"))?;
    eprintln!("berth up: pushed {image_ref} ({digest})");
    Ok(())
}

/// A registry client with the embedded registry's generated credentials (pushes need them unless
/// the registry runs with --registry-auth none).
fn registry_client(data_dir: &Path, registry: &str) -> anyhow::Result<RegistryClient> {
    let mut auth = AuthConfig::default();
    let path = data_dir.join("registry/credentials");
    if let Some(creds) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| Credentials::from_pair(t.trim()))
    {
        auth.explicit.insert(registry.to_string(), creds);
    }
    Ok(RegistryClient::new(ClientOptions {
        auth,
        insecure: Vec::new(),
        chunk_size: None,
    })?)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `paths` (directories walked).
fn newest<'a>(paths: impl Iterator<Item = &'a Path>) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack: Vec<std::path::PathBuf> = paths.map(Path::to_path_buf).collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(t) = meta.modified() {
            newest = newest.max(Some(t));
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_walks_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let before = newest(std::iter::once(dir.path())).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("sub/b"), "b").unwrap();
        let after = newest(std::iter::once(dir.path())).unwrap();
        assert!(after > before);
        assert_eq!(
            newest(std::iter::once(dir.path().join("missing").as_path())),
            None
        );
    }
}

//! Targets of images: Dockerfiles as `berth build` reads them, image references, and OCI
//! manifests and indexes as clients and the registry decode them.

use std::collections::HashMap;

use berth_image::dockerfile::{self, Instruction};
use berth_oci::manifest::{Document, Summary, host_arch};
use berth_oci::media;
use berth_oci::reference::{RepoName, TagOrDigest};
use berth_oci::{Digest, Reference};

/// A Dockerfile: parsed, then every instruction's words expanded the way the builder does (with
/// a few variables set, so substitutions take both branches).
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(lines) = dockerfile::parse(text) else {
        return;
    };
    let vars = HashMap::from([
        ("A".to_string(), "a b".to_string()),
        ("EMPTY".to_string(), String::new()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
    ]);
    for line in &lines {
        expand(&line.instruction, &vars);
    }
}

fn expand(instruction: &Instruction, vars: &HashMap<String, String>) {
    let one = |s: &str| drop(dockerfile::expand_one(s, vars));
    match instruction {
        Instruction::From { image, .. } => {
            if let Ok(image) = dockerfile::expand_one(image, vars) {
                let _ = Reference::parse(&image);
            }
        }
        Instruction::Copy {
            sources,
            dest,
            from,
            chown,
            ..
        } => {
            sources.iter().for_each(|s| one(s));
            one(dest);
            from.iter().chain(chown).for_each(|s| one(s));
        }
        Instruction::Env(t) | Instruction::Label(t) | Instruction::Arg(t) => {
            let _ = dockerfile::key_values(t, vars);
        }
        Instruction::Expose(t) => drop(dockerfile::expand_words(t, vars)),
        Instruction::Workdir(t) | Instruction::User(t) | Instruction::StopSignal(t) => one(t),
        Instruction::Cmd(c) | Instruction::Entrypoint(c) => drop(c.argv()),
        Instruction::Healthcheck(_) | Instruction::Run(_) => {}
    }
}

/// An image reference (`berth pull`, `FROM`, a ModelService's `spec.image`), and the names, tags
/// and digests of registry paths. A parsed reference must print as one that parses back to it.
pub fn image_reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RepoName::parse(s);
    let _ = TagOrDigest::parse(s);
    let _ = s.parse::<Digest>();
    let Ok(r) = Reference::parse(s) else {
        return;
    };
    let printed = r.to_string();
    match Reference::parse(&printed) {
        Ok(again) => assert_eq!(again, r, "{s:?} printed as {printed:?}"),
        Err(e) => panic!("{s:?} printed as {printed:?}, which does not parse: {e}"),
    }
    let _ = (r.object(), r.name(), r.is_floating(), r.with_tag("v1"));
}

/// A manifest or index body, as a client decodes a pulled one (picking this host's platform from
/// an index) and as the registry summarises a pushed one, without and with each Content-Type.
pub fn oci_manifest(data: &[u8]) {
    let content_types = [None, Some("application/json")]
        .into_iter()
        .chain(media::MANIFEST_TYPES.iter().copied().map(Some));
    for ct in content_types {
        if let Ok(Document::Index(index)) = Document::parse(data, ct) {
            let _ = index.select("linux", host_arch());
        }
        let _ = Summary::parse(data, ct);
    }
}

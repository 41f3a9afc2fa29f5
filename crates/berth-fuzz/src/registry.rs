//! The registry target: one HTTP request through the registry's real router, on a fresh registry
//! in a temporary directory (so every input replays the same way).

use std::sync::OnceLock;

use axum::body::Body;
use berth_registry::{AuthMode, Config, Registry};
use http::Request;
use tower::ServiceExt;

/// Requests written as in HTTP/1.1 without the version: `METHOD PATH?QUERY`, header lines
/// (`Name: value`), an empty line, the body; several requests are separated by a line `===`, and
/// `{location}` in a path stands for the `Location` of the previous answer (how an upload
/// continues). They are served in order by a fresh registry that lets anyone push, so paths reach
/// every handler (manifests, blobs, uploads, tags, catalog, referrers, token). A request that is
/// not well formed ends the input, as the HTTP server would refuse it.
pub fn registry_request(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let config = Config {
        auth: AuthMode::None,
        tls: false,
    };
    let (Ok(registry), Some(rt)) = (Registry::open(dir.path(), config), runtime()) else {
        return;
    };
    let mut location = String::new();
    for text in split(data, b"\n===\n") {
        let Some(req) = request(text, &location) else {
            return;
        };
        let Ok(resp) = rt.block_on(registry.router().oneshot(req));
        if let Some(l) = resp.headers().get(http::header::LOCATION) {
            location = l.to_str().unwrap_or_default().to_string();
        }
        // The body is part of the answer (a blob or manifest streamed from disk).
        let _ = rt.block_on(axum::body::to_bytes(resp.into_body(), 1 << 20));
    }
}

/// `data` cut at every `sep`.
fn split<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(i) = data.windows(sep.len()).position(|w| w == sep) {
        parts.push(&data[..i]);
        data = &data[i + sep.len()..];
    }
    parts.push(data);
    parts
}

/// The request `data` spells (`{location}` replaced), or `None` if it is not one.
fn request(data: &[u8], location: &str) -> Option<Request<Body>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let target = target.replace("{location}", location);
    let mut builder = Request::builder().method(method).uri(target);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(Body::from(body.to_vec())).ok()
}

/// One single-threaded runtime for every input (creating one per input would dominate).
fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
    })
    .as_ref()
}

//! The registry target: one HTTP request through the registry's real router, on a fresh registry
//! in a temporary directory (so every input replays the same way).

use std::sync::OnceLock;

use axum::body::Body;
use berth_registry::{AuthMode, Config, Registry};
use http::Request;
use tower::ServiceExt;

/// A request written as in HTTP/1.1 without the version: `METHOD PATH?QUERY`, header lines
/// (`Name: value`), an empty line, the body. It is served by a registry that lets anyone push,
/// so paths reach every handler (manifests, blobs, uploads, tags, catalog, referrers, token).
/// Inputs that are not a well-formed request are dropped, as the HTTP server would.
pub fn registry_request(data: &[u8]) {
    let Some(req) = request(data) else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let config = Config {
        auth: AuthMode::None,
        tls: false,
    };
    let Ok(registry) = Registry::open(dir.path(), config) else {
        return;
    };
    let Some(rt) = runtime() else {
        return;
    };
    let _ = rt.block_on(registry.router().oneshot(req));
}

/// The request `data` spells, or `None` if it is not one.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
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

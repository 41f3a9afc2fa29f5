//! Extension point for subresources served by other parts (pods/log, pods/exec, pods/portforward
//! come with the node agent): a handler registered here answers `<object>/<name>` requests.

use std::sync::{Arc, OnceLock};

use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;
use hyper::upgrade::OnUpgrade;

use crate::error::ApiResult;
use crate::rest::Ctx;

/// One subresource request as an extension sees it.
pub struct SubresourceRequest<'a> {
    /// The request context (server, resource, path, parsed query, headers, identity).
    pub ctx: &'a Ctx,
    /// The subresource's name (`log`, `exec`, ...).
    pub subresource: &'a str,
    /// The HTTP method.
    pub method: &'a http::Method,
    /// The request body.
    pub body: &'a Bytes,
    /// The raw query string, for handlers that pass it on unchanged (repeated keys, order).
    pub raw_query: Option<&'a str>,
    /// The client connection's upgrade (present when the client may switch protocols, e.g. a
    /// WebSocket handshake over HTTP/1.1); a handler answering `101` takes it to get the stream.
    pub upgrade: Option<OnUpgrade>,
}

/// A subresource handler: returns `None` when it does not serve that subresource.
pub type SubresourceHandler = Arc<
    dyn for<'a> Fn(SubresourceRequest<'a>) -> BoxFuture<'a, Option<ApiResult<Response>>>
        + Send
        + Sync,
>;

static HANDLER: OnceLock<SubresourceHandler> = OnceLock::new();

/// Registers the process-wide subresource handler (first registration wins).
pub fn register(h: SubresourceHandler) {
    let _ = HANDLER.set(h);
}

/// Dispatches pods/log and pods/exec to the built-in node proxy ([`crate::nodeproxy`]) and
/// anything else to the registered handler, if any.
pub async fn handle(req: SubresourceRequest<'_>) -> Option<ApiResult<Response>> {
    if crate::nodeproxy::serves(req.ctx, req.subresource) {
        return Some(crate::nodeproxy::handle(req).await);
    }
    let h = HANDLER.get()?;
    h(req).await
}

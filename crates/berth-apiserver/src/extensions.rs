//! Extension point for subresources served by other parts (pods/log, pods/exec, pods/portforward
//! come with the node agent): a handler registered here answers `<object>/<name>` requests.

use std::sync::{Arc, OnceLock};

use axum::response::Response;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::ApiResult;
use crate::rest::Ctx;

/// A subresource handler: gets the request context, subresource name, method and body; returns
/// `None` when it does not serve that subresource.
pub type SubresourceHandler =
    Arc<dyn for<'a> Fn(&'a Ctx, &'a str, &'a http::Method, &'a Bytes) -> BoxFuture<'a, Option<ApiResult<Response>>> + Send + Sync>;

static HANDLER: OnceLock<SubresourceHandler> = OnceLock::new();

/// Registers the process-wide subresource handler (first registration wins).
pub fn register(h: SubresourceHandler) {
    let _ = HANDLER.set(h);
}

/// Dispatches to the registered handler, if any.
pub async fn handle(ctx: &Ctx, sub: &str, method: &http::Method, body: &Bytes) -> Option<ApiResult<Response>> {
    let h = HANDLER.get()?;
    h(ctx, sub, method, body).await
}

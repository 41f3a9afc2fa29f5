//! The one compare-and-swap retry of the REST verbs: read the object, compute the new one, write
//! it only if the object is still at the revision read; when another writer got in between, start
//! again from fresh state.
//!
//! Attempts are closures returning futures (`move || async move { .. }` over references) rather
//! than async closures: the futures of async closures do not prove `Send` for every borrow
//! lifetime, which axum handlers need.

use std::future::Future;

use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceInfo;

/// What one read-modify-write attempt came to.
pub enum Attempt<T> {
    /// Finished: the answer to the request.
    Done(T),
    /// The write lost the race with another writer: read again and retry.
    Conflict,
}

/// Runs `attempt` until it is [`Attempt::Done`] or fails, at most `attempts` times; when every
/// attempt lost its race, answers the usual 409 Conflict for `name` of `r`.
pub async fn retry_on_conflict<T, F>(
    attempts: usize,
    r: &ResourceInfo,
    name: &str,
    attempt: impl FnMut() -> F,
) -> ApiResult<T>
where
    F: Future<Output = ApiResult<Attempt<T>>>,
{
    retry(attempts, attempt)
        .await?
        .ok_or_else(|| ApiError::conflict(r, name))
}

/// The loop under [`retry_on_conflict`], for callers without a request to answer (the garbage
/// collector): `Ok(None)` when every one of the `attempts` lost its race.
pub async fn retry<T, E, F>(attempts: usize, mut attempt: impl FnMut() -> F) -> Result<Option<T>, E>
where
    F: Future<Output = Result<Attempt<T>, E>>,
{
    for _ in 0..attempts {
        if let Attempt::Done(answer) = attempt().await? {
            return Ok(Some(answer));
        }
    }
    Ok(None)
}

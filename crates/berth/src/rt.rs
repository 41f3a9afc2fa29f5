//! The tokio runtime, built only by the subcommands that need one (see `main`).

use std::future::Future;

/// Runs `fut` to completion on a new multi-threaded tokio runtime.
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(fut))
}

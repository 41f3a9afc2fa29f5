//! The one home of berth's rtnetlink code: the per-thread handle machinery, link lookups and
//! generic link operations ([`link`]), and the routes the agent keeps to other nodes ([`route`]).
//! Pod-specific wiring (a sandbox's veth) stays with the runtime and is built from these parts.
//!
//! A netlink socket acts in the network namespace it was opened in. Every operation therefore
//! runs on a fresh, short-lived `std::thread` with its own current-thread tokio runtime
//! ([`on_thread`]): the thread starts in the namespace of the thread that called it, may
//! `setns` elsewhere, and ends afterwards, so no shared thread (a tokio worker, the blocking
//! pool) is ever left in another namespace, and callers may be sync code inside or outside a
//! tokio runtime.

pub mod link;
pub mod route;

use std::future::Future;
use std::io;

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec};

pub use link::{delete_link, ensure_bridge, lo_up_here};

/// An rtnetlink error as an [`io::Error`] (a kernel errno keeps its kind).
pub fn nl_err(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Whether `e` is the kernel's answer `errno` (e.g. `libc::EEXIST`).
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// Runs `f` with a netlink handle for the calling thread's current network namespace. Must run
/// inside a tokio runtime (the connection's driver is spawned on it).
pub async fn with_handle<T, F, Fut>(f: F) -> io::Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let driver = tokio::spawn(conn);
    let out = f(handle).await;
    driver.abort();
    out
}

/// Runs `body` on a dedicated thread with a private current-thread runtime, and waits for it.
/// The thread starts in the calling thread's network namespace.
pub fn on_thread<T: Send + 'static>(
    body: impl FnOnce(&tokio::runtime::Runtime) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        body(&rt)
    })
    .join()
    .map_err(|_| io::Error::other("netlink thread panicked"))?
}

/// Runs `f` with a handle of the calling thread's namespace on a dedicated thread
/// ([`on_thread`] + [`with_handle`]).
pub fn in_own_thread<T, F, Fut>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>>,
{
    on_thread(move |rt| rt.block_on(with_handle(f)))
}

/// The index of the link called `name` in the handle's netns; `None` when there is none.
pub async fn link_index(handle: &Handle, name: &str) -> io::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl_err(e)),
    }
}

/// The index of the link called `name`; `NotFound` when there is none.
pub async fn require_index(handle: &Handle, name: &str) -> io::Result<u32> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name:?}")))
}

/// Sets the link with `index` up.
pub async fn set_up(handle: &Handle, index: u32) -> io::Result<()> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    handle.link().set(msg).execute().await.map_err(nl_err)
}

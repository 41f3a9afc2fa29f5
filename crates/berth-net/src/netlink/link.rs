//! Generic link operations: a bridge with an address, deleting a link, `lo` up.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::LinkBridge;

use super::{in_own_thread, is_errno, link_index, nl_err, require_index, set_up, with_handle};

/// Makes sure bridge `name` exists, carries `gateway/prefix` and is up. Idempotent, and safe
/// against a concurrent runtime creating the same bridge.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
    let name = name.to_string();
    in_own_thread(move |h| async move {
        if link_index(&h, &name).await?.is_none() {
            match h.link().add(LinkBridge::new(&name).build()).execute().await {
                Err(e) if !is_errno(&e, libc::EEXIST) => return Err(nl_err(e)),
                _ => {}
            }
        }
        let index = require_index(&h, &name).await?;
        match h
            .address()
            .add(index, IpAddr::V4(gateway), prefix)
            .execute()
            .await
        {
            Err(e) if !is_errno(&e, libc::EEXIST) => return Err(nl_err(e)),
            _ => {}
        }
        set_up(&h, index).await
    })
}

/// Deletes link `name` from the calling thread's netns; a missing link is fine.
pub fn delete_link(name: &str) -> std::io::Result<()> {
    let name = name.to_string();
    in_own_thread(move |h| async move {
        let Some(index) = link_index(&h, &name).await? else {
            return Ok(());
        };
        match h.link().del(index).execute().await {
            Err(e) if !is_errno(&e, libc::ENODEV) => Err(nl_err(e)),
            _ => Ok(()),
        }
    })
}

/// Brings `lo` up in the calling thread's netns (for a thread that just unshared a new one),
/// on that thread itself.
pub fn lo_up_here() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(with_handle(|h| async move {
        let index = require_index(&h, "lo").await?;
        set_up(&h, index).await
    }))
}

//! Network namespaces pinned by a bind mount, created on a dedicated thread (unshare affects
//! only the calling thread, which must not be a tokio worker that runs other tasks).

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Creates a new network namespace with `lo` up and pins it at `pin` (an empty file is created).
pub fn create(pin: &Path) -> io::Result<()> {
    std::fs::File::create(pin)?;
    let pin_owned = pin.to_path_buf();
    let result = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &pin_owned,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        // A netlink socket opened on this thread now lives in the new namespace.
        berth_net::netlink::lo_up_here()
        // The thread ends here, so its namespace change dies with it; the pin keeps the netns.
    })
    .join()
    .map_err(|_| io::Error::other("netns thread panicked"))?;
    if result.is_err() {
        let _ = remove(pin);
    }
    result
}

/// Unmounts and deletes the pin (missing is fine).
pub fn remove(pin: &Path) -> io::Result<()> {
    match umount2(pin, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

//! Thin safe wrappers over the `*at` syscalls the unpacker needs.
//!
//! Every operation is relative to a directory file descriptor and never follows a symlink in its
//! last component, so that a layer can only ever touch paths inside the unpack root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a single path component (or a symlink target) into a C string.
pub fn cstr(s: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens an existing directory by path (the unpack root itself).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: p is a valid NUL-terminated string; the fd returned is owned by us.
    let fd = check(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by open and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `name` inside `dir` without following a symlink.
pub fn open_dir(dir: RawFd, name: &CString) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid dirfd and C string.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags) })?;
    // SAFETY: fd was just returned by openat.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates the regular file `name` inside `dir` (must not exist) and returns it for writing.
pub fn create_file(dir: RawFd, name: &CString) -> io::Result<std::fs::File> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid dirfd and C string.
    let fd = check(unsafe { libc::openat(dir, name.as_ptr(), flags, 0o600 as libc::c_uint) })?;
    // SAFETY: fd was just returned by openat.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Creates the directory `name` in `dir`; an existing directory is fine.
pub fn mkdir(dir: RawFd, name: &CString, mode: u32) -> io::Result<()> {
    // SAFETY: valid dirfd and C string.
    match check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // Must really be a directory (not a symlink to one): opening with O_NOFOLLOW checks it.
            open_dir(dir, name).map(drop)
        }
        Err(e) => Err(e),
    }
}

/// Removes `name` from `dir` whatever it is (a directory recursively). Missing is fine.
pub fn remove_all(dir: RawFd, name: &CString) -> io::Result<()> {
    // SAFETY: valid dirfd and C string.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR) | Some(libc::EPERM) => {
            let sub = open_dir(dir, name)?;
            for child in list_dir(sub.as_raw_fd())? {
                remove_all(sub.as_raw_fd(), &child)?;
            }
            // SAFETY: valid dirfd and C string.
            check(unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) }).map(drop)
        }
        _ => Err(err),
    }
}

/// Lists the entry names of an open directory (without `.` and `..`).
pub fn list_dir(dir: RawFd) -> io::Result<Vec<CString>> {
    // Reading through /proc/self/fd keeps us on the already-confined descriptor.
    let path = format!("/proc/self/fd/{dir}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        out.push(cstr(&entry?.file_name())?);
    }
    Ok(out)
}

/// Creates a symlink `name` -> `target` in `dir`. The target is stored verbatim, never followed.
pub fn symlink(dir: RawFd, name: &CString, target: &CString) -> io::Result<()> {
    // SAFETY: valid dirfd and C strings.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

/// Hard-links `old_dir/old_name` to `new_dir/new_name` without following symlinks.
pub fn link(
    old_dir: RawFd,
    old_name: &CString,
    new_dir: RawFd,
    new_name: &CString,
) -> io::Result<()> {
    // SAFETY: valid dirfds and C strings; flags 0 = do not follow a symlink in old_name.
    check(unsafe { libc::linkat(old_dir, old_name.as_ptr(), new_dir, new_name.as_ptr(), 0) })
        .map(drop)
}

/// Creates a device node or fifo.
pub fn mknod(dir: RawFd, name: &CString, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::mknodat(dir, name.as_ptr(), mode as libc::mode_t, dev) }).map(drop)
}

/// Changes owner of `name` in `dir` without following a symlink.
pub fn chown(dir: RawFd, name: &CString, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

/// Changes the mode of `name` in `dir` (never called on symlinks: Linux has no symlink modes).
pub fn chmod(dir: RawFd, name: &CString, mode: u32) -> io::Result<()> {
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::fchmodat(dir, name.as_ptr(), mode as libc::mode_t, 0) }).map(drop)
}

/// Sets access and modification times of `name` in `dir` without following a symlink.
pub fn set_mtime(dir: RawFd, name: &CString, secs: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: valid dirfd, C string and a 2-element timespec array.
    check(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Sets an extended attribute on an open file descriptor.
pub fn set_xattr(fd: RawFd, key: &str, value: &[u8]) -> io::Result<()> {
    let k = cstr(std::ffi::OsStr::new(key))?;
    // SAFETY: valid fd, C string key, and value pointer/length from a slice.
    check(unsafe { libc::fsetxattr(fd, k.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
        .map(drop)
}

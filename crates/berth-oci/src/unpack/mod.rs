//! The one confined layer unpacker: one (decompressed) layer tar into a directory.
//!
//! Two [`Mode`]s. A [`Mode::Snapshot`] is an overlayfs lower dir (the runtime's snapshots), so
//! whiteouts are stored the way overlayfs understands them: `.wh.<name>` becomes a character
//! device 0/0 at `<name>`, and `.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on its
//! directory. [`Mode::Flatten`] applies layers one after another onto one root filesystem
//! (`berth pull --unpack`, `COPY --from` in builds), so whiteouts delete what lower layers wrote.
//!
//! Every path is resolved one component at a time from a descriptor of the root with
//! `O_NOFOLLOW`, so neither `..`, nor a symlink planted by the layer, nor a hard link, nor a
//! whiteout can make the unpacker write or delete outside the root. Absolute entry paths are
//! taken relative to the root, as every layer's paths are.

mod compression;
mod fsat;

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

pub use compression::{Compression, UnsupportedMediaType};

/// Prefix of a whiteout entry's file name.
const WHITEOUT_PREFIX: &str = ".wh.";
/// File name of an opaque-directory marker.
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What the unpacked directory is for, which decides how whiteouts and owners are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One layer per directory, as an overlayfs lower dir: whiteouts are stored as overlayfs
    /// whiteouts, owners are always set (the runtime runs as root).
    Snapshot,
    /// Layers applied in order onto one root filesystem: whiteouts delete. Owners and device
    /// nodes are only written when running as root (as `tar` does), so that an unprivileged
    /// user can still unpack an image's files.
    Flatten,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer names a path that would leave the root (`..`, a symlinked parent, ...).
    #[error("layer entry {path:?} escapes the unpack root: {reason}")]
    Escape {
        /// The entry path as written in the tar.
        path: String,
        /// What made it escape.
        reason: String,
    },
    /// The tar stream is malformed or an entry is of an unsupported kind.
    #[error("invalid layer entry {path:?}: {reason}")]
    Invalid {
        /// The entry path as written in the tar.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("unpacking {path:?}: {source}")]
    Io {
        /// The entry path being unpacked.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// A reader that hashes everything read through it (for the layer's diff id).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks the uncompressed layer tar `reader` into the existing directory `dest` and returns
/// the layer's diff id (`sha256:<hex>` of the whole uncompressed stream).
pub fn unpack_layer<R: Read>(reader: R, dest: &Path, mode: Mode) -> Result<String, UnpackError> {
    let root = fsat::open_root(dest).map_err(|source| UnpackError::Io {
        path: "/".into(),
        source,
    })?;
    let mut unpacker = Unpacker {
        root,
        mode,
        // SAFETY: geteuid has no preconditions and cannot fail.
        privileged: mode == Mode::Snapshot || unsafe { libc::geteuid() } == 0,
        written: HashSet::new(),
    };
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(|e| invalid("<archive>", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid("<archive>", e))?;
            unpacker.entry(&mut entry)?;
        }
    }
    // The tar end padding after the last entry is part of the diff id.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| invalid("<archive>", e))?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

/// One layer being unpacked.
struct Unpacker {
    /// The root directory, which nothing may leave.
    root: OwnedFd,
    mode: Mode,
    /// Whether owners and device nodes are written.
    privileged: bool,
    /// Paths this layer wrote (with their parents): an opaque whiteout in [`Mode::Flatten`]
    /// removes only what lower layers left in its directory.
    written: HashSet<PathBuf>,
}

fn invalid(path: &str, e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Invalid {
        path: path.to_string(),
        reason: e.to_string(),
    }
}

fn escape(path: &str, reason: &str) -> UnpackError {
    UnpackError::Escape {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_string(),
        source,
    }
}

/// Splits an entry path into its normal components, refusing `..`. Leading `/` and `.` are
/// dropped: layer paths are always relative to the root.
fn components(raw: &Path, shown: &str) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(escape(shown, "path contains `..`")),
            Component::Prefix(_) => return Err(escape(shown, "path has a prefix")),
        }
    }
    Ok(out)
}

/// Opens (creating missing directories if `create`) every parent component, never following a
/// symlink, and returns the innermost directory.
fn open_parent(
    root: &OwnedFd,
    parents: &[OsString],
    create: bool,
    shown: &str,
) -> Result<OwnedFd, UnpackError> {
    let mut dir = root.try_clone().map_err(io_err(shown))?;
    for name in parents {
        let c = fsat::cstr(name).map_err(io_err(shown))?;
        if create {
            match fsat::mkdir(dir.as_raw_fd(), &c, 0o755) {
                Ok(()) => {}
                Err(e) if is_not_a_dir(&e) => {
                    return Err(escape(shown, "a parent is a symlink or not a directory"));
                }
                Err(e) => return Err(io_err(shown)(e)),
            }
        }
        dir = match fsat::open_dir(dir.as_raw_fd(), &c) {
            Ok(d) => d,
            Err(e) if is_not_a_dir(&e) => {
                return Err(escape(shown, "a parent is a symlink or not a directory"));
            }
            Err(e) => return Err(io_err(shown)(e)),
        };
    }
    Ok(dir)
}

fn is_not_a_dir(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
}

/// Checks a whiteout's target name: it must name one entry of its directory.
fn whiteout_target<'a>(name: &'a str, shown: &str) -> Result<&'a str, UnpackError> {
    let target = &name[WHITEOUT_PREFIX.len()..];
    if target.is_empty() || target == "." || target == ".." || target.contains('/') {
        return Err(escape(shown, "whiteout of an invalid name"));
    }
    Ok(target)
}

impl Unpacker {
    /// Unpacks one tar entry.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path().map_err(|e| invalid("<path>", e))?.into_owned();
        let shown = raw.to_string_lossy().into_owned();
        let mut parts = components(&raw, &shown)?;
        let Some(name) = parts.pop() else {
            return Ok(()); // the root itself: keep the root dir's own attributes
        };
        let name_str = name.to_string_lossy().into_owned();
        let dir = open_parent(&self.root, &parts, true, &shown)?;
        let parent: PathBuf = parts.iter().collect();
        self.note_written(&parent);
        if name_str == OPAQUE_MARKER {
            return self.opaque(dir.as_raw_fd(), &parent, &shown);
        }
        if name_str.starts_with(WHITEOUT_PREFIX) {
            let target = whiteout_target(&name_str, &shown)?;
            return self.whiteout(dir.as_raw_fd(), target, entry.header(), &shown);
        }
        self.note_written(&parent.join(&name));
        let c = fsat::cstr(&name).map_err(io_err(&shown))?;
        self.node(dir.as_raw_fd(), &c, entry, &shown)
    }

    /// Remembers that this layer wrote `path` and its parents (only [`Mode::Flatten`] needs it).
    fn note_written(&mut self, path: &Path) {
        if self.mode == Mode::Flatten {
            self.written.extend(path.ancestors().map(Path::to_path_buf));
        }
    }

    /// `.wh..wh..opq` in the directory `dfd` (at `parent` below the root).
    fn opaque(&self, dfd: i32, parent: &Path, shown: &str) -> Result<(), UnpackError> {
        match self.mode {
            Mode::Snapshot => {
                fsat::set_xattr(dfd, "trusted.overlay.opaque", b"y").map_err(io_err(shown))
            }
            Mode::Flatten => {
                // Hide what lower layers left here, but not what this layer already wrote.
                for child in fsat::list_dir(dfd).map_err(io_err(shown))? {
                    let path = parent.join(OsStr::from_bytes(child.as_bytes()));
                    if !self.written.contains(&path) {
                        fsat::remove_all(dfd, &child).map_err(io_err(shown))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// `.wh.<target>` in the directory `dfd`.
    fn whiteout(
        &self,
        dfd: i32,
        target: &str,
        header: &tar::Header,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let target = fsat::cstr(OsStr::new(target)).map_err(io_err(shown))?;
        fsat::remove_all(dfd, &target).map_err(io_err(shown))?;
        if self.mode == Mode::Flatten {
            return Ok(());
        }
        fsat::mknod(dfd, &target, libc::S_IFCHR, 0, 0).map_err(io_err(shown))?;
        self.set_owner(dfd, &target, header, shown)
    }

    /// Writes the file, directory, link or device `c` in the directory `dfd`.
    fn node<R: Read>(
        &self,
        dfd: i32,
        c: &CString,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| invalid(shown, e))? & 0o7777;
        if kind != EntryType::Directory {
            fsat::remove_all(dfd, c).map_err(io_err(shown))?;
        }
        match kind {
            EntryType::Directory => {
                match fsat::mkdir(dfd, c, 0o755) {
                    Err(e) if is_not_a_dir(&e) => {
                        // A file or symlink of the same name from earlier: replace it.
                        fsat::remove_all(dfd, c).map_err(io_err(shown))?;
                        fsat::mkdir(dfd, c, 0o755).map_err(io_err(shown))?;
                    }
                    other => other.map_err(io_err(shown))?,
                }
                self.set_owner(dfd, c, &header, shown)?;
                fsat::chmod(dfd, c, mode).map_err(io_err(shown))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut file = fsat::create_file(dfd, c).map_err(io_err(shown))?;
                io::copy(entry, &mut file).map_err(io_err(shown))?;
                self.set_owner(dfd, c, &header, shown)?;
                // After chown: chown clears setuid/setgid bits, which the image wants kept.
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(io_err(shown))?;
            }
            EntryType::Symlink => {
                let target = header
                    .link_name()
                    .map_err(|e| invalid(shown, e))?
                    .ok_or_else(|| invalid(shown, "symlink without target"))?;
                let t = fsat::cstr(target.as_os_str()).map_err(io_err(shown))?;
                fsat::symlink(dfd, c, &t).map_err(io_err(shown))?;
                self.set_owner(dfd, c, &header, shown)?;
            }
            EntryType::Link => {
                // A hard link shares the target's inode: attributes are the target's.
                return self.hard_link(dfd, c, &header, shown);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.privileged && kind != EntryType::Fifo {
                    return Ok(()); // only root may create device nodes
                }
                let ftype = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                fsat::mknod(dfd, c, ftype | mode, major, minor).map_err(io_err(shown))?;
                self.set_owner(dfd, c, &header, shown)?;
                fsat::chmod(dfd, c, mode).map_err(io_err(shown))?;
            }
            // PAX/GNU metadata entries are consumed by the tar reader; anything else is skipped.
            _ => return Ok(()),
        }
        if let Ok(mtime) = header.mtime() {
            fsat::set_mtime(dfd, c, mtime as i64).map_err(io_err(shown))?;
        }
        Ok(())
    }

    /// Hard-links `c` in `dfd` to the link target, resolved inside the root like any entry path.
    fn hard_link(
        &self,
        dfd: i32,
        c: &CString,
        header: &tar::Header,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let target = header
            .link_name()
            .map_err(|e| invalid(shown, e))?
            .ok_or_else(|| invalid(shown, "hard link without target"))?;
        let mut tparts = components(&target, shown)?;
        let tname = tparts
            .pop()
            .ok_or_else(|| escape(shown, "hard link to the root"))?;
        let tdir = open_parent(&self.root, &tparts, false, shown)?;
        let tc = fsat::cstr(&tname).map_err(io_err(shown))?;
        fsat::link(tdir.as_raw_fd(), &tc, dfd, c).map_err(io_err(shown))
    }

    /// Gives `name` in `dfd` the entry's owner (when privileged).
    fn set_owner(
        &self,
        dfd: i32,
        name: &CString,
        header: &tar::Header,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if !self.privileged {
            return Ok(());
        }
        let uid = header.uid().map_err(|e| invalid(shown, e))? as u32;
        let gid = header.gid().map_err(|e| invalid(shown, e))? as u32;
        fsat::chown(dfd, name, uid, gid).map_err(io_err(shown))
    }
}

#[cfg(test)]
mod tests;

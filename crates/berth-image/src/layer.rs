//! Writing layers: reproducible layer tarballs from files, directories and archives.
//!
//! A layer is written with entries sorted by path, a fixed mtime, uid/gid given by the caller
//! (`--chown`, else 0), no user/group names and no extended attributes, gzip-compressed with a
//! fixed header (mtime 0, no file name), so the same inputs always give the same digest.

use std::collections::BTreeMap;
use std::io::{Read as _, Write};

use berth_oci::unpack::Compression;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::ContentStore;
use berth_oci::digest::{Digest, Hasher};

/// What a layer entry holds.
#[derive(Clone, Debug)]
pub enum EntryKind {
    /// A regular file copied from this path on disk.
    File(PathBuf),
    /// A regular file with these bytes (from an extracted archive).
    Data(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Symlink(String),
}

/// One entry of a layer being assembled.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its kind and content.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
}

/// A written layer blob.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerBlob {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (the config's `diff_id`).
    pub diff_id: Digest,
    /// Compressed size.
    pub size: u64,
}

/// Collects entries (by path inside the image, without leading `/`) and writes a layer.
#[derive(Default, Debug)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
}

impl LayerBuilder {
    /// Adds (or replaces) an entry, creating its parent directories (mode 0755).
    pub fn insert(&mut self, path: &str, entry: Entry) {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        if path.is_empty() {
            return;
        }
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Entry {
                    kind: EntryKind::Dir,
                    mode: 0o755,
                });
            parent = p.parent();
        }
        self.entries.insert(path, entry);
    }

    /// Adds a file, directory tree or symlink from disk at `dest`; `keep(path)` filters the
    /// files of a directory tree by their path relative to `src`.
    pub fn add_path(&mut self, src: &Path, dest: &str, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
        let meta = std::fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, e))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if meta.file_type().is_symlink() {
            let t = std::fs::read_link(src).map_err(|e| Error::io("readlink", src, e))?;
            self.insert(
                dest,
                Entry {
                    kind: EntryKind::Symlink(t.to_string_lossy().into_owned()),
                    mode: 0o777,
                },
            );
        } else if meta.is_dir() {
            self.insert(
                dest,
                Entry {
                    kind: EntryKind::Dir,
                    mode,
                },
            );
            self.add_dir_contents(src, src, dest, keep)?;
        } else {
            self.insert(
                dest,
                Entry {
                    kind: EntryKind::File(src.to_path_buf()),
                    mode,
                },
            );
        }
        Ok(())
    }

    fn add_dir_contents(
        &mut self,
        root: &Path,
        dir: &Path,
        dest: &str,
        keep: &dyn Fn(&Path) -> bool,
    ) -> Result<()> {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            if !keep(rel) {
                continue;
            }
            let target = format!(
                "{}/{}",
                dest.trim_end_matches('/'),
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
            if meta.is_dir() {
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
                self.insert(
                    &target,
                    Entry {
                        kind: EntryKind::Dir,
                        mode,
                    },
                );
                self.add_dir_contents(root, &p, &target, keep)?;
            } else {
                self.add_path(&p, &target, keep)?;
            }
        }
        Ok(())
    }

    /// Adds the members of a (possibly gzip-compressed) tar archive under `dest` (ADD).
    pub fn add_archive(&mut self, archive: &Path, dest: &str) -> Result<()> {
        let f = std::fs::File::open(archive).map_err(|e| Error::io("open", archive, e))?;
        let mut ar = tar::Archive::new(decompressor(f).map_err(|e| Error::io("read", archive, e))?);
        let entries = ar
            .entries()
            .map_err(|e| Error::io("read tar", archive, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::io("read tar", archive, e))?;
            let path = entry
                .path()
                .map_err(|e| Error::io("read tar", archive, e))?
                .to_string_lossy()
                .into_owned();
            let target = format!(
                "{}/{}",
                dest.trim_end_matches('/'),
                path.trim_start_matches("./")
            );
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            let kind = match entry.header().entry_type() {
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => EntryKind::Symlink(
                    entry
                        .link_name()
                        .ok()
                        .flatten()
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::new();
                    entry
                        .read_to_end(&mut data)
                        .map_err(|e| Error::io("read tar", archive, e))?;
                    EntryKind::Data(data)
                }
                _ => continue,
            };
            self.insert(&target, Entry { kind, mode });
        }
        Ok(())
    }

    /// Merges another builder's entries (later entries replace earlier ones).
    pub fn extend(&mut self, other: LayerBuilder) {
        self.entries.extend(other.entries);
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A digest over paths, kinds, modes and contents: the content part of a build cache key.
    pub fn content_hash(&self) -> Result<Digest> {
        let mut h = Hasher::new();
        for (path, e) in &self.entries {
            h.update(path.as_bytes());
            h.update(format!("\0{:o}\0", e.mode).as_bytes());
            match &e.kind {
                EntryKind::Dir => h.update(b"d"),
                EntryKind::Symlink(t) => h.update(format!("l{t}").as_bytes()),
                EntryKind::Data(d) => h.update(Digest::of(d).hex().as_bytes()),
                EntryKind::File(p) => {
                    let mut f = std::fs::File::open(p).map_err(|e| Error::io("open", p, e))?;
                    let mut fh = Hasher::new();
                    std::io::copy(&mut f, &mut fh).map_err(|e| Error::io("read", p, e))?;
                    h.update(fh.finish().hex().as_bytes());
                }
            }
            h.update(b"\n");
        }
        Ok(Digest::from_hasher(h))
    }

    /// Writes the gzip layer into `store` with owner `uid:gid` and mtime `mtime` on every entry.
    pub fn write(&self, store: &ContentStore, uid: u64, gid: u64, mtime: u64) -> Result<LayerBlob> {
        let tmp = store.ingest_path();
        let result = self
            .write_to(&tmp, uid, gid, mtime)
            .and_then(|(diff_id, digest, size)| {
                store.commit_verified(&tmp, &digest)?;
                Ok(LayerBlob {
                    digest,
                    diff_id,
                    size,
                })
            });
        let _ = std::fs::remove_file(&tmp);
        result
    }

    fn write_to(
        &self,
        tmp: &Path,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Result<(Digest, Digest, u64)> {
        let file = std::fs::File::create(tmp).map_err(|e| Error::io("create", tmp, e))?;
        let gz_out = HashWriter::new(std::io::BufWriter::new(file));
        // Fixed gzip header: mtime 0, no name, OS "unknown"; flate2's defaults are fixed.
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(gz_out, flate2::Compression::default());
        let mut tar = tar::Builder::new(HashWriter::new(gz));
        let io = |e| Error::io("write layer", tmp, e);
        for (path, e) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(mtime);
            match &e.kind {
                EntryKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                        .map_err(io)?;
                }
                EntryKind::Symlink(t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, path, t).map_err(io)?;
                }
                EntryKind::Data(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    tar.append_data(&mut h, path, &d[..]).map_err(io)?;
                }
                EntryKind::File(p) => {
                    let f = std::fs::File::open(p).map_err(|e| Error::io("open", p, e))?;
                    let len = f.metadata().map_err(|e| Error::io("stat", p, e))?.len();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(len);
                    tar.append_data(&mut h, path, f.take(len)).map_err(io)?;
                }
            }
        }
        let tar_out = tar.into_inner().map_err(io)?;
        let diff_id = Digest::from_hasher(tar_out.hasher);
        let gz_out = tar_out.inner.finish().map_err(io)?;
        let (mut buf, hasher, size) = (gz_out.inner, gz_out.hasher, gz_out.count);
        buf.flush().map_err(io)?;
        Ok((diff_id, Digest::from_hasher(hasher), size))
    }
}

/// A writer that hashes and counts what passes through.
struct HashWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a possibly gzip- or zstd-compressed file as a reader of its uncompressed bytes.
fn decompressor(mut f: std::fs::File) -> std::io::Result<Box<dyn std::io::Read>> {
    use std::io::{Seek as _, SeekFrom};
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic)?;
    f.seek(SeekFrom::Start(0))?;
    Compression::detect(&magic[..n]).reader(f)
}

/// Whether the file looks like a tar archive (gzip/zstd-compressed or plain ustar).
pub fn is_archive(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = decompressor(f) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    r.read_exact(&mut head).is_ok() && &head[257..262] == b"ustar"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f.txt"), "hello").unwrap();
        std::fs::write(dir.join("a/z.bin"), vec![1u8; 100_000]).unwrap();
        std::os::unix::fs::symlink("b/f.txt", dir.join("a/link")).unwrap();
    }

    #[test]
    fn layers_are_reproducible_and_owned_as_asked() {
        let t1 = tempfile::tempdir().unwrap();
        let t2 = tempfile::tempdir().unwrap();
        tree(t1.path());
        std::thread::sleep(std::time::Duration::from_millis(20));
        tree(t2.path()); // different mtimes and inode order
        let store_dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(store_dir.path()).unwrap();
        let build = |root: &Path, uid| {
            let mut b = LayerBuilder::default();
            b.add_path(&root.join("a"), "/opt/a", &|_| true).unwrap();
            b.write(&store, uid, uid, 0).unwrap()
        };
        let l1 = build(t1.path(), 0);
        assert_eq!(l1, build(t2.path(), 0));
        assert_ne!(l1.digest, build(t1.path(), 1000).digest);
        // The layer lists sorted entries with parents, fixed metadata and the symlink intact.
        let f = std::fs::File::open(store.path(&l1.digest)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(
                (e.header().mtime().unwrap(), e.header().uid().unwrap()),
                (0, 0)
            );
            assert_eq!(e.header().username().unwrap(), Some(""));
            names.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            names,
            vec![
                "opt/",
                "opt/a/",
                "opt/a/b/",
                "opt/a/b/f.txt",
                "opt/a/link",
                "opt/a/z.bin"
            ]
        );
        let root = tempfile::tempdir().unwrap();
        let blob = std::fs::File::open(store.path(&l1.digest)).unwrap();
        let tar = Compression::Gzip.reader(blob).unwrap();
        berth_oci::unpack::unpack_layer(tar, root.path(), berth_oci::unpack::Mode::Flatten)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("opt/a/link")).unwrap(),
            "hello"
        );
    }
}

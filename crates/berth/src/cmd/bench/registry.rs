//! `berth bench registry`: push and pull throughput of a generated ~200 MB image with `skopeo`
//! against berth's registry and against Debian's `docker-registry`, in one run.
//!
//! The image has random (incompressible) layers wrapped in *stored* (uncompressed) gzip blocks:
//! skopeo sees gzip layers and copies them as they are instead of compressing them on the way,
//! so the figures measure the registries, not a compressor. Every run starts both registries on
//! fresh storage, so no push can be answered by "already there" or by a cross-repository mount.
//! Build with `--release` for meaningful figures.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_oci::digest::{Algorithm, Digest, Hasher};

/// Arguments of `berth bench registry`.
#[derive(clap::Args)]
pub struct Args {
    /// Total image size in MB (split evenly over the layers).
    #[arg(long, default_value_t = 200)]
    size_mb: u64,
    /// Number of layers.
    #[arg(long, default_value_t = 4)]
    layers: u64,
    /// Runs per registry; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Path of Debian's distribution registry.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    docker_registry: PathBuf,
    /// Binary to run as `BIN registry --port P --data-dir D --registry-auth none` for berth's
    /// side (default: this executable).
    #[arg(long)]
    berth_bin: Option<PathBuf>,
}

/// Runs `berth bench registry`.
pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(
        args.layers > 0 && args.size_mb > 0 && args.runs > 0,
        "sizes and runs must be positive"
    );
    let work = tempfile_dir()?;
    let result = bench(&args, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(args: &Args, work: &Path) -> Result<()> {
    let layout = work.join("image");
    let started = Instant::now();
    let bytes = write_layout(&layout, args.layers, args.size_mb * 1_000_000 / args.layers)?;
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "generated {mb:.1} MB image ({} layers) in {:.1?}",
        args.layers,
        started.elapsed()
    );

    let mut berth = Figures::default();
    let mut peer = Figures::default();
    for run in 0..args.runs {
        for (name, figures) in [("berth", &mut berth), ("docker-registry", &mut peer)] {
            let server = match name {
                "berth" => Server::berth(
                    args.berth_bin.as_deref(),
                    &work.join(format!("berth-{run}")),
                )?,
                _ => Server::docker_registry(
                    &args.docker_registry,
                    &work.join(format!("peer-{run}")),
                )?,
            };
            let (push, pull) =
                push_pull(&server, &layout, &work.join(format!("pulled-{name}-{run}")))?;
            eprintln!(
                "run {}: {name:<16} push {:>7.1} MB/s  pull {:>7.1} MB/s",
                run + 1,
                mb / push,
                mb / pull
            );
            figures.push.push(push);
            figures.pull.push(pull);
        }
    }
    report(mb, &berth, &peer);
    Ok(())
}

#[derive(Default)]
struct Figures {
    push: Vec<f64>,
    pull: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn report(mb: f64, berth: &Figures, peer: &Figures) {
    let (bp, bl) = (mb / median(&berth.push), mb / median(&berth.pull));
    let (pp, pl) = (mb / median(&peer.push), mb / median(&peer.pull));
    println!(
        "registry throughput, {mb:.1} MB image, skopeo copy over loopback (median of {} runs)",
        berth.push.len()
    );
    println!("{:<18}{:>14}{:>14}", "", "push MB/s", "pull MB/s");
    println!("{:<18}{bp:>14.1}{bl:>14.1}", "berth");
    println!("{:<18}{pp:>14.1}{pl:>14.1}", "docker-registry");
    println!("{:<18}{:>14.2}{:>14.2}", "berth / peer", bp / pp, bl / pl);
}

/// Times `skopeo copy` of the layout into the registry and back out into a fresh layout;
/// returns (push seconds, pull seconds) and checks the pulled manifest is the pushed one.
fn push_pull(server: &Server, layout: &Path, pulled: &Path) -> Result<(f64, f64)> {
    let remote = format!("docker://{}/bench/model:v1", server.host());
    let t = Instant::now();
    skopeo_copy(&format!("oci:{}:bench", layout.display()), &remote)?;
    let push = t.elapsed().as_secs_f64();
    let t = Instant::now();
    skopeo_copy(&remote, &format!("oci:{}:bench", pulled.display()))?;
    let pull = t.elapsed().as_secs_f64();
    let want = std::fs::read(layout.join("index.json"))?;
    let got = std::fs::read(pulled.join("index.json"))?;
    anyhow::ensure!(
        manifest_digest(&want)? == manifest_digest(&got)?,
        "pulled image differs from the pushed one"
    );
    std::fs::remove_dir_all(pulled)?;
    Ok((push, pull))
}

fn manifest_digest(index: &[u8]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(index)?;
    v["manifests"][0]["digest"]
        .as_str()
        .map(str::to_string)
        .context("index.json without manifest")
}

fn skopeo_copy(src: &str, dst: &str) -> Result<()> {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            src,
            dst,
        ])
        .stdin(Stdio::null())
        .output()
        .context("running skopeo (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {src} {dst}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-bench-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A registry process on 127.0.0.1:<free port>, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `berth registry` (`bin`, default this executable) without auth, storage under `dir`.
    fn berth(bin: Option<&Path>, dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => std::env::current_exe()?,
        };
        let child = Command::new(bin)
            .args([
                "registry",
                "--registry-auth",
                "none",
                "--port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir)
            .env("BERTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Server { child, port }.ready()
    }

    /// Debian's `docker-registry` with a generated config, storage under `dir`.
    fn docker_registry(bin: &Path, dir: &Path) -> Result<Self> {
        let port = free_port()?;
        std::fs::create_dir_all(dir.join("storage"))?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Server { child, port }.ready()
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn ready(mut self) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("registry exited early: {status}");
            }
            if get_status(&self.host(), "/v2/").is_ok_and(|s| s == 200) {
                return Ok(self);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("registry on {} did not become ready", self.host())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn get_status(host: &str, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(std::str::from_utf8(&head[9..12])?.parse()?)
}

/// Writes an OCI layout with `layers` random layers of `layer_size` bytes each (tag `bench`);
/// returns the total size of its blobs.
fn write_layout(dir: &Path, layers: u64, layer_size: u64) -> Result<u64> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut rng =
        SplitMix64(Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id()));
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut total = 0;
    for i in 0..layers {
        let (digest, size, diff_id) = write_layer(&blobs, i, layer_size, &mut rng)?;
        total += size;
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest.to_string(), "size": size,
        }));
        diff_ids.push(diff_id.to_string());
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))?;
    let config_digest = write_blob(&blobs, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len() },
        "layers": descriptors,
    }))?;
    let manifest_digest = write_blob(&blobs, &manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest.to_string(),
            "size": manifest.len(), "annotations": { "org.opencontainers.image.ref.name": "bench" },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(total + config.len() as u64 + manifest.len() as u64)
}

fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<Digest> {
    let d = Digest::of_with(Algorithm::Sha256, bytes);
    std::fs::write(blobs.join(d.hex()), bytes)?;
    Ok(d)
}

/// One layer: `size` random bytes as a gzip member of stored deflate blocks. Returns the blob
/// digest, the blob size and the digest of the uncompressed bytes (the diff ID).
fn write_layer(
    blobs: &Path,
    index: u64,
    size: u64,
    rng: &mut SplitMix64,
) -> Result<(Digest, u64, Digest)> {
    let tmp = blobs.join(format!(".layer-{index}"));
    let mut out = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, File::create(&tmp)?),
        hasher: Algorithm::Sha256.hasher(),
        written: 0,
    };
    // gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut diff = Algorithm::Sha256.hasher();
    let mut crc = Crc32::default();
    let mut block = vec![0u8; 65_535];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill(&mut block[..n]);
        left -= n as u64;
        let len = n as u16;
        // Stored block: BFINAL on the last one, BTYPE 00, then LEN and its complement.
        out.write_all(&[u8::from(left == 0)])?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&(!len).to_le_bytes())?;
        out.write_all(&block[..n])?;
        diff.update(&block[..n]);
        crc.update(&block[..n]);
    }
    out.write_all(&crc.finish().to_le_bytes())?;
    out.write_all(&(size as u32).to_le_bytes())?;
    out.inner.flush()?;
    let (digest, written) = (out.hasher.finish(), out.written);
    std::fs::rename(&tmp, blobs.join(digest.hex()))?;
    Ok((digest, written, diff.finish()))
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A fast, non-cryptographic generator: its output does not compress, which is all we need.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// CRC-32 (IEEE, reflected), as gzip's trailer needs.
struct Crc32 {
    table: [u32; 256],
    value: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Crc32 {
            table,
            value: 0xffff_ffff,
        }
    }
}

impl Crc32 {
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.value =
                self.table[((self.value ^ u32::from(b)) & 0xff) as usize] ^ (self.value >> 8);
        }
    }

    fn finish(&self) -> u32 {
        !self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = Crc32::default();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xcbf4_3926);
    }

    #[test]
    fn generated_layer_is_valid_gzip_of_its_diff_id() {
        let dir = std::env::temp_dir().join(format!("berth-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (digest, size, diff_id) = write_layer(&dir, 0, 200_000, &mut SplitMix64(7)).unwrap();
        let path = dir.join(digest.hex());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        let out = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), 200_000);
        assert_eq!(Digest::of_with(Algorithm::Sha256, &out.stdout), diff_id);
    }
}

//! The one decompressor chooser: which compression a layer blob uses (from its media type, or
//! from its first bytes when there is no media type, as for `ADD` of a local archive) and a reader
//! of the uncompressed tar.

use std::io::{self, Read};

/// A layer media type that names no tar, gzip or zstd layer.
#[derive(Debug, thiserror::Error)]
#[error("unsupported layer media type {0}")]
pub struct UnsupportedMediaType(pub String);

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`+gzip`, Docker's `tar.gzip`).
    Gzip,
    /// zstd (`+zstd`).
    Zstd,
}

/// gzip's magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// Picks the decompressor for an OCI or Docker layer media type (also the non-distributable
    /// and foreign variants, which share the suffixes).
    pub fn from_media_type(media_type: &str) -> Result<Self, UnsupportedMediaType> {
        if media_type.ends_with("+gzip")
            || media_type.ends_with(".tar.gzip")
            || media_type.ends_with(".tar.gz")
        {
            Ok(Self::Gzip)
        } else if media_type.ends_with("+zstd") {
            Ok(Self::Zstd)
        } else if media_type.ends_with(".tar") {
            Ok(Self::None)
        } else {
            Err(UnsupportedMediaType(media_type.to_string()))
        }
    }

    /// Guesses the compression of a stream from its first bytes (anything neither gzip nor zstd
    /// is taken as a plain tar).
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&GZIP_MAGIC) {
            Self::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// Wraps a compressed stream into a reader of the uncompressed tar.
    pub fn reader<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::None => Box::new(r),
            // Multi-member: concatenated gzip streams are one valid layer.
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_magic_pick_the_decompressor() {
        for (mt, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
        ] {
            assert_eq!(Compression::from_media_type(mt).expect(mt), want);
        }
        let err = Compression::from_media_type("application/vnd.oci.image.config.v1+json")
            .expect_err("not a layer");
        assert_eq!(
            err.to_string(),
            "unsupported layer media type application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn readers_decompress() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, b"tar bytes").expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::encode_all(&b"tar bytes"[..], 1).expect("zstd");
        for (c, data) in [
            (Compression::None, b"tar bytes".to_vec()),
            (Compression::Gzip, gz),
            (Compression::Zstd, zst),
        ] {
            let mut out = Vec::new();
            c.reader(&data[..])
                .expect("reader")
                .read_to_end(&mut out)
                .expect("read");
            assert_eq!(out, b"tar bytes", "{c:?}");
        }
    }
}

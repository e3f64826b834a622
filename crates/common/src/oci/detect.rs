//! Telling an image's container format by what it holds, never by its name.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::digest::is_sha256_hex;
use crate::fill::read_up_to;
use crate::host_file::open_regular;

use super::read::OciError;
use super::tar_index::{clean_name, index_tar};

/// The container format of an image file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A directory with `oci-layout` and `index.json`.
    OciLayout,
    /// A tar holding an OCI layout (it may carry docker's `manifest.json` too: OCI wins).
    OciArchive,
    /// A tar with docker's `manifest.json` and no `oci-layout`.
    DockerArchive,
    /// Anything else: a root filesystem, as a tarball or a directory.
    Rootfs,
}

/// Tells what `path` is by looking inside: a directory with `oci-layout` and `index.json`
/// is an OCI layout; a tar with an `oci-layout` member is an oci-archive, one with docker's
/// `manifest.json` (a JSON array) a docker-archive; anything else is a root filesystem.
/// Only tar headers are read. A gzip file is a rootfs, unless its first entry shows an
/// image archive (a `docker save | gzip`): that is an error saying to decompress it.
pub fn detect(path: &Path) -> Result<ImageFormat, OciError> {
    let io_err = |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        let layout = path.join("oci-layout").is_file() && path.join("index.json").is_file();
        return Ok(if layout {
            ImageFormat::OciLayout
        } else {
            ImageFormat::Rootfs
        });
    }
    // A fifo or a device is no image, and opening one could block or never end.
    let (mut file, _) = open_regular(path).map_err(io_err)?;
    let mut head = [0u8; 512];
    let filled = read_up_to(&mut file, &mut head).map_err(io_err)?;
    if head[..filled].starts_with(b"\x1f\x8b") && gzip_holds_an_image_archive(path)? {
        return Err(OciError::CompressedArchive {
            path: path.to_path_buf(),
        });
    }
    // A tar header has "ustar" at 257; anything else (gzip, short files) is a rootfs image,
    // left to the unpacker to accept or explain.
    if filled < 512 || &head[257..262] != b"ustar" {
        return Ok(ImageFormat::Rootfs);
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let members = index_tar(path, file.try_clone().map_err(io_err)?)?;
    if members.contains_key("oci-layout") {
        return Ok(ImageFormat::OciArchive);
    }
    // docker's manifest.json is a JSON array; a rootfs may have a manifest.json of its
    // own at the top, which is something else.
    if let Some(&(offset, _)) = members.get("manifest.json") {
        let mut start = [0u8; 64];
        file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
        let n = read_up_to(&mut file, &mut start).map_err(io_err)?;
        if start[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Ok(ImageFormat::DockerArchive);
        }
    }
    Ok(ImageFormat::Rootfs)
}

/// Whether a gzip file's first tar entry is one an OCI or docker archive starts with
/// (`blobs/`, `oci-layout`, `index.json`, `manifest.json`, a `<sha256>/` layer dir): a
/// `docker save | gzip`, which must be decompressed to be read in place. Only the first
/// header is inflated.
fn gzip_holds_an_image_archive(path: &Path) -> Result<bool, OciError> {
    let (file, _) = open_regular(path).map_err(|source| OciError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut header = [0u8; 512];
    let mut decoder = flate2::read::GzDecoder::new(file);
    if decoder.read_exact(&mut header).is_err() {
        return Ok(false);
    }
    let name_len = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = clean_name(&header[..name_len]);
    let first = name.split('/').next().unwrap_or_default();
    Ok(matches!(
        first,
        "blobs" | "oci-layout" | "index.json" | "manifest.json"
    ) || is_sha256_hex(first.strip_suffix(".json").unwrap_or(first)))
}

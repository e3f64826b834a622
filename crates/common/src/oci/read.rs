//! Reading images made by other tools: an OCI image layout (a directory), an oci-archive
//! (a tar of one) and a docker-archive (`docker save` / `podman save`: `manifest.json`
//! beside the layer tars). All three are told apart by what they hold, never by name.
//!
//! What comes out is an [`OciImage`]: the layers in order (bottom first), each with the
//! digests to check it by, and the image config. A layer's bytes are read through
//! [`OciImage::open_layer`], which hashes them on the way: the blob against its
//! descriptor's digest and size, the uncompressed tar against the config's `diff_id`.
//! [`LayerStream::verify`], once the stream was read to its end, says whether both held.
//!
//! Archives are not unpacked to get at their blobs: the tar is indexed once (names and
//! data offsets, seeking over the data) and each blob is read in place.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::digest::{is_sha256_hex, sha256_bytes, HashingReader};
use crate::gzip::ParallelGunzip;
use crate::host_file::open_regular;
use crate::run_defaults::RunDefaults;
use crate::unpack::{sniff_compression, Compression};

pub use super::detect::{detect, ImageFormat};
use super::tar_index::{clean_name, index_tar};

/// index.json, a manifest, a config or docker's manifest.json larger than this is refused:
/// real ones are a few KiB, and they are read into memory.
const MAX_METADATA: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: a gzip-compressed OCI or docker archive; decompress it first (gunzip) and launch the .tar", path.display())]
    CompressedArchive { path: PathBuf },
    #[error("{}: {what} is missing from the image", path.display())]
    Missing { path: PathBuf, what: String },
    #[error("{}: {what} is not valid: {detail}", path.display())]
    Invalid {
        path: PathBuf,
        what: String,
        detail: String,
    },
    #[error("{}: {what} is larger than {} bytes; not an image this launcher reads", path.display(), MAX_METADATA)]
    TooLarge { path: PathBuf, what: String },
    #[error("{}: layer {digest} is {media_type}, which is not supported: use tar or tar+gzip layers", path.display())]
    UnsupportedLayer {
        path: PathBuf,
        digest: String,
        media_type: String,
    },
    #[error("{}: {what} does not match its digest (expected {expected}, got {actual}): the image is corrupt or was tampered with", path.display())]
    DigestMismatch {
        path: PathBuf,
        what: String,
        expected: String,
        actual: String,
    },
}

/// Where the image's files are: a directory, or members of a tar read in place.
#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        /// Member name (cleaned, no leading `./`) -> (data offset, size).
        members: HashMap<String, (u64, u64)>,
    },
}

/// One layer of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// sha256 (hex) of the uncompressed layer tar: the config's `rootfs.diff_ids` entry,
    /// and the name the cache keeps the unpacked layer under.
    pub diff_id: String,
    /// sha256 (hex) and size of the blob as stored, from its descriptor (OCI). A
    /// docker-archive gives none: its layers are checked by `diff_id` alone.
    pub blob_digest: Option<(String, u64)>,
    /// Where the blob is, inside the layout or archive.
    member: String,
}

/// An image read from a layout or archive: its layers and config, checked as read.
#[derive(Debug)]
pub struct OciImage {
    /// What identifies the image's content: the manifest's sha256 (OCI), or the config's
    /// (docker-archive: the config names every layer by diff_id).
    pub id: String,
    pub layers: Vec<Layer>,
    /// The config blob, exactly as stored (its digest was checked).
    pub config_json: Vec<u8>,
    /// The name the index gives the image (its `org.opencontainers.image.ref.name`
    /// annotation, as mkroot's `--tag` writes it); `None` for a docker-archive.
    pub name: Option<String>,
    source: Source,
}

fn sha256_hex_of(digest: &oci_spec::image::Digest) -> Option<String> {
    let hex = digest.digest();
    let sha256 = matches!(digest.algorithm(), oci_spec::image::DigestAlgorithm::Sha256);
    (sha256 && is_sha256_hex(hex)).then(|| hex.to_string())
}

impl OciImage {
    /// Reads the image at `path` (of a format [`detect`] recognised), checking the manifest
    /// and config against their digests. Layers are not read yet.
    pub fn open(path: &Path, format: ImageFormat) -> Result<OciImage, OciError> {
        let io_err = |source| OciError::Io {
            path: path.to_path_buf(),
            source,
        };
        let source = match format {
            ImageFormat::OciLayout => Source::Dir(path.to_path_buf()),
            ImageFormat::OciArchive | ImageFormat::DockerArchive => Source::Tar {
                path: path.to_path_buf(),
                members: index_tar(path, open_regular(path).map_err(io_err)?.0)?,
            },
            ImageFormat::Rootfs => {
                return Err(OciError::Missing {
                    path: path.to_path_buf(),
                    what: "oci-layout or manifest.json".to_string(),
                })
            }
        };
        let mut image = OciImage {
            id: String::new(),
            layers: Vec::new(),
            config_json: Vec::new(),
            name: None,
            source,
        };
        match format {
            ImageFormat::DockerArchive => image.read_docker_manifest()?,
            _ => image.read_oci_index()?,
        }
        Ok(image)
    }

    fn path(&self) -> &Path {
        match &self.source {
            Source::Dir(path) | Source::Tar { path, .. } => path,
        }
    }

    fn invalid(&self, what: &str, detail: impl ToString) -> OciError {
        OciError::Invalid {
            path: self.path().to_path_buf(),
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    /// The member `name`, opened at its start, and its size.
    fn open_member(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64), OciError> {
        let missing = || OciError::Missing {
            path: self.path().to_path_buf(),
            what: name.to_string(),
        };
        let io_err = |source| OciError::Io {
            path: self.path().join(name),
            source,
        };
        match &self.source {
            Source::Dir(dir) => {
                let path = dir.join(name);
                let (file, size) = match open_regular(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    other => other.map_err(io_err)?,
                };
                Ok((Box::new(file.take(size)), size))
            }
            Source::Tar { path, members } => {
                let &(offset, size) = members.get(name).ok_or_else(missing)?;
                let (mut file, _) = open_regular(path).map_err(io_err)?;
                file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
                Ok((Box::new(file.take(size)), size))
            }
        }
    }

    /// A small member (JSON) read whole; refused past [`MAX_METADATA`].
    fn read_member(&self, name: &str) -> Result<Vec<u8>, OciError> {
        let (reader, size) = self.open_member(name)?;
        if size > MAX_METADATA {
            return Err(OciError::TooLarge {
                path: self.path().to_path_buf(),
                what: name.to_string(),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader
            .take(MAX_METADATA)
            .read_to_end(&mut bytes)
            .map_err(|source| OciError::Io {
                path: self.path().join(name),
                source,
            })?;
        Ok(bytes)
    }

    /// A blob named by its descriptor digest, read whole and checked against it.
    fn read_blob(&self, what: &str, digest: &str, size: u64) -> Result<Vec<u8>, OciError> {
        let bytes = self.read_member(&format!("blobs/sha256/{digest}"))?;
        let actual = sha256_bytes(&bytes);
        if actual != digest || bytes.len() as u64 != size {
            return Err(OciError::DigestMismatch {
                path: self.path().to_path_buf(),
                what: what.to_string(),
                expected: format!("sha256:{digest} ({size} bytes)"),
                actual: format!("sha256:{actual} ({} bytes)", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// index.json -> the first image manifest (following nested indexes) -> config.
    fn read_oci_index(&mut self) -> Result<(), OciError> {
        let index_bytes = self.read_member("index.json")?;
        let mut index =
            ImageIndex::from_reader(&index_bytes[..]).map_err(|e| self.invalid("index.json", e))?;
        // An index may point at further indexes (multi-platform images); a few levels at
        // most, so a loop of indexes ends.
        for _ in 0..4 {
            let descriptor = index
                .manifests()
                .iter()
                .find(|d| {
                    d.platform().as_ref().is_none_or(|p| {
                        p.os().to_string() == "linux"
                            && p.architecture().to_string() == arch::ARCH_OCI
                    }) || index.manifests().len() == 1
                })
                .or_else(|| index.manifests().first())
                .ok_or_else(|| self.invalid("index.json", "it lists no manifest"))?
                .clone();
            let digest = sha256_hex_of(descriptor.digest())
                .ok_or_else(|| self.invalid("index.json", "a manifest digest is not sha256"))?;
            if let Some(name) = descriptor
                .annotations()
                .as_ref()
                .and_then(|a| a.get(super::REF_NAME_ANNOTATION))
            {
                self.name = Some(name.clone());
            }
            let bytes = self.read_blob("the manifest", &digest, descriptor.size())?;
            let nested = matches!(descriptor.media_type(), MediaType::ImageIndex)
                || descriptor
                    .media_type()
                    .to_string()
                    .contains("manifest.list");
            if nested {
                index = ImageIndex::from_reader(&bytes[..])
                    .map_err(|e| self.invalid("a nested index", e))?;
                continue;
            }
            let manifest = ImageManifest::from_reader(&bytes[..])
                .map_err(|e| self.invalid("the manifest", e))?;
            self.id = digest;
            return self.read_oci_manifest(&manifest);
        }
        Err(self.invalid("index.json", "indexes nest too deeply"))
    }

    fn read_oci_manifest(&mut self, manifest: &ImageManifest) -> Result<(), OciError> {
        let config = manifest.config();
        let config_digest = sha256_hex_of(config.digest())
            .ok_or_else(|| self.invalid("the manifest", "the config digest is not sha256"))?;
        self.config_json = self.read_blob("the config", &config_digest, config.size())?;
        let diff_ids = self.diff_ids()?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(self.invalid(
                "the config",
                format!(
                    "it lists {} diff_ids for {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            ));
        }
        for (descriptor, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let digest = sha256_hex_of(descriptor.digest())
                .ok_or_else(|| self.invalid("the manifest", "a layer digest is not sha256"))?;
            let media_type = descriptor.media_type().to_string();
            let supported = ["tar", "tar+gzip", "tar.gzip"];
            if !supported.iter().any(|end| media_type.ends_with(end)) {
                let media_type = if media_type.contains("zstd") {
                    format!("{media_type} (zstd)")
                } else {
                    media_type
                };
                return Err(OciError::UnsupportedLayer {
                    path: self.path().to_path_buf(),
                    digest: format!("sha256:{digest}"),
                    media_type,
                });
            }
            self.layers.push(Layer {
                diff_id,
                member: format!("blobs/sha256/{digest}"),
                blob_digest: Some((digest, descriptor.size())),
            });
        }
        Ok(())
    }

    /// docker's manifest.json: `[{"Config": "...", "Layers": ["...", ...]}]`.
    fn read_docker_manifest(&mut self) -> Result<(), OciError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            layers: Vec<String>,
        }
        let bytes = self.read_member("manifest.json")?;
        let entries: Vec<Entry> =
            serde_json::from_slice(&bytes).map_err(|e| self.invalid("manifest.json", e))?;
        let [entry] = entries.as_slice() else {
            return Err(self.invalid(
                "manifest.json",
                format!("it lists {} images; launch runs one", entries.len()),
            ));
        };
        let config_member = clean_name(entry.config.as_bytes());
        self.config_json = self.read_member(&config_member)?;
        self.id = sha256_bytes(&self.config_json);
        // docker names the config by its digest (`<hex>.json`, `blobs/sha256/<hex>`).
        let stem = config_member.rsplit('/').next().unwrap_or_default();
        let named = stem.strip_suffix(".json").unwrap_or(stem);
        if is_sha256_hex(named) && named != self.id {
            return Err(OciError::DigestMismatch {
                path: self.path().to_path_buf(),
                what: "the config".to_string(),
                expected: format!("sha256:{named}"),
                actual: format!("sha256:{}", self.id),
            });
        }
        let diff_ids = self.diff_ids()?;
        if diff_ids.len() != entry.layers.len() {
            return Err(self.invalid(
                "the config",
                format!(
                    "it lists {} diff_ids for {} layers",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        for (member, diff_id) in entry.layers.iter().zip(diff_ids) {
            self.layers.push(Layer {
                diff_id,
                blob_digest: None,
                member: clean_name(member.as_bytes()),
            });
        }
        Ok(())
    }

    /// The config's `rootfs.diff_ids`, as hex.
    fn diff_ids(&self) -> Result<Vec<String>, OciError> {
        let config = self.config()?;
        config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|id| {
                id.strip_prefix("sha256:")
                    .filter(|hex| is_sha256_hex(hex))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        self.invalid("the config", format!("diff_id {id:?} is not sha256"))
                    })
            })
            .collect()
    }

    /// The image config.
    pub fn config(&self) -> Result<ImageConfiguration, OciError> {
        ImageConfiguration::from_reader(&self.config_json[..])
            .map_err(|e| self.invalid("the config", e))
    }

    /// The layer's uncompressed tar, hashed as it is read; check it with
    /// [`LayerStream::verify`] once it was read to its end.
    pub fn open_layer(&self, layer: &Layer) -> Result<LayerStream, OciError> {
        let (raw, _) = self.open_member(&layer.member)?;
        // Compression told by magic number, whatever the media type says (docker's
        // archives carry plain tars under a name that says nothing).
        let (compression, whole) = sniff_compression(raw).map_err(|source| OciError::Io {
            path: self.path().join(&layer.member),
            source,
        })?;
        if let Compression::Unsupported(name) = compression {
            return Err(OciError::UnsupportedLayer {
                path: self.path().to_path_buf(),
                digest: format!("sha256:{}", layer.diff_id),
                media_type: format!("{name}-compressed"),
            });
        }
        let gzip = compression == Compression::Gzip;
        let blob_hash = Arc::new(OnceLock::new());
        let diff_hash = Arc::new(OnceLock::new());
        // An uncompressed blob is the tar itself: hashed once, for both checks.
        let tar: Box<dyn Read + Send> = match (gzip, &layer.blob_digest) {
            (false, _) => Box::new(whole),
            (true, None) => Box::new(ParallelGunzip::buffered(whole)),
            (true, Some(_)) => Box::new(ParallelGunzip::buffered(HashingReader::new(
                whole,
                blob_hash.clone(),
            ))),
        };
        Ok(LayerStream {
            reader: Some(HashingReader::new(tar, diff_hash.clone())),
            blob_hash: if gzip { blob_hash } else { diff_hash.clone() },
            diff_hash,
            layer: layer.clone(),
            image: self.path().to_path_buf(),
        })
    }

    /// The defaults the config gives a container.
    pub fn run_defaults(&self) -> Result<RunDefaults, OciError> {
        Ok(RunDefaults::from_config(&self.config()?))
    }
}

/// A layer's uncompressed tar, with the digests of what was read kept for
/// [`LayerStream::verify`].
pub struct LayerStream {
    reader: Option<HashingReader<Box<dyn Read + Send>>>,
    blob_hash: Arc<OnceLock<(String, u64)>>,
    diff_hash: Arc<OnceLock<(String, u64)>>,
    layer: Layer,
    image: PathBuf,
}

impl LayerStream {
    /// The tar stream (to hand to the unpacker, which reads it to its end).
    pub fn take_reader(&mut self) -> impl Read + Send {
        self.reader
            .take()
            .expect("the layer's reader is taken once")
    }

    /// Whether the blob and the tar read matched their descriptor and diff_id. A stream
    /// not read to its end fails too.
    pub fn verify(&self) -> Result<(), OciError> {
        let mismatch = |what: &str, expected: String, actual: String| OciError::DigestMismatch {
            path: self.image.clone(),
            what: what.to_string(),
            expected,
            actual,
        };
        let layer_name = format!("layer {}", self.layer.member);
        if let Some((digest, size)) = &self.layer.blob_digest {
            let (actual, read) = self.blob_hash.get().cloned().unwrap_or_default();
            if &actual != digest || read != *size {
                return Err(mismatch(
                    &layer_name,
                    format!("sha256:{digest} ({size} bytes)"),
                    format!("sha256:{actual} ({read} bytes)"),
                ));
            }
        }
        let (actual, _) = self.diff_hash.get().cloned().unwrap_or_default();
        if actual != self.layer.diff_id {
            return Err(mismatch(
                &format!("{layer_name} (uncompressed, its diff_id)"),
                format!("sha256:{}", self.layer.diff_id),
                format!("sha256:{actual}"),
            ));
        }
        Ok(())
    }
}

/// The OCI name of this machine's architecture (`amd64`, `arm64`, ...).
mod arch {
    pub const ARCH_OCI: &str = match std::env::consts::ARCH.as_bytes() {
        b"x86_64" => "amd64",
        b"aarch64" => "arm64",
        b"x86" => "386",
        b"powerpc64" => "ppc64le",
        _ => std::env::consts::ARCH,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(b"./blobs//sha256/ab"), "blobs/sha256/ab");
        assert_eq!(clean_name(b"../../x"), "x");
    }

    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for name in names {
            let mut header = tar::Header::new_ustar();
            header.set_size(2);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, &b"{}"[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn formats_are_told_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let not_docker = write("a.tgz", &tar_of(&["x/layer.tar", "manifest.json"]));
        assert_eq!(detect(&not_docker).unwrap(), ImageFormat::Rootfs);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(4);
        builder
            .append_data(&mut header, "manifest.json", &b" [{}"[..])
            .unwrap();
        let docker = write("a2.tgz", &builder.into_inner().unwrap());
        assert_eq!(detect(&docker).unwrap(), ImageFormat::DockerArchive);
        let oci = write(
            "b",
            &tar_of(&["./index.json", "./oci-layout", "manifest.json"]),
        );
        assert_eq!(detect(&oci).unwrap(), ImageFormat::OciArchive);
        let rootfs = write("c.oci.tar", &tar_of(&["bin/sh", "etc/passwd"]));
        assert_eq!(detect(&rootfs).unwrap(), ImageFormat::Rootfs);
        let gzip = write("d.tar", b"\x1f\x8b\x08\x00 not read further");
        assert_eq!(detect(&gzip).unwrap(), ImageFormat::Rootfs);
        let gzip = |tar: Vec<u8>| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, &tar).unwrap();
            encoder.finish().unwrap()
        };
        let rootfs_tgz = write("e.tgz", &gzip(tar_of(&["./bin/sh"])));
        assert_eq!(detect(&rootfs_tgz).unwrap(), ImageFormat::Rootfs);
        let saved = write("f.tgz", &gzip(tar_of(&["blobs/sha256/x", "manifest.json"])));
        assert!(matches!(
            detect(&saved),
            Err(OciError::CompressedArchive { .. })
        ));
        assert_eq!(detect(dir.path()).unwrap(), ImageFormat::Rootfs);
        write("oci-layout", b"{}");
        write("index.json", b"{}");
        assert_eq!(detect(dir.path()).unwrap(), ImageFormat::OciLayout);
    }

    #[test]
    fn the_hashing_reader_reports_at_the_end() {
        let slot = Arc::new(OnceLock::new());
        let mut reader = HashingReader::new(&b"abc"[..], slot.clone());
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(
            slot.get().unwrap().0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

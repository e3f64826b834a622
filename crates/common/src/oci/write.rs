//! Writing an OCI image layout, as a directory or a tar, from the entries of an image.
//!
//! The image is one layer: the same reproducible tar [`crate::archive`] writes, gzip'd
//! with [`crate::gzip`]. The layer is streamed to an unnamed scratch file beside the
//! output (nothing to leave behind, even on Ctrl-C) while two hashes run over it (the
//! uncompressed tar's sha256 is the config's `diff_id`, the gzip blob's is the layer
//! digest), so the image is never held in memory. The layout itself is written by
//! [`crate::archive`], each path it makes recorded in the options' [`PartialOutput`](crate::partial::PartialOutput). The config, manifest and index
//! are canonical JSON (keys sorted at every level, no whitespace), so the same entries
//! and the same [`OciImage`] give the same digests and, through the archive writer, the
//! same outer bytes. Beside the OCI index sits docker's `manifest.json` (and
//! `repositories`), so `docker load` and `podman load` take the tar as well.

use super::{
    blob_path, BLOBS_DIR, DOCKER_MANIFEST_FILE, DOCKER_REPOSITORIES_FILE, INDEX_FILE,
    OCI_LAYOUT_CONTENTS, OCI_LAYOUT_FILE, REF_NAME_ANNOTATION,
};
use crate::archive::{
    self, ArchiveError, EntryKind, ImageEntry, OutputTarget, WriteOptions, WriteSummary,
};
use crate::digest::{sha256_bytes, HashingWriter};
use crate::gzip::ParallelGzip;
use crate::run_defaults::RunDefaults;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};
use serde::Serialize;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where the layout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciTarget {
    /// An oci-archive: the layout in a plain tar (`img.oci.tar`).
    Tar(PathBuf),
    /// The layout as a directory (new or empty).
    Directory(PathBuf),
}

impl OciTarget {
    pub fn path(&self) -> &Path {
        match self {
            OciTarget::Tar(path) | OciTarget::Directory(path) => path,
        }
    }
}

/// What the image config says about running the image, beside its layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciImage {
    /// The command, environment, working directory and user.
    pub run: RunDefaults,
    /// The image's name, `name:tag` (see [`ImageName`]).
    pub name: Option<ImageName>,
    /// The history entry's `created_by` (the tool, not the host's command line).
    pub created_by: String,
    /// GOARCH name (`amd64`, `arm64`, ...) of the image's programs; `None`: this host's.
    pub architecture: Option<String>,
}

/// The architecture the image's config names: its programs', or this host's.
pub fn architecture_of(image: &OciImage) -> String {
    image
        .architecture
        .clone()
        .unwrap_or_else(|| Arch::default().to_string())
}

/// An image reference `[registry/]repository:tag`, checked as registries accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub repository: String,
    pub tag: String,
}

impl ImageName {
    /// Parses `name[:tag]` (tag `latest` when absent). The repository is lowercase
    /// letters, digits and `._-/` (a registry host may carry a `:port`); the tag is
    /// letters, digits and `._-`, at most 128 characters, not starting with `.` or `-`.
    pub fn parse(text: &str) -> Result<ImageName, OciWriteError> {
        let bad = || OciWriteError::BadName {
            name: text.to_string(),
        };
        let last_slash = text.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match text[last_slash..].rfind(':') {
            Some(i) => (&text[..last_slash + i], &text[last_slash + i + 1..]),
            None => (text, "latest"),
        };
        let (host, path) = match repository.split_once('/') {
            Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => {
                (Some(host), path)
            }
            _ => (None, repository),
        };
        let path_ok = !path.is_empty()
            && path.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            });
        let host_ok = host.is_none_or(|h| {
            let (name, port) = h.split_once(':').unwrap_or((h, "0"));
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        });
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !(path_ok && host_ok && tag_ok) {
            return Err(bad());
        }
        Ok(ImageName {
            repository: repository.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OciWriteError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path}: cannot write the image: {source}; choose a writable output path")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: the directory {dir} does not exist; create it (mkdir -p {dir}) or choose another output path")]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    #[error("--tag {name:?}: not an image name; write NAME:TAG in lowercase, like myapp:1.0")]
    BadName { name: String },
    #[error("cannot describe the image: {0}; please report it")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// The digests of what was written, as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSummary {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    /// sha256 of the uncompressed layer (the config's `rootfs.diff_ids[0]`).
    pub diff_id: String,
    /// What the layer holds.
    pub layer: WriteSummary,
}

/// Writes `entries` as a one-layer OCI image layout to `target`.
pub fn write_layout(
    entries: &[ImageEntry],
    image: &OciImage,
    target: &OciTarget,
    options: &WriteOptions,
) -> Result<OciSummary, OciWriteError> {
    if let OciTarget::Directory(path) = target {
        // Told before the layer is written, not after: the layer can take minutes.
        let not_empty = fs::read_dir(path).is_ok_and(|mut listing| listing.next().is_some());
        if not_empty {
            return Err(ArchiveError::DirectoryNotEmpty { path: path.clone() }.into());
        }
    }
    let scratch = ScratchLayer::beside(target.path())?;
    let layer = write_layer(entries, &scratch, target.path(), options)?;
    let created = rfc3339(options.mtime);

    let config = image_config(image, &layer.diff_id, &created)?;
    let config_bytes = canonical_json(&config);
    let config_hex = sha256_bytes(&config_bytes);
    let layer_descriptor = descriptor(MediaType::ImageLayerGzip, layer.size, &layer.hex)?;
    let config_descriptor = descriptor(
        MediaType::ImageConfig,
        config_bytes.len() as u64,
        &config_hex,
    )?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor)
        .layers(vec![layer_descriptor])
        .build()?;
    let manifest_bytes = canonical_json(&manifest);
    let manifest_hex = sha256_bytes(&manifest_bytes);

    let mut manifest_descriptor = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .size(manifest_bytes.len() as u64)
        .digest(digest(&manifest_hex)?);
    if let Some(name) = &image.name {
        manifest_descriptor = manifest_descriptor.annotations(HashMap::from([(
            REF_NAME_ANNOTATION.to_string(),
            name.to_string(),
        )]));
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor.build()?])
        .build()?;

    let docker_manifest = serde_json::json!([{
        "Config": blob_path(&config_hex),
        "RepoTags": image.name.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "Layers": [blob_path(&layer.hex)],
    }]);

    let mut layout = vec![
        dir("blobs"),
        dir(BLOBS_DIR),
        ImageEntry {
            path: blob_path(&layer.hex),
            mode: 0o644,
            kind: EntryKind::File {
                source: scratch.path(),
                size: layer.size,
            },
        },
        bytes(&blob_path(&config_hex), config_bytes),
        bytes(&blob_path(&manifest_hex), manifest_bytes),
        bytes(OCI_LAYOUT_FILE, OCI_LAYOUT_CONTENTS.as_bytes().to_vec()),
        bytes(INDEX_FILE, canonical_json(&index)),
        bytes(DOCKER_MANIFEST_FILE, canonical_json(&docker_manifest)),
    ];
    if let Some(name) = &image.name {
        // Old `docker load` names the image from this file: repository -> tag -> the
        // top layer's id (here the layer blob's, the only layer).
        let repositories = serde_json::json!({ &name.repository: { &name.tag: &layer.hex } });
        layout.push(bytes(
            DOCKER_REPOSITORIES_FILE,
            canonical_json(&repositories),
        ));
    }
    let outer = WriteOptions {
        mtime: options.mtime,
        progress: None,
        made: options.made,
    };
    let archive_target = match target {
        OciTarget::Tar(path) => OutputTarget::Tar(path.clone()),
        OciTarget::Directory(path) => OutputTarget::Directory(path.clone()),
    };
    archive::write_image(&layout, &archive_target, &outer)?;
    Ok(OciSummary {
        manifest_digest: format!("sha256:{manifest_hex}"),
        config_digest: format!("sha256:{config_hex}"),
        layer_digest: format!("sha256:{}", layer.hex),
        diff_id: layer.diff_id,
        layer: layer.summary,
    })
}

/// The image config: platform, the layer's diff_id, how to run it, and one history entry.
fn image_config(
    image: &OciImage,
    diff_id: &str,
    created: &str,
) -> Result<oci_spec::image::ImageConfiguration, OciWriteError> {
    let defaults = &image.run;
    let mut run = ConfigBuilder::default();
    if !defaults.entrypoint.is_empty() {
        run = run.entrypoint(defaults.entrypoint.clone());
    }
    if !defaults.cmd.is_empty() {
        run = run.cmd(defaults.cmd.clone());
    }
    if !defaults.env.is_empty() {
        run = run.env(defaults.env.clone());
    }
    if let Some(workdir) = &defaults.working_dir {
        run = run.working_dir(workdir.clone());
    }
    if let Some(user) = &defaults.user {
        run = run.user(user.clone());
    }
    let history = HistoryBuilder::default()
        .created(created.to_string())
        .created_by(image.created_by.clone())
        .build()?;
    Ok(ImageConfigurationBuilder::default()
        .created(created.to_string())
        .architecture(Arch::from(architecture_of(image).as_str()))
        .os(Os::Linux)
        .config(run.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()?,
        )
        .history(vec![history])
        .build()?)
}

/// The written layer blob.
struct Layer {
    /// sha256 of the gzip blob.
    hex: String,
    size: u64,
    /// `sha256:<hex>` of the uncompressed tar.
    diff_id: String,
    summary: WriteSummary,
}

/// Streams the image tar through a hash (diff_id), gzip, and a second hash (digest)
/// into `path`.
fn write_layer(
    entries: &[ImageEntry],
    scratch: &ScratchLayer,
    shown: &Path,
    options: &WriteOptions,
) -> Result<Layer, OciWriteError> {
    let output = |source| OciWriteError::Output {
        path: shown.to_path_buf(),
        source,
    };
    let file = scratch.file.try_clone().map_err(output)?;
    let blob = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let mut tar = HashingWriter::new(ParallelGzip::new(blob));
    let summary = archive::write_tar_stream(entries, &mut tar, shown, options)?;
    let (gzip, diff_hex, _) = tar.finish();
    let blob = gzip.finish().map_err(output)?;
    let (out, hex, size) = blob.finish();
    out.into_inner().map_err(|e| output(e.into_error()))?;
    Ok(Layer {
        hex,
        size,
        diff_id: format!("sha256:{diff_hex}"),
        summary,
    })
}

/// The layer blob while the layout is assembled: a file without a name in the output's
/// directory (O_TMPFILE, or created and unlinked at once where the filesystem lacks it),
/// on the output's disk rather than in a possibly small /tmp. The kernel frees it when
/// the last descriptor closes, so an interrupted build leaves nothing behind.
struct ScratchLayer {
    file: File,
}

impl ScratchLayer {
    fn beside(target: &Path) -> Result<ScratchLayer, OciWriteError> {
        // Components drop a trailing `/`, so `out/` is put beside, not inside, the
        // (to be empty) output directory.
        let target: PathBuf = target.components().collect();
        let dir = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let file =
            tempfile::tempfile_in(dir).map_err(
                |source| match crate::archive::missing_directory(&target, &source) {
                    Some(dir) => OciWriteError::MissingDirectory {
                        path: target.clone(),
                        dir,
                    },
                    None => OciWriteError::Output {
                        path: target.clone(),
                        source,
                    },
                },
            )?;
        Ok(ScratchLayer { file })
    }

    /// A path that opens this file, for the archive writer, which reads entries by path.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

fn dir(path: &str) -> ImageEntry {
    ImageEntry {
        path: path.to_string(),
        mode: 0o755,
        kind: EntryKind::Dir,
    }
}

fn bytes(path: &str, contents: Vec<u8>) -> ImageEntry {
    ImageEntry {
        path: path.to_string(),
        mode: 0o644,
        kind: EntryKind::Bytes(contents),
    }
}

fn digest(hex: &str) -> Result<Digest, OciWriteError> {
    Ok(Digest::try_from(format!("sha256:{hex}"))?)
}

fn descriptor(media_type: MediaType, size: u64, hex: &str) -> Result<Descriptor, OciWriteError> {
    Ok(Descriptor::new(media_type, size, digest(hex)?))
}

/// Compact JSON with the keys of every object sorted. Going through `serde_json::Value`
/// (a BTreeMap without serde_json's `preserve_order`) is what sorts the keys: oci-spec
/// keeps annotations in a HashMap, whose order changes from run to run.
pub fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("image metadata serialises to JSON");
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// `seconds` since the epoch as RFC 3339 UTC (`2023-11-14T22:13:20Z`).
pub fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days` (eras of 400 years, March-based years).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        #[derive(Serialize)]
        struct Unsorted {
            zebra: u32,
            inner: HashMap<String, u32>,
        }
        let value = Unsorted {
            zebra: 1,
            inner: (0..20).map(|i| (format!("k{i:02}"), i)).collect(),
        };
        let text = String::from_utf8(canonical_json(&value)).unwrap();
        assert!(
            text.starts_with("{\"inner\":{\"k00\":0,\"k01\":1,"),
            "{text}"
        );
        assert!(text.ends_with(",\"k19\":19},\"zebra\":1}"), "{text}");
    }

    #[test]
    fn image_names_are_checked() {
        let name = ImageName::parse("myapp").unwrap();
        assert_eq!(name.to_string(), "myapp:latest");
        let name = ImageName::parse("127.0.0.1:5000/team/app:v1.2").unwrap();
        assert_eq!(name.repository, "127.0.0.1:5000/team/app");
        assert_eq!(name.tag, "v1.2");
        for bad in [
            "",
            "MyApp:1",
            "app:",
            "app:-x",
            "a//b:1",
            "app:t/x",
            "app name:1",
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn layout_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(current) = stack.pop() {
            for entry in fs::read_dir(&current).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    files.push((name, fs::read(&path).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn a_layout_directory_holds_consistent_digests() {
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("hello");
        fs::write(&source, b"hello\n").unwrap();
        let entries = vec![
            dir("etc"),
            ImageEntry {
                path: "etc/hello".into(),
                mode: 0o644,
                kind: EntryKind::File { source, size: 6 },
            },
        ];
        let image = OciImage {
            run: RunDefaults {
                cmd: vec!["/bin/sh".into()],
                env: vec!["PATH=/usr/bin".into()],
                ..RunDefaults::default()
            },
            name: Some(ImageName::parse("test/app:1").unwrap()),
            created_by: "mkroot test".into(),
            ..OciImage::default()
        };
        let made = crate::partial::PartialOutput::default();
        let options = WriteOptions {
            mtime: 1_700_000_000,
            progress: None,
            made: &made,
        };
        let out = temp.path().join("layout");
        let summary = write_layout(
            &entries,
            &image,
            &OciTarget::Directory(out.clone()),
            &options,
        )
        .unwrap();
        let files = layout_files(&out);
        for (name, contents) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(sha256_bytes(contents), hex, "{name}");
            }
        }
        let read = |name: &str| -> serde_json::Value {
            serde_json::from_slice(&fs::read(out.join(name)).unwrap()).unwrap()
        };
        let index = read("index.json");
        assert_eq!(
            index["manifests"][0]["digest"].as_str(),
            Some(summary.manifest_digest.as_str())
        );
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
            "test/app:1"
        );
        let manifest = read(&blob_path(&summary.manifest_digest[7..]));
        assert_eq!(manifest["config"]["digest"], summary.config_digest.as_str());
        let config = read(&blob_path(&summary.config_digest[7..]));
        assert_eq!(config["rootfs"]["diff_ids"][0], summary.diff_id.as_str());
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["config"]["Cmd"][0], "/bin/sh");
        assert_eq!(config["os"], "linux");
        let docker = read("manifest.json");
        assert_eq!(docker[0]["RepoTags"][0], "test/app:1");
        // No scratch file is left, and a second run gives the same bytes.
        assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 2);
        let again = temp.path().join("again/");
        write_layout(
            &entries,
            &image,
            &OciTarget::Directory(again.clone()),
            &options,
        )
        .unwrap();
        assert_eq!(layout_files(&again), files);
    }
}

//! `--check`: does an image still match its recipe? The image's manifest (every file's
//! sha256, read from inside the image) is compared with the manifest a fresh plan would
//! write; a difference names the image path and the host file it comes from.
//!
//! Reads a root filesystem (`.tgz`, `.tar`, directory) or an OCI layout mkroot wrote
//! (oci-archive or directory): there the manifest is inside the one gzip'd layer.

use crate::copy::PlannedKind;
use crate::image::{self, ImageError};
use crate::plan::Plan;
use mkroot_common::manifest::{ImageManifest, MANIFEST_PATH};
use mkroot_common::oci::write::{architecture_of, OciImage};
use mkroot_common::oci::{blob_path, BLOBS_DIR, INDEX_FILE, OCI_LAYOUT_FILE, REF_NAME_ANNOTATION};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: cannot read the image: {source}; check the path given to --check")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no {MANIFEST_PATH} inside; --check needs an image mkroot built")]
    NoManifest { path: PathBuf },
    #[error("{path}: malformed {MANIFEST_PATH}: {reason}; rebuild the image")]
    BadManifest { path: PathBuf, reason: String },
    #[error(transparent)]
    Plan(#[from] ImageError),
}

/// One way the image differs from what the recipe builds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The file's contents (or link target) differ; `host` is where the recipe takes it.
    Changed { path: String, host: Option<PathBuf> },
    /// The recipe now puts this file in; the image lacks it.
    Added { path: String, host: Option<PathBuf> },
    /// The image has this file; the recipe no longer puts it in.
    Removed { path: String },
    /// The default command or environment differ.
    Setting { name: &'static str },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = |host: &Option<PathBuf>| match host {
            Some(host) => format!(" (host file {})", host.display()),
            None => String::new(),
        };
        match self {
            Difference::Changed { path, host } => write!(f, "changed: {path}{}", from(host)),
            Difference::Added { path, host } => write!(f, "added: {path}{}", from(host)),
            Difference::Removed { path } => write!(f, "removed: {path}"),
            Difference::Setting { name } => write!(f, "changed: the image's {name}"),
        }
    }
}

/// Compares the image at `image_path` with what `plan` would write, in path order; for
/// an OCI image also its run settings with `oci` (what the recipe would configure).
pub fn check(
    plan: &Plan,
    oci: &OciImage,
    image_path: &Path,
) -> Result<Vec<Difference>, CheckError> {
    let fresh = image::contents(plan)?.manifest;
    let built = read_manifest(image_path)?;
    let hosts: BTreeMap<String, PathBuf> = plan
        .tree
        .entries()
        .iter()
        .filter_map(|(path, entry)| match &entry.kind {
            PlannedKind::File { source, .. } => Some((format!("/{path}"), source.clone())),
            _ => None,
        })
        .collect();
    let facts = |m: &ImageManifest| -> BTreeMap<String, (Option<String>, Option<String>)> {
        m.files
            .iter()
            .map(|f| (f.path.clone(), (f.sha256.clone(), f.link.clone())))
            .collect()
    };
    let (now, then) = (facts(&fresh), facts(&built));
    let mut differences = Vec::new();
    for (path, fact) in &now {
        let host = hosts.get(path).cloned();
        match then.get(path) {
            None => differences.push(Difference::Added {
                path: path.clone(),
                host,
            }),
            Some(old) if old != fact => differences.push(Difference::Changed {
                path: path.clone(),
                host,
            }),
            Some(_) => {}
        }
    }
    for path in then.keys().filter(|p| !now.contains_key(*p)) {
        differences.push(Difference::Removed { path: path.clone() });
    }
    if fresh.cmd != built.cmd {
        differences.push(Difference::Setting {
            name: "default command",
        });
    }
    if fresh.env != built.env {
        differences.push(Difference::Setting {
            name: "environment",
        });
    }
    if let Some(settings) = read_oci_settings(image_path)? {
        differences.extend(settings.differences(oci));
    }
    Ok(differences)
}

/// What an OCI image's index and config say about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciSettings {
    pub name: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub architecture: Option<String>,
}

impl OciSettings {
    fn differences(&self, oci: &OciImage) -> Vec<Difference> {
        let architecture = architecture_of(oci);
        let fields: [(&'static str, bool); 7] = [
            (
                "tag",
                self.name != oci.name.as_ref().map(ToString::to_string),
            ),
            ("entrypoint", self.entrypoint != oci.entrypoint),
            ("OCI command", self.cmd != oci.cmd),
            ("OCI environment", self.env != oci.env),
            ("working directory", self.workdir != oci.workdir),
            ("user", self.user != oci.user),
            (
                "architecture",
                self.architecture.as_deref() != Some(architecture.as_str()),
            ),
        ];
        fields
            .into_iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| Difference::Setting { name })
            .collect()
    }

    /// From a layout's `index.json` and its blobs (looked up by name).
    fn from_layout(index: &[u8], blob: impl Fn(&str) -> Option<Vec<u8>>) -> Option<OciSettings> {
        let index: Value = serde_json::from_slice(index).ok()?;
        let entry = &index["manifests"][0];
        let hex = |digest: &Value| digest.as_str()?.strip_prefix("sha256:").map(str::to_string);
        let manifest: Value = serde_json::from_slice(&blob(&hex(&entry["digest"])?)?).ok()?;
        let config: Value =
            serde_json::from_slice(&blob(&hex(&manifest["config"]["digest"])?)?).ok()?;
        let run = &config["config"];
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(String::from);
        Some(OciSettings {
            name: text(&entry["annotations"][REF_NAME_ANNOTATION]),
            entrypoint: strings(&run["Entrypoint"]),
            cmd: strings(&run["Cmd"]),
            env: strings(&run["Env"]),
            workdir: text(&run["WorkingDir"]),
            user: text(&run["User"]),
            architecture: text(&config["architecture"]),
        })
    }
}

/// Largest index, manifest or config read while looking for the run settings: they are
/// a few hundred bytes; anything bigger is a layer.
const METADATA_LIMIT: u64 = 1 << 20;

/// The run settings of an OCI image; `None` for a root filesystem.
pub fn read_oci_settings(path: &Path) -> Result<Option<OciSettings>, CheckError> {
    let read_error = |source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let Ok(index) = std::fs::read(path.join(INDEX_FILE)) else {
            return Ok(None);
        };
        return Ok(OciSettings::from_layout(&index, |hex| {
            std::fs::read(path.join(blob_path(hex))).ok()
        }));
    }
    // One pass over the tar, keeping the small files; the seek skips the layer.
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let file = File::open(path).map_err(read_error)?;
    let mut archive = tar::Archive::new(file);
    let Ok(entries) = archive.entries_with_seek() else {
        return Ok(None);
    };
    for entry in entries {
        // A gzip'd root filesystem is not a plain tar: no OCI settings in it.
        let Ok(mut entry) = entry else {
            return Ok(None);
        };
        let name = entry
            .path()
            .map_err(read_error)?
            .to_string_lossy()
            .into_owned();
        let metadata = name == INDEX_FILE || name.starts_with(BLOBS_DIR);
        if !metadata || entry.size() > METADATA_LIMIT {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(read_error)?;
        small.insert(name, bytes);
    }
    let Some(index) = small.get(INDEX_FILE) else {
        return Ok(None);
    };
    Ok(OciSettings::from_layout(index, |hex| {
        small.get(&blob_path(hex)).cloned()
    }))
}

/// The manifest inside an image, whatever form the image takes.
pub fn read_manifest(path: &Path) -> Result<ImageManifest, CheckError> {
    let read_error = |source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = if path.is_dir() {
        if path.join(OCI_LAYOUT_FILE).exists() {
            find_in_layout_dir(&path.join(BLOBS_DIR)).map_err(read_error)?
        } else {
            match std::fs::read(path.join(MANIFEST_PATH)) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(read_error(e)),
            }
        }
    } else {
        let file = File::open(path).map_err(read_error)?;
        find_in_tar(maybe_gunzip(BufReader::new(file)).map_err(read_error)?, 1)
            .map_err(read_error)?
    };
    let bytes = bytes.ok_or_else(|| CheckError::NoManifest {
        path: path.to_path_buf(),
    })?;
    ImageManifest::from_json_bytes(&bytes).map_err(|e| CheckError::BadManifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The stream, decompressed if it starts with gzip's magic bytes.
fn maybe_gunzip<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// The manifest's bytes from a tar. In an oci-archive (`depth` 1) the manifest is one
/// level down, in a layer blob: each blob that reads as a tar is searched too.
fn find_in_tar(reader: impl Read, depth: u32) -> io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./");
        if name == MANIFEST_PATH {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(Some(bytes));
        }
        if depth > 0 && name.starts_with(BLOBS_DIR) && entry.header().entry_type().is_file() {
            let inner = maybe_gunzip(BufReader::new(&mut entry))?;
            // JSON blobs are not tars: a read error there only means "not this blob".
            if let Ok(Some(bytes)) = find_in_tar(inner, depth - 1) {
                return Ok(Some(bytes));
            }
        }
    }
    Ok(None)
}

/// The manifest's bytes from the blobs of a layout directory.
fn find_in_layout_dir(blobs: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(blobs)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for blob in names {
        let reader = maybe_gunzip(BufReader::new(File::open(&blob)?))?;
        if let Ok(Some(bytes)) = find_in_tar(reader, 0) {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

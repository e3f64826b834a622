//! `--check`: does an image still match its recipe? The image's manifest (every file's
//! sha256, read from inside the image) is compared with the manifest a fresh plan would
//! write; a difference names the image path and the host file it comes from.
//!
//! Reads a root filesystem (`.tgz`, `.tar`, directory) or an OCI image (layout directory
//! or archive) through the launcher's own reader ([`mkroot_common::oci::read`]), which
//! checks the index, manifest and config against their digests: there the manifest is
//! inside a layer, and the run settings come from the config.

use crate::copy::PlannedKind;
use crate::image::{self, ImageError};
use crate::plan::Plan;
use mkroot_common::gzip::ParallelGunzip;
use mkroot_common::manifest::{ImageManifest, MANIFEST_PATH};
use mkroot_common::oci::read::{self, ImageFormat, OciError, RunDefaults};
use mkroot_common::oci::write::{architecture_of, OciImage};
use mkroot_common::unpack::{sniff_compression, Compression};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
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
    Oci(#[from] OciError),
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
    // An OCI image is opened (and its index, manifest and config checked) once, for
    // both its manifest file and its run settings.
    let oci_image = open_oci(image_path)?;
    let built = read_manifest(image_path, oci_image.as_ref())?;
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
    if let Some(image) = &oci_image {
        differences.extend(OciSettings::of(image)?.differences(oci));
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

    /// From the image's index (its name) and config (the rest).
    fn of(image: &read::OciImage) -> Result<OciSettings, OciError> {
        let config = image.config()?;
        let run = RunDefaults::from_config(&config);
        Ok(OciSettings {
            name: image.name.clone(),
            entrypoint: run.entrypoint,
            cmd: run.cmd,
            env: run.env,
            workdir: run.working_dir,
            user: run.user,
            architecture: Some(config.architecture().to_string()),
        })
    }
}

/// The image at `path`, read through the OCI reader; `None` for a root filesystem.
fn open_oci(path: &Path) -> Result<Option<read::OciImage>, CheckError> {
    match read::detect(path)? {
        ImageFormat::Rootfs => Ok(None),
        format => Ok(Some(read::OciImage::open(path, format)?)),
    }
}

/// The manifest inside the image at `path`, whatever form it takes: a root filesystem
/// (directory, tar, compressed tar) has it at [`MANIFEST_PATH`], an OCI image (`oci`,
/// opened by [`open_oci`]) in a layer.
fn read_manifest(path: &Path, oci: Option<&read::OciImage>) -> Result<ImageManifest, CheckError> {
    let read_error = |source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match oci {
        Some(image) => find_in_layers(image, path)?,
        None if path.is_dir() => match std::fs::read(path.join(MANIFEST_PATH)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_error(e)),
        },
        None => {
            let file = File::open(path).map_err(read_error)?;
            find_in_tar(decompressed(file).map_err(read_error)?).map_err(read_error)?
        }
    };
    let bytes = bytes.ok_or_else(|| CheckError::NoManifest {
        path: path.to_path_buf(),
    })?;
    ImageManifest::from_json_bytes(&bytes).map_err(|e| CheckError::BadManifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The manifest's bytes from the image's layers, the top one first (it would be the
/// one a container sees).
fn find_in_layers(image: &read::OciImage, path: &Path) -> Result<Option<Vec<u8>>, CheckError> {
    for layer in image.layers.iter().rev() {
        let mut stream = image.open_layer(layer)?;
        let found = find_in_tar(stream.take_reader()).map_err(|source| CheckError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A root filesystem tarball's bytes, decompressed as `launch` reads them (compression
/// told by magic number); a compression it does not read is named in the error.
fn decompressed(file: File) -> io::Result<Box<dyn Read>> {
    let (compression, whole) = sniff_compression(file)?;
    Ok(match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(ParallelGunzip::buffered(whole)),
        Compression::Unsupported(name) => {
            return Err(io::Error::other(format!(
                "compressed with {name}, which mkroot does not write or read"
            )))
        }
    })
}

/// The manifest's bytes from a root filesystem's tar.
fn find_in_tar(reader: impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name.trim_start_matches("./") == MANIFEST_PATH {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

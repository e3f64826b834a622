//! `--check`: does an image still match its recipe? The image is judged by what it
//! holds, not by what it says of itself: every path is read from the image
//! ([`crate::inventory`]: regular files hashed, types, modes and link targets taken) and
//! compared with what a fresh plan would write; a difference names the image path and
//! the host file it comes from. The image's manifest gives only the run settings it
//! records (command, environment), compared too; it is itself a file of the image, so a
//! manifest edited to match tampered files is a difference as well.
//!
//! Reads a root filesystem (`.tgz`, `.tar`, directory) or an OCI image (layout directory
//! or archive) through the launcher's own reader ([`mkroot_common::oci::read`]), which
//! checks the index, manifest, config and layers against their digests: there the files
//! are what the layers make, applied bottom first with their whiteouts as `launch`
//! stacks them (mkroot writes one layer; an image with more, one built `FROM` it say,
//! differs by that and is judged by what a container of it would hold), and the run
//! settings come from the config too.

use crate::copy::PlannedKind;
use crate::image::{self, ImageError};
use crate::inventory::{self, Content, Inventory, InventoryError, Item};
use crate::plan::Plan;
use mkroot_common::archive::EntryKind;
use mkroot_common::digest;
use mkroot_common::host_file;
use mkroot_common::manifest::{ImageManifest, MANIFEST_PATH};
use mkroot_common::oci::read::{self, ImageFormat, OciError};
use mkroot_common::oci::write::{architecture_of, OciImage};
use mkroot_common::run_defaults::RunDefaults;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: cannot read the image: {source}; check the path given to --check")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {what}; --check takes an image file or directory")]
    NotAnImage { path: PathBuf, what: &'static str },
    #[error("{path}: no {MANIFEST_PATH} inside; --check needs an image mkroot built")]
    NoManifest { path: PathBuf },
    #[error("{path}: malformed {MANIFEST_PATH}: {reason}; rebuild the image")]
    BadManifest { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Inventory {
        path: PathBuf,
        #[source]
        source: InventoryError,
    },
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Plan(#[from] ImageError),
}

/// One way the image differs from what the recipe builds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The path is there, but not as the recipe builds it; `host` is where the recipe
    /// takes it.
    Changed {
        path: String,
        host: Option<PathBuf>,
        change: Change,
    },
    /// The recipe now puts this file in; the image lacks it.
    Added { path: String, host: Option<PathBuf> },
    /// The image has this file; the recipe no longer puts it in.
    Removed { path: String },
    /// The default command or environment differ.
    Setting { name: &'static str },
}

/// How a path of the image differs from the recipe's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A regular file with other bytes.
    Content,
    /// Another kind of file (a symlink where a file should be).
    Kind {
        found: &'static str,
        built: &'static str,
    },
    /// A symlink to somewhere else.
    Target { found: String, built: String },
    /// Other permission bits.
    Mode { found: u32, built: u32 },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Content => write!(f, "content differs from what the recipe builds"),
            Change::Kind { found, built } => write!(f, "{found}, where the recipe builds {built}"),
            Change::Target { found, built } => {
                write!(
                    f,
                    "a symlink to {found}, where the recipe builds one to {built}"
                )
            }
            Change::Mode { found, built } => {
                write!(f, "mode {found:04o}, where the recipe builds {built:04o}")
            }
        }
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = |host: &Option<PathBuf>| match host {
            Some(host) => format!(" (host file {})", host.display()),
            None => String::new(),
        };
        match self {
            Difference::Changed { path, host, change } => {
                write!(f, "changed: {path}: {change}{}", from(host))
            }
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
    let expected = expected_inventory(plan)?;
    // An OCI image is opened (and its index, manifest and config checked) once, for
    // both its layer and its run settings.
    let oci_image = open_oci(image_path)?;
    let mut differences = Vec::new();
    let found = match &oci_image {
        Some(image) => {
            if image.layers.len() != 1 {
                differences.push(Difference::Setting {
                    name: "layers (the recipe builds one)",
                });
            }
            stacked_inventory(image, image_path)?
        }
        None => inventory::of_rootfs(image_path).map_err(|source| CheckError::Inventory {
            path: image_path.to_path_buf(),
            source,
        })?,
    };
    let built = image_manifest(image_path, &found)?;
    let hosts = host_files(plan);
    differences.extend(path_differences(&expected, &found, &hosts));
    let fresh = &expected.manifest;
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

/// What the plan would write, as an inventory, and the manifest it would write.
struct Expected {
    items: BTreeMap<String, Item>,
    manifest: ImageManifest,
}

fn expected_inventory(plan: &Plan) -> Result<Expected, CheckError> {
    let contents = image::contents(plan)?;
    let hashes: BTreeMap<&str, &str> = contents
        .manifest
        .files
        .iter()
        .filter_map(|f| Some((f.path.as_str(), f.sha256.as_deref()?)))
        .collect();
    let items = contents
        .entries
        .iter()
        .map(|entry| {
            let path = format!("/{}", entry.path);
            let file = |sha256: String| Content::File { sha256 };
            let content = match &entry.kind {
                EntryKind::Dir => Content::Dir,
                EntryKind::Symlink { target } => Content::Symlink {
                    target: target.clone(),
                },
                EntryKind::Bytes(bytes) => file(digest::sha256_bytes(bytes)),
                EntryKind::File { .. } | EntryKind::Hardlink { .. } => {
                    file(hashes.get(path.as_str()).unwrap_or(&"").to_string())
                }
            };
            let item = Item {
                content,
                mode: entry.mode & 0o7777,
            };
            (path, item)
        })
        .collect();
    Ok(Expected {
        items,
        manifest: contents.manifest,
    })
}

/// Where the plan takes each image file from on the host, for the messages.
fn host_files(plan: &Plan) -> BTreeMap<String, PathBuf> {
    plan.tree
        .entries()
        .iter()
        .filter_map(|(path, entry)| match &entry.kind {
            PlannedKind::File { source, .. } => Some((format!("/{path}"), source.clone())),
            _ => None,
        })
        .collect()
}

/// The paths the image holds otherwise than the plan, in path order: added and changed
/// ones, then those the image has and the plan not. The manifest is a difference only
/// when nothing else is: any other change changes it too.
fn path_differences(
    expected: &Expected,
    found: &Inventory,
    hosts: &BTreeMap<String, PathBuf>,
) -> Vec<Difference> {
    let manifest = format!("/{MANIFEST_PATH}");
    let mut differences = Vec::new();
    let mut manifest_changed = None;
    for (path, built) in &expected.items {
        let host = hosts.get(path).cloned();
        let Some(item) = found.items.get(path) else {
            differences.push(Difference::Added {
                path: path.clone(),
                host,
            });
            continue;
        };
        if let Some(change) = change(item, built) {
            let difference = Difference::Changed {
                path: path.clone(),
                host,
                change,
            };
            if *path == manifest {
                manifest_changed = Some(difference);
            } else {
                differences.push(difference);
            }
        }
    }
    for path in found.items.keys() {
        if !expected.items.contains_key(path) {
            differences.push(Difference::Removed { path: path.clone() });
        }
    }
    if differences.is_empty() {
        differences.extend(manifest_changed);
    }
    differences
}

/// How `found` differs from `built`, the first way that matters.
fn change(found: &Item, built: &Item) -> Option<Change> {
    match (&found.content, &built.content) {
        (Content::File { sha256: a }, Content::File { sha256: b }) if a != b => {
            Some(Change::Content)
        }
        (Content::Symlink { target: a }, Content::Symlink { target: b }) => {
            (a != b).then(|| Change::Target {
                found: a.clone(),
                built: b.clone(),
            })
        }
        (a, b) if a.kind() != b.kind() => Some(Change::Kind {
            found: a.kind(),
            built: b.kind(),
        }),
        _ => (found.mode != built.mode).then_some(Change::Mode {
            found: found.mode,
            built: built.mode,
        }),
    }
}

/// The run settings the image's own manifest records.
fn image_manifest(path: &Path, found: &Inventory) -> Result<ImageManifest, CheckError> {
    let bytes = found
        .manifest
        .as_ref()
        .ok_or_else(|| CheckError::NoManifest {
            path: path.to_path_buf(),
        })?;
    ImageManifest::from_json_bytes(bytes).map_err(|e| CheckError::BadManifest {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The inventory of an OCI image: its layers applied bottom first.
fn stacked_inventory(image: &read::OciImage, path: &Path) -> Result<Inventory, CheckError> {
    if image.layers.is_empty() {
        return Err(CheckError::NoManifest {
            path: path.to_path_buf(),
        });
    }
    let mut stacked = Inventory::default();
    for layer in &image.layers {
        stacked.apply_layer(layer_inventory(image, layer, path)?);
    }
    Ok(stacked)
}

/// The inventory of one layer, the layer checked against its digests once read to its
/// end.
fn layer_inventory(
    image: &read::OciImage,
    layer: &read::Layer,
    path: &Path,
) -> Result<Inventory, CheckError> {
    let mut stream = image.open_layer(layer)?;
    let mut reader = stream.take_reader();
    let found = inventory::of_tar(&mut reader).map_err(|source| CheckError::Inventory {
        path: path.to_path_buf(),
        source,
    })?;
    io::copy(&mut reader, &mut io::sink()).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    stream.verify()?;
    Ok(found)
}

/// What an OCI image's index and config say about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciSettings {
    pub name: Option<String>,
    pub run: RunDefaults,
    pub architecture: Option<String>,
}

impl OciSettings {
    fn differences(&self, oci: &OciImage) -> Vec<Difference> {
        let architecture = architecture_of(oci);
        let (found, expected) = (&self.run, &oci.run);
        let fields: [(&'static str, bool); 7] = [
            (
                "tag",
                self.name != oci.name.as_ref().map(ToString::to_string),
            ),
            ("entrypoint", found.entrypoint != expected.entrypoint),
            ("OCI command", found.cmd != expected.cmd),
            ("OCI environment", found.env != expected.env),
            (
                "working directory",
                found.working_dir != expected.working_dir,
            ),
            ("user", found.user != expected.user),
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
        Ok(OciSettings {
            name: image.name.clone(),
            run: RunDefaults::from_config(&config),
            architecture: Some(config.architecture().to_string()),
        })
    }
}

/// The image at `path`, read through the OCI reader; `None` for a root filesystem. A
/// fifo or a device is refused before anything opens it.
fn open_oci(path: &Path) -> Result<Option<read::OciImage>, CheckError> {
    let meta = std::fs::metadata(path).map_err(|source| CheckError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(CheckError::NotAnImage {
            path: path.to_path_buf(),
            what: host_file::kind_name(&meta.file_type()),
        });
    }
    match read::detect(path)? {
        ImageFormat::Rootfs => Ok(None),
        format => Ok(Some(read::OciImage::open(path, format)?)),
    }
}

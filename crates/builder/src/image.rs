//! From a plan to image entries and the manifest, then to the output.
//!
//! Names of one host file become hard links to the first of them in image order (the
//! writer puts the target first). Every file is hashed for the manifest before the
//! archive is written, because the manifest sorts first (`.mkroot/` before `bin`).

use crate::copy::PlannedKind;
use crate::plan::Plan;
use mkroot_common::archive::{
    self, ArchiveError, EntryKind, ImageEntry, OutputTarget, WriteOptions, WriteSummary,
};
use mkroot_common::digest;
use mkroot_common::host_file;
use mkroot_common::manifest::{ImageManifest, ManifestEntry, MANIFEST_PATH, MANIFEST_VERSION};
use mkroot_common::oci::{
    self,
    write::{OciImage, OciSummary, OciTarget, OciWriteError},
};
use mkroot_common::partial::PartialOutput;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Images with more file contents than this get a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Oci(#[from] OciWriteError),
    #[error("a thread hashing the image's files panicked ({0}); nothing was written, as the manifest would lack their sha256: please report it")]
    HashWorker(String),
    #[error("{path}: cannot read: {source}; check that it is readable")]
    Hash {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The entries of the image (manifest included) and the manifest itself.
pub struct ImageContents {
    pub entries: Vec<ImageEntry>,
    pub manifest: ImageManifest,
}

/// Turns the plan into sorted image entries, with the manifest as the last step.
pub fn contents(plan: &Plan) -> Result<ImageContents, ImageError> {
    let mut planned: Vec<(&String, &crate::copy::PlannedEntry)> =
        plan.tree.entries().iter().collect();
    planned.sort_by(|a, b| archive::image_order(a.0, b.0));
    let sources: Vec<(&PathBuf, u64)> = planned
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            PlannedKind::File { source, size, .. } => Some((source, *size)),
            _ => None,
        })
        .collect();
    let hashes = hash_files(&sources)?;
    let mut first_name: HashMap<(u64, u64), String> = HashMap::new();
    let mut entries = Vec::with_capacity(planned.len() + 2);
    let mut files = Vec::with_capacity(planned.len() + 1);
    for (path, entry) in planned {
        let (kind, sha256, link) = match &entry.kind {
            PlannedKind::Dir => (EntryKind::Dir, None, None),
            PlannedKind::Symlink { target } => (
                EntryKind::Symlink {
                    target: target.clone(),
                },
                None,
                Some(target.clone()),
            ),
            PlannedKind::Generated(bytes) => (
                EntryKind::Bytes(bytes.clone()),
                Some(digest::sha256_bytes(bytes)),
                None,
            ),
            PlannedKind::File {
                source,
                identity,
                size,
            } => {
                let sha = hashes.get(source).cloned().unwrap_or_default();
                let first = identity.and_then(|id| match first_name.get(&id) {
                    Some(first) => Some(first.clone()),
                    None => {
                        first_name.insert(id, path.clone());
                        None
                    }
                });
                let kind = match first {
                    Some(target) => EntryKind::Hardlink { target },
                    None => EntryKind::File {
                        source: source.clone(),
                        size: *size,
                    },
                };
                (kind, Some(sha), None)
            }
        };
        entries.push(ImageEntry {
            path: path.clone(),
            mode: entry.mode,
            kind,
        });
        files.push(ManifestEntry {
            path: format!("/{path}"),
            sha256,
            link,
            reason: entry.reason.clone(),
        });
    }
    let manifest = ImageManifest {
        version: MANIFEST_VERSION,
        cmd: plan.command.argv(),
        env: plan.env.clone(),
        files,
    };
    let manifest_dir = MANIFEST_PATH
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .unwrap_or(".mkroot");
    entries.push(ImageEntry {
        path: manifest_dir.to_string(),
        mode: 0o755,
        kind: EntryKind::Dir,
    });
    entries.push(ImageEntry {
        path: MANIFEST_PATH.to_string(),
        mode: 0o644,
        kind: EntryKind::Bytes(manifest.to_json_bytes()),
    });
    entries.sort_by(|a, b| archive::image_order(&a.path, &b.path));
    Ok(ImageContents { entries, manifest })
}

/// sha256 of every source file at its planned size, spread over the cores: the manifest
/// needs all of them before the first byte of the archive.
fn hash_files(sources: &[(&PathBuf, u64)]) -> Result<HashMap<PathBuf, String>, ImageError> {
    hash_files_with(sources, |source, size| {
        host_file::open_planned(source, size).and_then(digest::sha256_reader)
    })
}

/// [`hash_files`] with the hash of one file given; a worker that panics fails the
/// whole, rather than leaving its files without a hash.
fn hash_files_with(
    sources: &[(&PathBuf, u64)],
    hash: impl Fn(&Path, u64) -> std::io::Result<String> + Sync,
) -> Result<HashMap<PathBuf, String>, ImageError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let hash = &hash;
    let results: Vec<Result<(PathBuf, String), ImageError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                scope.spawn(move || {
                    sources
                        .iter()
                        .skip(worker)
                        .step_by(threads)
                        .map(|&(source, size)| {
                            hash(source, size)
                                .map(|sha| (source.clone(), sha))
                                .map_err(|e| hash_error(source, e))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut results = Vec::new();
        for worker in workers {
            match worker.join() {
                Ok(done) => results.extend(done),
                Err(payload) => results.push(Err(ImageError::HashWorker(panic_text(&*payload)))),
            }
        }
        results
    });
    results.into_iter().collect()
}

/// What a panic said, if it said it in text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

/// A source file that cannot be hashed: it changed since it was planned, or cannot be
/// read.
fn hash_error(source: &Path, error: std::io::Error) -> ImageError {
    if host_file::is_changed(&error) {
        ImageError::Archive(ArchiveError::SourceChanged {
            path: source.to_path_buf(),
        })
    } else {
        ImageError::Hash {
            path: source.to_path_buf(),
            source: error,
        }
    }
}

/// Writes the plan to `target`, each path made recorded in `made` (the caller removes
/// them if the write fails). A progress bar is drawn on stderr when stderr is a
/// terminal, `quiet` is off and the image is large enough to take a while.
pub fn write(
    plan: &Plan,
    target: &OutputTarget,
    quiet: bool,
    made: &PartialOutput,
) -> Result<WriteSummary, ImageError> {
    let contents = contents(plan)?;
    with_progress(&contents.entries, quiet, made, |options| {
        Ok(archive::write_image(&contents.entries, target, options)?)
    })
}

/// Writes the plan as a one-layer OCI image layout (see [`mkroot_common::oci::write`]),
/// each path made recorded in `made`.
pub fn write_oci(
    plan: &Plan,
    image: &OciImage,
    target: &OciTarget,
    quiet: bool,
    made: &PartialOutput,
) -> Result<OciSummary, ImageError> {
    let contents = contents(plan)?;
    with_progress(&contents.entries, quiet, made, |options| {
        Ok(oci::write::write_layout(
            &contents.entries,
            image,
            target,
            options,
        )?)
    })
}

/// Runs `write` with the write options: the mtime from SOURCE_DATE_EPOCH and, on a
/// terminal for a large image, a progress bar over the file contents.
fn with_progress<T>(
    entries: &[ImageEntry],
    quiet: bool,
    made: &PartialOutput,
    write: impl FnOnce(&WriteOptions) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let total: u64 = entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File { size, .. } => *size,
            EntryKind::Bytes(bytes) => bytes.len() as u64,
            _ => 0,
        })
        .sum();
    let show = !quiet && total >= PROGRESS_THRESHOLD && std::io::stderr().is_terminal();
    let bar = show.then(|| {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    let progress = |n: u64| {
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    };
    let options = WriteOptions {
        mtime: archive::source_date_epoch()?,
        progress: Some(&progress),
        made,
    };
    let result = write(&options);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicked_hashing_worker_fails_the_build() {
        let names: Vec<PathBuf> = (0..32).map(|i| PathBuf::from(format!("/f{i}"))).collect();
        let sources: Vec<(&PathBuf, u64)> = names.iter().map(|n| (n, 0)).collect();
        let fine = hash_files_with(&sources, |_, _| Ok("x".to_string())).unwrap();
        assert_eq!(fine.len(), 32);
        let error = hash_files_with(&sources, |path, _| {
            if path == Path::new("/f7") {
                panic!("hash of {} failed", path.display());
            }
            Ok("x".to_string())
        })
        .unwrap_err();
        assert!(error.to_string().contains("hash of /f7 failed"), "{error}");
    }
}

//! OCI images in the cache: an image's tree in `images/<id>` is stacked (see
//! [`crate::layer_stack`]) from its layers, each unpacked once into
//! `oci-layers/<diff_id>` and checked there (blob digest and size, diff_id) before it is
//! installed, so that images sharing a layer share its tree.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use mkroot_common::oci::read::{ImageFormat, Layer, OciImage};
use mkroot_common::unpack::{self, UnpackError, UnpackOptions};

use super::error::{io_error, CacheError};
use super::install::{get_or_install, FilledEntry, NewEntry};
use super::store::{lock_installed_entry, read_info, source_name, CachedImage, Store};
use crate::layer_stack::LayerStack;

/// The cached tree of the OCI image at `image`, stacked from its layers first if its
/// digest is not cached yet (each layer unpacked and checked unless cached too).
pub(super) fn get_or_stack(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    format: ImageFormat,
) -> Result<CachedImage, CacheError> {
    let oci = OciImage::open(image, format)?;
    let find = || store.lease(&oci.id);
    if let Some(found) = find()? {
        return Ok(found);
    }
    let lock_key = format!("image-{}", oci.id);
    let new_entry = NewEntry {
        lock_key: Some(&lock_key),
        dir: "images",
        temp_prefix: "stack",
    };
    get_or_install(
        store,
        &new_entry,
        find,
        |work| stack_layers(store, options, image, &oci, work),
        |_| find(),
    )
}

/// Builds the image's tree in `work`'s root from its layer trees (unpacked first where
/// they are not cached), with the config beside it; the entry is named by the image's id.
fn stack_layers(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    oci: &OciImage,
    work: &Path,
) -> Result<FilledEntry, CacheError> {
    let layers = get_or_unpack_layers(store, options, image, oci)?;
    let root = work.join("root");
    let mut stack = LayerStack::new(&root);
    for (layer, unpacked) in oci.layers.iter().zip(&layers) {
        stack
            .apply(&unpacked.root)
            .map_err(|source| CacheError::Layer {
                image: image.to_path_buf(),
                diff_id: layer.diff_id.clone(),
                source,
            })?;
    }
    let info = serde_json::json!({
        "digest": oci.id,
        "source": source_name(image),
        "bytes": stack.bytes,
        "entries": stack.entries,
        "layers": oci.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
    });
    stack.finish().map_err(io_error(&root))?;
    let config_path = work.join("config.json");
    fs::write(&config_path, &oci.config_json).map_err(io_error(&config_path))?;
    Ok(FilledEntry {
        name: oci.id.clone(),
        info,
    })
}

/// One layer's installed tree, held: the shared lock on its `used` file keeps a prune off
/// it while an image is stacked from it.
struct UnpackedLayer {
    root: PathBuf,
    _lease: File,
    /// Bytes of file data in the tree.
    bytes: u64,
}

/// The trees of all the image's layers, bottom first, each unpacked (and checked) first
/// where it is not cached. `--max-image-size` bounds the image, all its layers together.
fn get_or_unpack_layers(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    oci: &OciImage,
) -> Result<Vec<UnpackedLayer>, CacheError> {
    let limit = options.max_bytes;
    let mut total: u64 = 0;
    let mut layers = Vec::new();
    for layer in &oci.layers {
        let room = limit.saturating_sub(total);
        let unpacked = get_or_unpack_layer(store, options, image, oci, layer, room)?;
        total = total.saturating_add(unpacked.bytes);
        if total > limit {
            return Err(CacheError::Unpack {
                image: image.to_path_buf(),
                source: UnpackError::TooLarge { limit },
            });
        }
        layers.push(unpacked);
    }
    Ok(layers)
}

/// The tree of one layer, unpacking (and checking) it first if needed. An unpack stops
/// past `max_bytes`.
fn get_or_unpack_layer(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    oci: &OciImage,
    layer: &Layer,
    max_bytes: u64,
) -> Result<UnpackedLayer, CacheError> {
    let entry = store.dir.join("oci-layers").join(&layer.diff_id);
    let find = || {
        let Some(used) = lock_installed_entry(&entry)? else {
            return Ok(None);
        };
        Ok(Some(UnpackedLayer {
            root: entry.join("root"),
            _lease: used,
            bytes: read_info(&entry)["bytes"].as_u64().unwrap_or(0),
        }))
    };
    if let Some(found) = find()? {
        return Ok(found);
    }
    let layer_options = UnpackOptions {
        max_bytes,
        ..options.clone()
    };
    let lock_key = format!("layer-{}", layer.diff_id);
    let new_entry = NewEntry {
        lock_key: Some(&lock_key),
        dir: "oci-layers",
        temp_prefix: "layer",
    };
    get_or_install(
        store,
        &new_entry,
        find,
        |work| unpack_layer(options.max_bytes, image, oci, layer, &layer_options, work),
        |_| find(),
    )
}

/// Unpacks one layer into `work`'s root, then checks it: its blob's digest and size,
/// and its diff_id. The entry is named by the diff_id. `image_limit` is the image's
/// size limit, which a layer past its share of it is reported against.
fn unpack_layer(
    image_limit: u64,
    image: &Path,
    oci: &OciImage,
    layer: &Layer,
    options: &UnpackOptions,
    work: &Path,
) -> Result<FilledEntry, CacheError> {
    let mut stream = oci.open_layer(layer)?;
    let report = match unpack::unpack(stream.take_reader(), &work.join("root"), options) {
        Ok(report) => {
            stream.verify()?;
            report
        }
        Err(source) => {
            // A digest mismatch says more than whatever the unpacker made of bad
            // bytes: read the layer through once more, to its end, to tell.
            let mut again = oci.open_layer(layer)?;
            let _ = io::copy(&mut again.take_reader(), &mut io::sink());
            again.verify()?;
            // The limit is the image's, whatever room this layer had left.
            let source = match source {
                UnpackError::TooLarge { .. } => UnpackError::TooLarge { limit: image_limit },
                other => other,
            };
            return Err(CacheError::Unpack {
                image: image.to_path_buf(),
                source,
            });
        }
    };
    Ok(FilledEntry {
        name: layer.diff_id.clone(),
        info: serde_json::json!({ "bytes": report.bytes, "entries": report.entries }),
    })
}

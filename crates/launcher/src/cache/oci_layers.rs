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
use super::install::{get_or_install, install_entry, FilledEntry};
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
    let found = get_or_install(store, Some(&format!("image-{}", oci.id)), find, || {
        stack_and_install(store, options, image, &oci)?;
        find()
    })?;
    found.ok_or(CacheError::NotCached(oci.id))
}

/// Builds the image's tree from its layer trees in a temp dir, then renames it into
/// place as `images/<id>`, with the config beside it.
fn stack_and_install(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    oci: &OciImage,
) -> Result<(), CacheError> {
    // Shared locks on the layers' `used` files keep a prune off them while they are
    // linked from.
    let mut layer_roots = Vec::new();
    let mut _layer_leases = Vec::new();
    // --max-image-size bounds the image, all its layers together.
    let limit = options.max_bytes;
    let mut total: u64 = 0;
    for layer in &oci.layers {
        let room = limit.saturating_sub(total);
        let (root, lease, bytes) = get_or_unpack_layer(store, options, image, oci, layer, room)?;
        total = total.saturating_add(bytes);
        if total > limit {
            return Err(CacheError::Unpack {
                image: image.to_path_buf(),
                source: UnpackError::TooLarge { limit },
            });
        }
        layer_roots.push((root, &layer.diff_id));
        _layer_leases.push(lease);
    }
    install_entry(store, "images", "stack", |work| {
        let root = work.join("root");
        let mut stack = LayerStack::new(&root);
        for (layer_root, diff_id) in layer_roots {
            stack
                .apply(&layer_root)
                .map_err(|source| CacheError::Layer {
                    image: image.to_path_buf(),
                    diff_id: diff_id.clone(),
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
    })?;
    Ok(())
}

/// The unpacked tree of one layer, unpacking (and checking) it first if needed, with
/// a shared lock on its `used` file and its bytes of file data. An unpack stops past
/// `max_bytes`.
fn get_or_unpack_layer(
    store: &Store,
    options: &UnpackOptions,
    image: &Path,
    oci: &OciImage,
    layer: &Layer,
    max_bytes: u64,
) -> Result<(PathBuf, File, u64), CacheError> {
    let entry = store.dir.join("oci-layers").join(&layer.diff_id);
    let find = || {
        let Some(used) = lock_installed_entry(&entry)? else {
            return Ok(None);
        };
        let bytes = read_info(&entry)["bytes"].as_u64().unwrap_or(0);
        Ok(Some((entry.join("root"), used, bytes)))
    };
    if let Some(found) = find()? {
        return Ok(found);
    }
    let layer_options = UnpackOptions {
        max_bytes,
        ..options.clone()
    };
    let lock_key = format!("layer-{}", layer.diff_id);
    let found = get_or_install(store, Some(&lock_key), find, || {
        install_entry(store, "oci-layers", "layer", |work| {
            unpack_layer(options.max_bytes, image, oci, layer, &layer_options, work)
        })?;
        find()
    })?;
    found.ok_or_else(|| CacheError::NotCached(layer.diff_id.clone()))
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

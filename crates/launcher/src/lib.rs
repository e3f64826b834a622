//! launch: run a root filesystem image in a container with full namespace isolation.
//!
//! One launch, in order:
//!
//! 1. [`cache`] turns an image (tarball, directory, OCI layout or archive) into a
//!    read-only tree, unpacked once per digest; [`layer_stack`] stacks an OCI image's
//!    layers into that tree; [`file_lock`] keeps concurrent launches and `cache prune`
//!    apart.
//! 2. [`image_tree`] opens the tree and reads the image's own defaults (the manifest,
//!    an OCI config); [`run_defaults`] lays the command line over them as docker does;
//!    [`spec`] makes the one description of the container from both.
//! 3. [`container`] sets the container up over the tree in kernel order, one module per
//!    kernel concept: [`namespaces`], [`userns`], [`rootfs`], [`storage`] (what its
//!    tmpfs mounts may hold), [`devices`], [`etc_files`], [`network`], [`cgroup`],
//!    [`security`] ([`capabilities`], [`seccomp`], [`limits`], [`masked_paths`],
//!    [`landlock`], [`read_only_exe`]), [`pty`], [`init`] and [`process`];
//!    [`cpu_spread`] runs the launcher's half of the setup on another CPU than the
//!    container's half.
//! 4. [`error`] is what can go wrong, one type; `main.rs` (with `fast_args.rs`, the
//!    clap-free parse of the usual command lines) prints it as one line, and
//!    [`cli_docs`] is what `--help`, the completions and the man page add.
//!
//! [`runtime`] is launch as an OCI runtime (runc's command line, which podman and
//! containerd drive), in the `launch-runtime` binary: the same kernel modules, set up
//! from a bundle's config.json instead of a command line.

pub mod cache;
pub mod capabilities;
pub mod cgroup;
pub mod cli_docs;
pub mod container;
pub mod cpu_spread;
pub mod devices;
pub mod error;
pub mod etc_files;
pub mod file_lock;
pub mod image_tree;
pub mod init;
pub mod landlock;
pub mod layer_stack;
pub mod limits;
pub mod masked_paths;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod pty;
pub mod read_only_exe;
pub mod rootfs;
pub mod run_defaults;
pub mod runtime;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod storage;
pub mod userns;

pub use error::LaunchError;
pub use spec::{ContainerSpec, LaunchOptions};

use std::path::{Path, PathBuf};

use cache::ImageCache;
use mkroot_common::run_defaults::RunDefaults;

/// Launches the container `options` describe; returns the exit status for `launch`.
pub fn launch(options: &LaunchOptions) -> Result<i32, LaunchError> {
    read_only_exe::reexec_from_read_only_mount();
    // The cache stays open until the container ends: it marks the image in use, so a
    // concurrent `launch cache prune` leaves it alone.
    let (tree, defaults, _cache) = find_image_tree(options)?;
    let image = image_tree::open(&tree, &options.image)?;
    // An OCI image's config gives its defaults; a mkroot image's manifest, else none.
    let defaults = match defaults {
        Some(defaults) => defaults,
        None => image_tree::manifest_defaults(&image, &options.image)?.unwrap_or_default(),
    };
    let spec = ContainerSpec::new(options, image, &defaults)?;
    container::run(&spec)
}

/// The read-only tree of the image, and an OCI image's run defaults: a rootfs directory
/// is used in place (the cache is not even opened); a tarball, an OCI layout or an
/// archive comes from the cache, unpacked there on first use.
fn find_image_tree(
    options: &LaunchOptions,
) -> Result<(PathBuf, Option<RunDefaults>, Option<ImageCache>), LaunchError> {
    let image = &options.image;
    let meta = std::fs::metadata(image).map_err(|e| image_tree::unreadable(image, &e))?;
    if meta.is_dir() && !image.join("oci-layout").exists() {
        return Ok((image.clone(), None, None));
    }
    let mut cache = open_cache(options.cache_dir.as_deref())?;
    if let Some(max) = options.max_image_size {
        cache.set_unpack_options(mkroot_common::unpack::UnpackOptions {
            max_bytes: max,
            ..Default::default()
        });
    }
    let cached = cache.get_or_unpack(image)?;
    Ok((cached.root, cached.run_defaults, Some(cache)))
}

/// The image cache at `dir`, or at its default place. An ordinary user whose default
/// place cannot be made (no home directory) gets a fallback of their own, and is told
/// where in one line.
pub fn open_cache(dir: Option<&Path>) -> Result<ImageCache, LaunchError> {
    if let Some(dir) = dir {
        return Ok(ImageCache::open(dir)?);
    }
    let default = ImageCache::default_dir();
    let root = nix::unistd::geteuid().is_root();
    let error = match ImageCache::open(&default) {
        Ok(cache) => return Ok(cache),
        Err(e @ cache::CacheError::Unusable { .. }) if !root => e,
        Err(e) => return Err(e.into()),
    };
    for fallback in ImageCache::fallback_dirs() {
        if let Ok(cache) = ImageCache::open(&fallback) {
            eprintln!(
                "launch: note: {} cannot be made ({}); caching images in {} (--cache-dir DIR to choose)",
                default.display(),
                std::error::Error::source(&error).map_or(String::new(), |s| s.to_string()),
                fallback.display()
            );
            return Ok(cache);
        }
    }
    Err(error.into())
}

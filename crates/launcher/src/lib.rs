//! launch: run a root filesystem image in a container with full namespace isolation.
//!
//! [`cache`] turns an image (tarball or directory) into a read-only tree, unpacked once
//! per digest; [`spec`] completes the user's options with what the image records; and
//! [`container`] sets the container up over the tree in kernel order, one module per
//! kernel concept: [`namespaces`], [`userns`], [`rootfs`], [`devices`], [`etc_files`],
//! [`network`], [`cgroup`], [`security`], [`pty`], [`init`] and [`process`].

pub mod cache;
pub mod cgroup;
pub mod container;
pub mod devices;
pub mod error;
pub mod etc_files;
pub mod init;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod pty;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod userns;

pub use error::LaunchError;
pub use spec::{ContainerSpec, LaunchOptions};

use std::path::Path;

use cache::ImageCache;

/// Launches the container `options` describe; returns the exit status for `launch`.
pub fn launch(options: &LaunchOptions) -> Result<i32, LaunchError> {
    let image_root = image_root(options)?;
    let spec = ContainerSpec::new(options, &image_root)?;
    container::run(&spec)
}

/// The read-only tree of the image: a directory is used in place, a tarball comes
/// from the cache (unpacked there on first use).
fn image_root(options: &LaunchOptions) -> Result<std::path::PathBuf, LaunchError> {
    let image = &options.image;
    let meta = std::fs::metadata(image)
        .map_err(|e| LaunchError::Invalid(format!("image {}: {e}", image.display())))?;
    if meta.is_dir() {
        return std::fs::canonicalize(image)
            .map_err(|e| LaunchError::Invalid(format!("image {}: {e}", image.display())));
    }
    let dir = options
        .cache_dir
        .clone()
        .unwrap_or_else(|| Path::new("/var/cache/mkroot-launch").to_path_buf());
    let cache = ImageCache::open(&dir)?;
    Ok(cache.get_or_unpack(image)?.root)
}

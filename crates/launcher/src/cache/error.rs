//! What can go wrong in the cache, each naming the file or the cache directory.

use std::io;
use std::path::{Path, PathBuf};

use mkroot_common::oci::read::OciError;
use mkroot_common::unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot read the image: {source}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", image.display())]
    Unpack {
        image: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("cache directory {}: {source}; give --cache-dir a directory you can write (or set XDG_CACHE_HOME)", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache directory {}: owned by uid {owner}, not by you (uid {uid}); remove it or pick another cache directory", path.display())]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("no cached image has a digest starting with {0:?} (see `launch cache ls`)")]
    NotCached(String),
    #[error("{0:?} matches several cached images; give more digits")]
    Ambiguous(String),
    #[error("cached image {0} is in use by a running launch")]
    InUse(String),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("{}: layer {diff_id}: {source}", image.display())]
    Layer {
        image: PathBuf,
        diff_id: String,
        #[source]
        source: io::Error,
    },
}

/// The cache directory (or one of its own subdirectories) cannot be made or used.
pub(super) fn unusable(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Unusable {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

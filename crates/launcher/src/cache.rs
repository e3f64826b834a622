//! The content-addressed image cache: each image is unpacked once per digest, installed
//! atomically, then used read-only by every launch of it.

use std::path::{Path, PathBuf};

/// An image ready to be used as the lower layer of a container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// sha256 of the image file (for a directory image: `None`, used in place).
    pub digest: Option<String>,
    /// The unpacked root filesystem tree; never written to.
    pub root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct ImageCache {
    dir: PathBuf,
}

impl ImageCache {
    /// Opens (creating if needed) the cache rooted at `dir`.
    pub fn open(dir: &Path) -> Result<ImageCache, CacheError> {
        Ok(ImageCache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached tree of `image`, unpacking it first if this digest is not cached yet.
    pub fn get_or_unpack(&self, image: &Path) -> Result<CachedImage, CacheError> {
        let _ = image;
        todo!("issue 3: the image cache")
    }
}

//! What an image holds, read from the image itself rather than from what it says of
//! itself: every path with its type, mode, and the sha256 of its contents (regular
//! files) or its target (symlinks). `--check` compares this with what a recipe builds.
//!
//! Reads a root filesystem directory (symlinks not followed, only regular files opened,
//! each read no further than its size), a tarball (plain or gzip), or a tar stream (an
//! OCI layer). An image with two entries for one path is refused: readers that keep the
//! first and readers that keep the last would see two images. The layers of an OCI image
//! are laid over each other with [`Inventory::apply_layer`], whiteouts included, as
//! `launch` stacks them.

use mkroot_common::digest;
use mkroot_common::gzip::ParallelGunzip;
use mkroot_common::host_file;
use mkroot_common::manifest::MANIFEST_PATH;
use mkroot_common::oci::{whiteout, Whiteout};
use mkroot_common::unpack::{clean_components, sniff_compression, Compression};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What one image path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    /// A regular file (a hard link in a tar is one too), by the sha256 of its bytes.
    File {
        sha256: String,
    },
    Symlink {
        target: String,
    },
    /// Anything else an image should not hold (`a fifo`, `a character device`, ...).
    Other(&'static str),
}

impl Content {
    /// What it is, as a message says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Dir => "a directory",
            Content::File { .. } => "a regular file",
            Content::Symlink { .. } => "a symlink",
            Content::Other(what) => what,
        }
    }
}

/// One path of an image: its content and permission bits (ignored for symlinks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub content: Content,
    pub mode: u32,
}

/// Every path of an image, absolute (`/etc/greeting`), the root itself left out, and
/// the bytes of its manifest (for the run settings it records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub items: BTreeMap<String, Item>,
    pub manifest: Option<Vec<u8>>,
}

/// The manifest's image path, as the inventory keys it.
fn manifest_key() -> String {
    format!("/{MANIFEST_PATH}")
}

impl Inventory {
    /// Lays `upper`, the inventory of the next layer up, over this one, as the OCI image
    /// spec applies a layer (and `launch` stacks them): first its whiteouts, which speak
    /// of the layers below (`.wh.NAME` removes NAME with all beneath it, `.wh..wh..opq`
    /// what they put in its directory); then its entries. A directory over a directory
    /// merges (the upper one's mode wins); anything else replaces what was there, with all
    /// beneath it, and a non-directory on the way to an entry gives way to the directory
    /// the layer implies. Whiteout entries never appear in the result.
    pub fn apply_layer(&mut self, upper: Inventory) {
        for path in upper.items.keys() {
            let (dir, name) = split_path(path);
            match whiteout(name.as_bytes()) {
                Some(Whiteout::Opaque) => self.remove_beneath(dir),
                Some(Whiteout::Removes(hidden)) => {
                    let hidden = format!("{dir}/{}", String::from_utf8_lossy(hidden));
                    self.remove_tree(&hidden);
                }
                Some(Whiteout::Marker) | None => {}
            }
        }
        for (path, item) in upper.items {
            if whiteout(split_path(&path).1.as_bytes()).is_some() {
                continue;
            }
            let mut ancestor = split_path(&path).0;
            while !ancestor.is_empty() {
                if self
                    .items
                    .get(ancestor)
                    .is_some_and(|a| a.content != Content::Dir)
                {
                    self.remove_tree(ancestor);
                }
                ancestor = split_path(ancestor).0;
            }
            let over_a_dir = self.items.get(&path).map(|i| &i.content) == Some(&Content::Dir);
            if !(over_a_dir && item.content == Content::Dir) {
                self.remove_tree(&path);
            }
            self.items.insert(path, item);
        }
        let key = manifest_key();
        if upper.manifest.is_some() {
            self.manifest = upper.manifest;
        } else if !matches!(
            self.items.get(&key),
            Some(Item {
                content: Content::File { .. },
                ..
            })
        ) {
            self.manifest = None;
        }
    }

    /// Removes `path` and everything beneath it.
    fn remove_tree(&mut self, path: &str) {
        self.items.remove(path);
        self.remove_beneath(path);
    }

    /// Removes everything beneath the directory `dir` (`""`: the root), not `dir` itself.
    fn remove_beneath(&mut self, dir: &str) {
        // The paths under `dir/` sort together, before `dir0` ('0' follows '/').
        let beneath: Vec<String> = self
            .items
            .range(format!("{dir}/")..format!("{dir}0"))
            .map(|(path, _)| path.clone())
            .collect();
        for path in beneath {
            self.items.remove(&path);
        }
    }
}

/// An image path's directory and name: `/etc/greeting` is `/etc` and `greeting`, `/etc`
/// is `` (the root) and `etc`.
fn split_path(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// `within` names the file of a directory image that failed; empty for a tar.
    #[error("{within}{source}")]
    Io {
        within: String,
        #[source]
        source: io::Error,
    },
    #[error("two entries for {entry}: one shadows the other, so readers disagree on what the image holds; rebuild the image")]
    Duplicate { entry: String },
}

/// The inventory of a root filesystem: a directory, or a tarball (plain or gzip).
pub fn of_rootfs(path: &Path) -> Result<Inventory, InventoryError> {
    let io_error = |source| InventoryError::Io {
        within: String::new(),
        source,
    };
    if std::fs::symlink_metadata(path).map_err(io_error)?.is_dir() {
        return of_directory(path);
    }
    let (file, _) = host_file::open_regular(path).map_err(io_error)?;
    of_tar(decompressed(file).map_err(io_error)?)
}

/// A root filesystem tarball's bytes, decompressed as `launch` reads them (compression
/// told by magic number); a compression it does not read is named in the error.
fn decompressed(file: std::fs::File) -> io::Result<Box<dyn Read>> {
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

/// The inventory of a tar stream. Names are cleaned as the unpacker cleans them
/// (`./etc/x`, `etc//x` are `/etc/x`).
pub fn of_tar(reader: impl Read) -> Result<Inventory, InventoryError> {
    let io_error = |source| InventoryError::Io {
        within: String::new(),
        source,
    };
    let mut inventory = Inventory::default();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let Some(path) = image_path(&entry.path_bytes()) else {
            continue;
        };
        let header = entry.header();
        let mode = header.mode().map_err(io_error)? & 0o7777;
        let kind = header.entry_type();
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let content = match kind {
            tar::EntryType::Directory => Content::Dir,
            tar::EntryType::Symlink => Content::Symlink { target: link() },
            // A hard link is the file it names, which must come before it.
            tar::EntryType::Link => match image_path(link().as_bytes())
                .and_then(|target| inventory.items.get(&target))
            {
                Some(Item {
                    content: file @ Content::File { .. },
                    ..
                }) => file.clone(),
                _ => Content::Other("a hard link to nothing before it"),
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if entry.path_bytes().ends_with(b"/") {
                    Content::Dir
                } else if path == manifest_key() {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).map_err(io_error)?;
                    let sha256 = digest::sha256_bytes(&bytes);
                    inventory.manifest = Some(bytes);
                    Content::File { sha256 }
                } else {
                    Content::File {
                        sha256: digest::sha256_reader(&mut entry).map_err(io_error)?,
                    }
                }
            }
            tar::EntryType::Char => Content::Other("a character device"),
            tar::EntryType::Block => Content::Other("a block device"),
            tar::EntryType::Fifo => Content::Other("a fifo"),
            _ => Content::Other("a tar entry of another type"),
        };
        insert(&mut inventory, path, Item { content, mode })?;
    }
    Ok(inventory)
}

/// An entry name as an absolute image path; `None` for the root itself.
fn image_path(name: &[u8]) -> Option<String> {
    let parts = clean_components(name);
    if parts.is_empty() {
        return None;
    }
    let joined: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(format!("/{}", joined.join("/")))
}

fn insert(inventory: &mut Inventory, path: String, item: Item) -> Result<(), InventoryError> {
    if inventory.items.contains_key(&path) {
        return Err(InventoryError::Duplicate { entry: path });
    }
    inventory.items.insert(path, item);
    Ok(())
}

/// The inventory of a directory image: symlinks are not followed, only regular files
/// are opened.
fn of_directory(root: &Path) -> Result<Inventory, InventoryError> {
    let mut inventory = Inventory::default();
    for item in walkdir::WalkDir::new(root).sort_by_file_name().min_depth(1) {
        let item = item.map_err(|e| InventoryError::Io {
            within: format!("{}: ", e.path().unwrap_or(root).display()),
            source: e.into(),
        })?;
        let host = item.path();
        let io_error = |source| InventoryError::Io {
            within: format!("{}: ", host.display()),
            source,
        };
        let meta = item.metadata().map_err(|e| io_error(e.into()))?;
        let file_type = meta.file_type();
        let content = if file_type.is_dir() {
            Content::Dir
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(host).map_err(io_error)?;
            Content::Symlink {
                target: target.to_string_lossy().into_owned(),
            }
        } else if file_type.is_file() {
            let (file, size) = host_file::open_regular(host).map_err(io_error)?;
            let sha256 = if host.strip_prefix(root).ok() == Some(Path::new(MANIFEST_PATH)) {
                let mut bytes = Vec::new();
                host_file::exactly(file, size)
                    .read_to_end(&mut bytes)
                    .map_err(io_error)?;
                let sha256 = digest::sha256_bytes(&bytes);
                inventory.manifest = Some(bytes);
                sha256
            } else {
                digest::sha256_reader(host_file::exactly(file, size)).map_err(io_error)?
            };
            Content::File { sha256 }
        } else {
            Content::Other(host_file::kind_name(&file_type))
        };
        let relative = host.strip_prefix(root).unwrap_or(host);
        let path = format!("/{}", relative.to_string_lossy());
        let mode = meta.permissions().mode() & 0o7777;
        insert(&mut inventory, path, Item { content, mode })?;
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_size(0);
                builder
                    .append_link(&mut header, name, std::str::from_utf8(data).unwrap())
                    .unwrap();
            } else {
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_tar_is_read_by_what_it_holds() {
        use tar::EntryType::*;
        let bytes = tar_of(&[
            ("./", Directory, b""),
            ("./etc/", Directory, b""),
            ("./etc/a", Regular, b"hello"),
            ("etc/b", Link, b"etc/a"),
            ("etc/c", Symlink, b"/etc/shadow"),
        ]);
        let inventory = of_tar(&bytes[..]).unwrap();
        let keys: Vec<&str> = inventory.items.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/etc", "/etc/a", "/etc/b", "/etc/c"]);
        let items = &inventory.items;
        assert_eq!(
            items["/etc/a"].content,
            Content::File {
                sha256: digest::sha256_bytes(b"hello")
            }
        );
        assert_eq!(items["/etc/b"].content, items["/etc/a"].content);
        assert_eq!(
            items["/etc/c"].content,
            Content::Symlink {
                target: "/etc/shadow".into()
            }
        );
    }

    /// The inventory of a layer with `entries`, as a tar.
    fn layer(entries: &[(&str, tar::EntryType, &[u8])]) -> Inventory {
        of_tar(&tar_of(entries)[..]).unwrap()
    }

    fn paths(inventory: &Inventory) -> Vec<&str> {
        inventory.items.keys().map(String::as_str).collect()
    }

    #[test]
    fn layers_apply_in_order_whiteouts_included() {
        use tar::EntryType::*;
        let mut image = Inventory::default();
        image.apply_layer(layer(&[
            ("etc/", Directory, b""),
            ("etc/a", Regular, b"a"),
            ("etc/b", Regular, b"b"),
            ("etc-b", Regular, b"next to etc, not in it"),
            ("opt/", Directory, b""),
            ("opt/x/", Directory, b""),
            ("opt/x/y", Regular, b"y"),
            ("link", Symlink, b"etc"),
            (".mkroot/manifest.json", Regular, b"bottom"),
            // A whiteout in the bottom layer hides nothing, and is not a file either.
            (".wh.nothing", Regular, b""),
        ]));
        assert!(!image.items.contains_key("/.wh.nothing"));
        image.apply_layer(layer(&[
            ("etc/", Directory, b""),
            ("etc/.wh.a", Regular, b""),
            ("etc/c", Regular, b"c"),
            ("opt/.wh..wh..opq", Regular, b""),
            ("opt/z", Regular, b"z"),
            // A file where a symlink was; a directory where a file was.
            ("link", Regular, b"now a file"),
            ("etc-b/", Directory, b""),
        ]));
        assert_eq!(
            paths(&image),
            [
                "/.mkroot/manifest.json",
                "/etc",
                "/etc-b",
                "/etc/b",
                "/etc/c",
                "/link",
                "/opt",
                "/opt/z"
            ]
        );
        assert_eq!(image.items["/etc-b"].content, Content::Dir);
        assert_eq!(image.manifest.as_deref(), Some(&b"bottom"[..]));
        // A whole directory whited out goes with all beneath it; the manifest with it.
        image.apply_layer(layer(&[
            (".wh.etc", Regular, b""),
            (".wh..mkroot", Regular, b""),
        ]));
        assert_eq!(paths(&image), ["/etc-b", "/link", "/opt", "/opt/z"]);
        assert_eq!(image.manifest, None);
        // A manifest in an upper layer is the image's.
        image.apply_layer(layer(&[(".mkroot/manifest.json", Regular, b"upper")]));
        assert_eq!(image.manifest.as_deref(), Some(&b"upper"[..]));
        // A file on the way to an entry gives way to the directory the layer implies.
        image.apply_layer(layer(&[("link/inside", Regular, b"i")]));
        assert!(!image.items.contains_key("/link"));
        assert!(image.items.contains_key("/link/inside"));
    }

    #[test]
    fn two_entries_for_one_path_are_refused() {
        use tar::EntryType::*;
        let bytes = tar_of(&[
            (".mkroot/manifest.json", Regular, b"user's"),
            ("./.mkroot/manifest.json", Regular, b"mkroot's"),
        ]);
        let error = of_tar(&bytes[..]).unwrap_err().to_string();
        assert!(
            error.starts_with("two entries for /.mkroot/manifest.json"),
            "{error}"
        );
    }
}

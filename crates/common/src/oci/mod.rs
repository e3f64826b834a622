//! OCI image layouts (and docker's archive format beside them): [`write`] makes them from
//! an image mkroot built, [`read`] turns one made by any tool into layers and a config.
//! The image types themselves come from the `oci-spec` crate; the names below are the
//! file names and keys both sides agree on.

mod detect;
pub mod read;
mod tar_index;
pub mod write;

/// The file that marks a directory (or tar) as an OCI image layout.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// Its contents: the layout version this project writes and reads.
pub const OCI_LAYOUT_CONTENTS: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
/// The layout's entry point: the index of the images it holds.
pub const INDEX_FILE: &str = "index.json";
/// Where blobs live, by algorithm and hex digest: `blobs/sha256/<hex>`.
pub const BLOBS_DIR: &str = "blobs/sha256";
/// Docker's archive manifest (`docker save`, `docker load`), kept beside the OCI index.
pub const DOCKER_MANIFEST_FILE: &str = "manifest.json";
/// Docker's legacy name -> tag map, read by old `docker load`.
pub const DOCKER_REPOSITORIES_FILE: &str = "repositories";
/// The annotation on an index entry that names the image (`name:tag`, or just `tag`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The path of a blob inside a layout, from its hex sha256.
pub fn blob_path(hex: &str) -> String {
    format!("{BLOBS_DIR}/{hex}")
}

/// The name a layer's entry has to remove NAME from the layers below: `.wh.NAME`.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The entry that hides what the layers below put in its directory.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";

/// What a layer's entry says, by its name, of the layers below it (the OCI image spec's
/// whiteouts). Whiteout entries never appear in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// `.wh.NAME`: NAME, with all beneath it, is gone.
    Removes(&'a [u8]),
    /// `.wh..wh..opq`: what the layers below put in this directory is gone.
    Opaque,
    /// Another `.wh.` name: aufs's own markers, or `.wh..` and `.wh...`, which would name
    /// the directory itself or its parent. It names no file to remove.
    Marker,
}

/// The whiteout an entry named `name` (its last component) is; `None` for an ordinary
/// entry.
pub fn whiteout(name: &[u8]) -> Option<Whiteout<'_>> {
    let hidden = name.strip_prefix(WHITEOUT_PREFIX)?;
    Some(if name == OPAQUE_WHITEOUT {
        Whiteout::Opaque
    } else if matches!(hidden, b"" | b"." | b"..") || hidden.starts_with(WHITEOUT_PREFIX) {
        Whiteout::Marker
    } else {
        Whiteout::Removes(hidden)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_are_told_by_name() {
        assert_eq!(whiteout(b"greeting"), None);
        assert_eq!(
            whiteout(b".wh.greeting"),
            Some(Whiteout::Removes(b"greeting"))
        );
        assert_eq!(whiteout(b".wh..wh..opq"), Some(Whiteout::Opaque));
        for marker in [&b".wh."[..], b".wh..", b".wh...", b".wh..wh.plnk"] {
            assert_eq!(whiteout(marker), Some(Whiteout::Marker), "{marker:?}");
        }
    }
}

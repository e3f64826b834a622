//! OCI image layouts (and docker's archive format beside them): [`write`] makes them from
//! an image mkroot built, [`read`] turns one made by any tool into layers and a config.
//! The image types themselves come from the `oci-spec` crate; the names below are the
//! file names and keys both sides agree on.

pub mod read;
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

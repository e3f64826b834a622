//! OCI image layouts (and docker's archive format beside them): [`write`] makes them from
//! an image mkroot built, [`read`] turns one made by any tool into layers and a config.
//! The image types themselves come from the `oci-spec` crate.

pub mod read;
pub mod write;

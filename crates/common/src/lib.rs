//! The mkroot image format, shared by the builder (`mkroot`) and the launcher (`launch`).
//!
//! An image is a root filesystem tree, carried as a tarball (`.tar`, `.tgz`) or a
//! directory. mkroot records what it put in the image, and why, in
//! [`manifest::MANIFEST_PATH`]; the launcher reads the default command from there.
//!
//! - [`manifest`]: the image manifest (every file, its sha256 and the reason it is there).
//! - [`archive`]: writing an image byte-reproducibly, from a sorted list of entries.
//! - [`run_defaults`]: what an image says to run (command, environment, ...), as both
//!   the manifest and an OCI config carry it.
//! - [`partial`]: the paths a build made of its output, removed if it does not complete.
//! - [`gzip`]: a deterministic gzip stream compressed on every core.
//! - [`digest`]: sha256 of files and streams.
//! - [`host_file`]: reading host files safely: regular files only, never blocking, bounded.
//! - [`size`]: sizes as flags take them and messages print them (binary units).
//! - [`unpack`]: unpacking an untrusted image tarball safely into a directory.
//! - [`oci`]: OCI image layouts and docker archives, written from a mkroot image and
//!   read from any tool's.
//! - [`fill`]: reading as much as a buffer holds (format headers, magic numbers).
//! - [`usage`]: errors as one line, for both programs.
//!
//! And the kernel interfaces both programs use to build a container or a sandbox:
//!
//! - [`clone3`]: forking into new namespaces (refused while other threads run).
//! - [`in_root`]: opening a path inside an image's root as the kernel resolves it there
//!   (openat2 RESOLVE_IN_ROOT).
//! - [`mount_api`]: mounts made detached, set up, then attached; pivot_root.
//! - [`loopback`]: `lo` up in a new network namespace.

pub mod archive;
pub mod clone3;
pub mod digest;
pub mod fill;
pub mod gzip;
pub mod host_file;
pub mod in_root;
pub mod loopback;
pub mod manifest;
pub mod mount_api;
pub mod oci;
pub mod partial;
pub mod run_defaults;
pub mod size;
pub mod unpack;
pub mod usage;

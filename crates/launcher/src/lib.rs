//! launch: run a root filesystem image in a container with full namespace isolation.
//!
//! [`cache`] turns an image (tarball or directory) into a read-only tree, unpacked once
//! per digest; the runtime modules set up the container over it in kernel order.

pub mod cache;

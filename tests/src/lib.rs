//! Support for the end-to-end tests: where the built binaries are, and temp dirs.

pub mod launch;

//! mkroot's builder: from host programs to a minimal, byte-reproducible root filesystem image.
//!
//! Data flows one way:
//! host programs -> [`resolve`] (what the loader would load, found by reading ELF)
//! -> [`plan`] (every file of the image and why it is there, extras included)
//! -> [`mkroot_common::archive`] (the image written byte-reproducibly).
//!
//! The resolver follows the loader's own concepts, one module each: [`elf`] (facts read
//! from an ELF file), [`ldcache`] (the binary `/etc/ld.so.cache`), [`hwcaps`]
//! (glibc-hwcaps subdirectories for this CPU), [`search`] (the library search rules) and
//! [`resolve`] (breadth-first load order).

pub mod elf;
pub mod hwcaps;
pub mod ldcache;
pub mod resolve;
pub mod search;

pub mod plan;

//! mkroot's builder: from host programs to a minimal, byte-reproducible root filesystem image.
//!
//! Data flows one way:
//! host programs -> [`resolve`] (what the loader would load, found by reading ELF)
//! -> [`plan`] (every file of the image and why it is there, extras included)
//! -> [`mkroot_common::archive`] (the image written byte-reproducibly).
//!
//! The resolver follows the loader's own concepts, one module each: [`elf`] (facts read
//! from an ELF file), [`ldcache`] (the binary `/etc/ld.so.cache`), [`hwcaps`]
//! (glibc-hwcaps subdirectories for this CPU), [`root_walk`] (paths inside the root as
//! a chroot resolves them), [`search`] (the library search rules) and [`resolve`]
//! (breadth-first load order).
//!
//! The image side: [`programs`] (finding programs as a shell does, scripts' `#!`),
//! [`copy`] (the image tree; symlink chains, merged-/usr links, hard links),
//! [`loader_cache`] (the image's own ld.so.cache), [`symbols`] (dynamic symbols, for the
//! extras), [`extras`] (what the loader does not name: NSS, users, libgcc_s, terminfo,
//! gconv), [`trace`] (watching a probe run once in a sandbox) and [`traced`] (what the
//! probes of `--trace` add), [`addition`] (what any source but the programs hands the
//! plan), [`plan`],
//! [`image`] (entries and manifest, then the writer: a root filesystem, or an OCI image
//! through [`mkroot_common::oci::write`]) and [`report`] (`--dry-run --json`,
//! `--explain`).
//!
//! Around them: [`request`] (what one run asks for, checked: made from the flags or a
//! recipe, and all the plan is made from), [`recipe`] (TOML recipes), [`build`] (where
//! and in which format the image goes, and its OCI description), [`check`] (`--check`:
//! an image against a fresh plan), [`invocation`] (one `mkroot` run in order: request,
//! plan, then write, report or check; `main.rs` only parses the flags and prints what
//! comes back) and [`interrupt`] (SIGINT and SIGTERM remove what the build made of its
//! output).

pub mod elf;
pub mod hwcaps;
pub mod ldcache;
pub mod resolve;
pub mod root_walk;
pub mod search;

pub mod addition;
pub mod build;
pub mod check;
pub mod copy;
pub mod extras;
pub mod image;
pub mod interrupt;
pub mod inventory;
pub mod invocation;
pub mod loader_cache;
pub mod plan;
pub mod programs;
pub mod recipe;
pub mod report;
pub mod request;
pub mod stdlib;
pub mod symbols;
pub mod trace;
pub mod traced;

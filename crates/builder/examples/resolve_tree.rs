//! Times the resolver on every ELF file under a directory (default /usr/bin):
//! `cargo run --release -p mkroot-builder --example resolve_tree -- /usr/bin`.
//! The clock covers everything: walking the tree, reading the loader cache, resolving.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mkroot_builder::elf::is_elf;
use mkroot_builder::resolve::Resolver;

fn main() {
    let tree = std::env::args().nth(1).unwrap_or_else(|| "/usr/bin".into());
    let started = Instant::now();
    let programs: Vec<PathBuf> = walkdir::WalkDir::new(&tree)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && is_elf(e.path()))
        .map(|e| e.into_path())
        .collect();
    let resolver = match Resolver::new(Path::new("/")) {
        Ok(resolver) => resolver,
        Err(e) => {
            eprintln!("resolve_tree: {e}");
            std::process::exit(1);
        }
    };
    let results = resolver.resolve_many(&programs);
    let elapsed = started.elapsed();
    let libraries: usize = results.iter().flatten().map(|r| r.libraries.len()).sum();
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "resolved {} ELF files under {tree} ({libraries} libraries, {failed} unreadable) in {:.3} s",
        programs.len(),
        elapsed.as_secs_f64()
    );
}

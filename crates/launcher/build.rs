//! Links the `launch` binary as a static PIE on glibc Linux.
//!
//! Why: a cached launch is a few milliseconds, and loading `libc.so.6` and
//! `libgcc_s.so.1`, resolving their symbols and relocating them is a fixed part of it
//! (the README's Benchmarks section has the figure). A static PIE keeps the
//! address-space randomisation of a PIE and skips the loader.
//!
//! How: `-C target-feature=+crt-static` would do it, but cargo passes RUSTFLAGS to
//! proc-macros too, which cannot be built static (rust-lang/rust#78210), and cargo has
//! no per-binary flags. So only `launch`'s link line is changed, from here: rustc still
//! names the shared libraries std links for dynamic linking (`-lgcc_s -lutil -lrt
//! -lpthread -lm -ldl -lc`), and a directory searched first answers each name with the
//! static archive `+crt-static` would have taken (`libgcc_eh.a` for `libgcc_s`), and
//! `-static-pie` makes the result a static PIE. The other targets of the package (the
//! library, tests) are untouched.
//!
//! The static binary carries its own copy of glibc: an update of the archives reruns
//! this script, so the next build relinks it. Where they are missing (no `libc.a`: a
//! distribution without static glibc), `launch` is linked dynamically as before, with
//! a build warning.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libraries std names on linux-gnu, each with the static archives that stand in
/// for it. The unwinder and libc refer to each other, hence the groups (as gcc's own
/// `-static` link groups libgcc, libgcc_eh and libc).
const STAND_INS: [(&str, &[&str]); 7] = [
    ("gcc_s", &["libgcc_eh.a", "libgcc.a"]),
    ("util", &["libutil.a"]),
    ("rt", &["librt.a"]),
    ("pthread", &["libpthread.a"]),
    ("m", &["libm.a"]),
    ("dl", &["libdl.a"]),
    ("c", &["libc.a", "libgcc_eh.a", "libgcc.a"]),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if !wants_static_pie() {
        return;
    }
    match stand_in_directory() {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bin=launch=-static-pie");
            println!("cargo:rustc-link-arg-bin=launch=-L{}", dir.display());
        }
        Err(reason) => println!("cargo:warning=launch is linked dynamically: {reason}"),
    }
}

/// A native glibc Linux build that is not static already.
fn wants_static_pie() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("TARGET") == var("HOST")
        && !var("CARGO_CFG_TARGET_FEATURE")
            .split(',')
            .any(|f| f == "crt-static")
}

/// Writes one linker script per library name into `$OUT_DIR/static-pie`, each naming
/// the static archives (found where the C compiler, rustc's linker driver, finds them).
fn stand_in_directory() -> Result<PathBuf, String> {
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let out_dir = std::env::var_os("OUT_DIR").ok_or("cargo did not set OUT_DIR")?;
    let dir = Path::new(&out_dir).join("static-pie");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    find(&linker, "rcrt1.o")?;
    for (name, archives) in STAND_INS {
        let paths = archives
            .iter()
            .map(|archive| find(&linker, archive).map(|p| format!("\"{}\"", p.display())))
            .collect::<Result<Vec<_>, _>>()?;
        let script = format!("GROUP ( {} )\n", paths.join(" "));
        let file = dir.join(format!("lib{name}.a"));
        std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(dir)
}

/// Where `linker` finds `file` (`cc -print-file-name`, which echoes the bare name when
/// it finds nothing).
fn find(linker: &str, file: &str) -> Result<PathBuf, String> {
    let output = Command::new(linker)
        .arg(format!("-print-file-name={file}"))
        .output()
        .map_err(|e| format!("running {linker}: {e}"))?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && path.is_absolute() && path.exists() {
        // The binary carries a copy of it: an updated libc6-dev relinks launch.
        println!("cargo:rerun-if-changed={}", path.display());
        Ok(path)
    } else {
        Err(format!(
            "{linker} finds no {file} (on Debian: apt-get install libc6-dev)"
        ))
    }
}

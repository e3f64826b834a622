//! Shared by the resolver's integration tests: what the real loader says it loads, and
//! the fixtures built once per checkout.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// One object in a loader trace: the name it was requested by and the path it was
/// opened through (`None`: not found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub name: String,
    pub path: Option<String>,
}

/// The loader's trace of one file (`ldd` output, or `LD_TRACE_LOADED_OBJECTS=1`).
#[derive(Debug, Default)]
pub struct Trace {
    /// Libraries in load order, without the vDSO and the loader itself.
    pub libraries: Vec<Traced>,
    pub statically_linked: bool,
}

/// Parses trace lines. `loaders` are paths to leave out (the interpreter: ldd prints it
/// without a name). A DT_NEEDED with a slash is printed as its path alone; it is kept with
/// the path as its name, as the resolver reports it.
pub fn parse_trace(output: &str, loaders: &[&str]) -> Trace {
    let mut trace = Trace::default();
    for line in output.lines() {
        let line = line.trim();
        if line == "statically linked" {
            trace.statically_linked = true;
            continue;
        }
        if let Some((name, rest)) = line.split_once(" => ") {
            let path = if rest.trim() == "not found" {
                None
            } else {
                Some(
                    rest.rsplit_once(" (0x")
                        .map_or(rest, |(p, _)| p)
                        .to_string(),
                )
            };
            trace.libraries.push(Traced {
                name: name.to_string(),
                path,
            });
            continue;
        }
        let Some((path, _)) = line.rsplit_once(" (0x") else {
            continue;
        };
        if path.starts_with("linux-vdso")
            || path.starts_with("linux-gate")
            || loaders.contains(&path)
        {
            continue;
        }
        trace.libraries.push(Traced {
            name: path.to_string(),
            path: Some(path.to_string()),
        });
    }
    trace
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds the fixtures with `fixtures/build.sh` once: nextest runs test binaries in
/// parallel processes, so an exclusive lock on a file serialises them, and the script
/// itself skips what is up to date.
pub fn fixtures() -> PathBuf {
    let root = workspace_root();
    let build = root.join("fixtures/build");
    std::fs::create_dir_all(&build).unwrap();
    let lock = std::fs::File::create(build.join(".lock")).unwrap();
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock fixtures/build/.lock");
    let out = Command::new("bash")
        .arg(root.join("fixtures/build.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fixtures/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(lock);
    build
}

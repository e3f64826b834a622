//! Over every ELF file under /usr/bin, /usr/sbin and /usr/lib/x86_64-linux-gnu, the
//! resolver names the same libraries, at the same paths, in the same order, as the
//! system's loader does when `ldd` runs it.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use mkroot_builder::elf::is_elf;
use mkroot_builder::resolve::{MissingReason, Resolution, Resolver};

const TREES: &[&str] = &["/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"];

fn elf_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for tree in TREES {
        for entry in walkdir::WalkDir::new(tree)
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            if !entry.file_type().is_file() {
                continue;
            }
            if is_elf(entry.path()) {
                files.push(entry.path().to_path_buf());
            }
        }
    }
    files
}

/// `ldd FILE` for every file, several at a time (ldd mostly waits on exec).
fn run_ldd(files: &[PathBuf]) -> Vec<Option<String>> {
    let queue = Mutex::new(files.iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(vec![None; files.len()]);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| loop {
                let Some((i, file)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let out = Command::new("ldd").arg(file).output();
                let text = out
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
                results.lock().unwrap()[i] = text;
            });
        }
    });
    results.into_inner().unwrap()
}

/// The resolver's answer in ldd's terms: (name, path or not found) in load order.
fn as_trace(resolution: &Resolution, default_loader_soname: &str) -> Vec<common::Traced> {
    let mut out: Vec<common::Traced> = resolution
        .libraries
        .iter()
        // ldd runs a file without PT_INTERP (a library) through the default loader, which
        // is then already loaded and answers to its SONAME.
        .filter(|l| resolution.interpreter.is_some() || l.name != default_loader_soname)
        .map(|l| common::Traced {
            // ldd prints a name with a slash as its path alone.
            name: if l.name.contains('/') {
                l.path.to_string_lossy().into_owned()
            } else {
                l.name.clone()
            },
            path: Some(l.path.to_string_lossy().into_owned()),
        })
        .collect();
    // ldd prints a library it cannot find where it would have been loaded; the resolver
    // lists them apart: compare them as a set after the found ones.
    out.sort_by_key(|t| t.path.is_none());
    for m in &resolution.missing {
        if m.reason == MissingReason::NotFound
            && !out.iter().any(|t| t.name == m.name && t.path.is_none())
        {
            out.push(common::Traced {
                name: m.name.clone(),
                path: None,
            });
        }
    }
    out
}

fn normalise(mut trace: Vec<common::Traced>) -> Vec<common::Traced> {
    let missing: Vec<_> = trace.iter().filter(|t| t.path.is_none()).cloned().collect();
    trace.retain(|t| t.path.is_some());
    let mut missing_sorted = missing;
    missing_sorted.sort_by(|a, b| a.name.cmp(&b.name));
    missing_sorted.dedup();
    trace.extend(missing_sorted);
    trace
}

#[test]
fn resolver_agrees_with_ldd() {
    if !Path::new("/usr/bin/ldd").exists() {
        panic!("ldd is not installed (package libc-bin)");
    }
    let files = elf_files();
    let resolver = Resolver::new(Path::new("/")).unwrap();
    let started = std::time::Instant::now();
    let resolutions = resolver.resolve_many(&files);
    let resolve_time = started.elapsed();
    let started = std::time::Instant::now();
    let ldd = run_ldd(&files);
    let ldd_time = started.elapsed();

    let default_loader_soname = "ld-linux-x86-64.so.2";
    let (mut agreed, mut libraries, mut skipped) = (0, 0, 0);
    let mut disagreements = Vec::new();
    let mut skipped_files = Vec::new();
    for ((file, resolution), ldd) in files.iter().zip(&resolutions).zip(&ldd) {
        let Some(ldd) = ldd else {
            skipped += 1;
            skipped_files.push(file.display().to_string());
            continue;
        };
        let resolution = match resolution {
            Ok(r) => r,
            Err(e) => {
                disagreements.push(format!(
                    "{}: ldd ran it, the resolver failed: {e}",
                    file.display()
                ));
                continue;
            }
        };
        let interpreter = resolution
            .interpreter
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let mut loaders = vec!["/lib64/ld-linux-x86-64.so.2"];
        if let Some(interp) = &interpreter {
            loaders.push(interp);
        }
        let truth = common::parse_trace(ldd, &loaders);
        let expected = normalise(truth.libraries);
        let got = normalise(as_trace(resolution, default_loader_soname));
        if expected == got {
            agreed += 1;
            libraries += got.len();
        } else {
            disagreements.push(format!(
                "{}:\n  ldd:      {:?}\n  resolver: {:?}",
                file.display(),
                expected,
                got
            ));
        }
    }
    println!(
        "resolver agreed with ldd on {agreed} files ({libraries} libraries), {skipped} skipped \
         (ldd cannot run them); resolving took {resolve_time:?}, ldd {ldd_time:?}"
    );
    println!("skipped: {}", skipped_files.join(" "));
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(agreed > 100, "too few files compared: {agreed}");
}

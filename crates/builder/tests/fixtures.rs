//! Each loader rule, built as a small program by fixtures/build.sh, resolved by the
//! resolver and run for real: the program prints the objects the loader loaded
//! (dl_iterate_phdr), or the loader refuses to start it and says which library failed.
//! The resolver must say the same.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mkroot_builder::resolve::{MissingReason, Resolution, Resolver};

/// What really happened when the program ran.
enum Outcome {
    /// The program ran: the paths of the libraries loaded, in the loader's order.
    Loaded(Vec<String>),
    /// The loader stopped: the library (name or path) it named, and why.
    Failed { library: String, message: String },
}

fn run(program: &Path, interpreter: Option<&Path>) -> Outcome {
    let out = Command::new(program).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let (_, rest) = stderr
            .split_once("error while loading shared libraries: ")
            .unwrap_or_else(|| panic!("{}: not a loader error: {stderr}", program.display()));
        let (library, message) = rest.split_once(": ").unwrap();
        return Outcome::Failed {
            library: library.to_string(),
            message: message.trim().to_string(),
        };
    }
    let interpreter = interpreter.map(|p| p.to_string_lossy().into_owned());
    Outcome::Loaded(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("linux-vdso"))
            .filter(|l| Some(*l) != interpreter.as_deref())
            .map(str::to_string)
            .collect(),
    )
}

/// Resolves `program`, runs it, and checks the two agree. Returns the resolution for the
/// case's own checks.
fn check(program: &Path) -> Resolution {
    let resolver = Resolver::new(Path::new("/")).unwrap();
    let resolution = resolver.resolve(program).unwrap();
    match run(program, resolution.interpreter.as_deref()) {
        Outcome::Loaded(paths) => {
            let predicted: Vec<String> = resolution
                .libraries
                .iter()
                .map(|l| l.path.to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                predicted,
                paths,
                "{}: resolver vs loader",
                program.display()
            );
            assert!(resolution.missing.is_empty(), "{:?}", resolution.missing);
        }
        Outcome::Failed { library, message } => {
            let first = resolution.missing.first().unwrap_or_else(|| {
                panic!(
                    "{}: loader failed on {library} ({message}), resolver found everything",
                    program.display()
                )
            });
            match &first.reason {
                MissingReason::NotFound => {
                    assert_eq!(first.name, library, "{message}");
                    assert!(
                        message.starts_with("cannot open shared object file"),
                        "{message}"
                    );
                }
                MissingReason::Unloadable { path, .. } => {
                    assert_eq!(path, Path::new(&library), "{message}");
                }
            }
        }
    }
    resolution
}

fn fixture(path: &str) -> PathBuf {
    common::fixtures().join(path)
}

fn paths(resolution: &Resolution) -> Vec<String> {
    resolution
        .libraries
        .iter()
        .map(|l| l.path.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn rpath_is_inherited_down_the_chain() {
    let dir = fixture("rpath_chain");
    let r = check(&dir.join("prog"));
    let p = paths(&r);
    // libc2 only through liba's RPATH (libb's loader), libd only through the program's.
    assert!(
        p.contains(&format!("{}/Q/libc2.so", dir.display())),
        "{p:?}"
    );
    assert!(p.contains(&format!("{}/P/libd.so", dir.display())), "{p:?}");
}

#[test]
fn runpath_is_not_inherited() {
    let r = check(&fixture("runpath_not_inherited/prog"));
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].name, "libb.so");
}

#[test]
fn runpath_turns_the_inherited_rpath_off() {
    let dir = fixture("runpath_disables_rpath");
    let p = paths(&check(&dir.join("prog")));
    assert!(p.contains(&format!("{}/Y/libb.so", dir.display())), "{p:?}");
}

#[test]
fn origin_is_the_directory_an_object_was_found_through() {
    let dir = fixture("origin");
    let p = paths(&check(&dir.join("bin/prog")));
    assert!(
        p.contains(&format!("{}/bin/../lib/sub/libb.so", dir.display())),
        "{p:?}"
    );
}

#[test]
fn origin_of_the_program_is_its_real_directory() {
    let dir = fixture("origin");
    let via_dir = paths(&check(&dir.join("linkdir/prog")));
    let via_link = paths(&check(&dir.join("other/bin/prog")));
    assert_eq!(via_dir, via_link);
    assert!(
        via_link[0].starts_with(&format!("{}/bin/", dir.display())),
        "{via_link:?}"
    );
}

#[test]
fn lib_and_platform_tokens_expand_like_the_loader() {
    let r = check(&fixture("tokens/prog"));
    assert_eq!(r.libraries.len(), 3, "{:?}", r.libraries);
}

#[test]
fn needed_with_a_slash_is_a_path() {
    let dir = fixture("slash_needed");
    let r = check(&dir.join("prog"));
    let lib = format!("{}/lib/libslash.so", dir.display());
    assert_eq!(r.libraries[0].name, lib);
    assert_eq!(r.libraries[0].path, Path::new(&lib));
}

#[test]
fn first_loaded_wins_by_soname_and_by_file() {
    let dir = fixture("soname_dedupe");
    let p = paths(&check(&dir.join("prog")));
    assert!(!p.iter().any(|l| l.contains("/D/")), "decoy loaded: {p:?}");
    assert!(!p.iter().any(|l| l.ends_with("libsame-link.so")), "{p:?}");
}

#[test]
fn nodeflib_keeps_the_cache_and_default_dirs_out() {
    let r = check(&fixture("nodeflib/prog"));
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].name, "libz.so.1");
}

#[test]
fn libraries_of_another_class_or_machine_are_passed_over() {
    let dir = fixture("wrong_class");
    let p = paths(&check(&dir.join("prog")));
    assert_eq!(p[0], format!("{}/G/libwc.so", dir.display()));
}

#[test]
fn static_programs_load_nothing() {
    for name in ["static/prog", "static/prog-pie"] {
        let r = check(&fixture(name));
        assert_eq!(r.interpreter, None);
        assert!(r.libraries.is_empty() && r.missing.is_empty(), "{r:?}");
    }
}

#[test]
fn a_library_without_needs_brings_nothing() {
    let dir = fixture("no_needed");
    check(&dir.join("prog"));
    let resolver = Resolver::new(Path::new("/")).unwrap();
    let r = resolver.resolve(&dir.join("lib/libstandalone.so")).unwrap();
    assert_eq!(r.interpreter, None);
    assert!(r.libraries.is_empty() && r.missing.is_empty(), "{r:?}");
}

#[test]
fn a_linker_script_in_the_search_path_stops_the_loader() {
    let dir = fixture("linker_script");
    let r = check(&dir.join("prog"));
    match &r.missing[0].reason {
        MissingReason::Unloadable { path, .. } => assert_eq!(path, &dir.join("S/libls.so")),
        other => panic!("{other:?}"),
    }
}

/// The subdirectories tried under each search directory, in order, are the loader's own:
/// `LD_DEBUG=libs` prints the search path it builds for the program's RPATH.
#[test]
fn hwcaps_subdirectories_are_tried_in_the_loaders_order() {
    use mkroot_builder::elf::ElfClass;
    use mkroot_builder::hwcaps::HwCaps;
    let dir = fixture("rpath_chain");
    let out = Command::new(dir.join("prog"))
        .env("LD_DEBUG", "libs")
        .output()
        .unwrap();
    let debug = String::from_utf8_lossy(&out.stderr);
    let line = debug
        .lines()
        .find(|l| l.contains("search path=") && l.contains("(RPATH from file"))
        .unwrap_or_else(|| panic!("no RPATH search path in LD_DEBUG output:\n{debug}"));
    let listed = line
        .split_once("search path=")
        .unwrap()
        .1
        .split_whitespace()
        .next()
        .unwrap();
    let base = format!("{}/P", dir.display());
    let predicted: Vec<String> = HwCaps::for_process(ElfClass::Elf64, 62)
        .subdirectories()
        .map(|sub| {
            if sub.is_empty() {
                base.clone()
            } else {
                format!("{base}/{sub}")
            }
        })
        .collect();
    assert_eq!(listed.split(':').collect::<Vec<_>>(), predicted);
}

#[test]
fn filtees_load_before_their_filter_and_a_missing_auxiliary_is_no_error() {
    let dir = fixture("filters");
    let r = check(&dir.join("prog"));
    let names: Vec<&str> = r.libraries.iter().map(|l| l.name.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(at("libfilt.so") < at("libfront.so"), "{names:?}");
    assert!(at("libaux.so") < at("libfront.so"), "{names:?}");
    assert!(!names.contains(&"libauxmissing.so"));
}

#[test]
fn a_library_of_another_byte_order_stops_the_loader() {
    let dir = fixture("byte_order");
    let r = check(&dir.join("prog"));
    match &r.missing[0].reason {
        MissingReason::Unloadable { path, .. } => assert_eq!(path, &dir.join("E/libbo.so")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn needed_with_origin_is_expanded_then_opened_as_a_path() {
    let dir = fixture("slash_needed");
    let r = check(&dir.join("prog-origin"));
    assert_eq!(r.libraries[0].name, "$ORIGIN/lib/libdst.so");
    assert_eq!(
        r.libraries[0].path,
        Path::new(&format!("{}/lib/libdst.so", dir.display()))
    );
}

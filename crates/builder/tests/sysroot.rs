//! Resolving against another root: symlinks (absolute ones too) followed inside it, its
//! own loader cache read, and the cache writer's output checked with `ldconfig -p -C` and
//! with the real loader running the program chrooted into that root.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use mkroot_builder::elf::ElfClass;
use mkroot_builder::ldcache::{flags_for, write_cache, CacheEntry, LdCache};
use mkroot_builder::resolve::Resolver;

const EM_X86_64: u16 = 62;

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// A root with Debian's layout: /lib -> usr/lib, /lib64 -> usr/lib64, the interpreter
/// link in usr/lib64 absolute (as on the host), libc and the loader copied from the host,
/// the fixture program in /bin and its libraries in /opt/lib, found through the cache.
fn build_root(root: &Path) -> PathBuf {
    let fixtures = common::fixtures().join("sysroot");
    let triple = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&triple).unwrap();
    std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("usr/lib64", root.join("lib64")).unwrap();
    symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    for lib in ["libc.so.6", "ld-linux-x86-64.so.2"] {
        let host = Path::new("/lib/x86_64-linux-gnu")
            .join(lib)
            .canonicalize()
            .unwrap();
        copy(&host, &triple.join(lib));
    }
    copy(&fixtures.join("prog"), &root.join("bin/prog"));
    copy(&fixtures.join("libopt.so"), &root.join("opt/lib/libopt.so"));
    copy(&fixtures.join("libhw.so"), &root.join("opt/lib/libhw.so"));
    copy(
        &fixtures.join("libhw.so"),
        &root.join("opt/lib/glibc-hwcaps/x86-64-v2/libhw.so"),
    );
    let flags = flags_for(ElfClass::Elf64, EM_X86_64);
    let cache = write_cache(&[
        CacheEntry::new("libopt.so", "/opt/lib/libopt.so", flags),
        CacheEntry::new("libhw.so", "/opt/lib/libhw.so", flags),
        CacheEntry {
            hwcaps_subdir: Some("x86-64-v2".into()),
            ..CacheEntry::new(
                "libhw.so",
                "/opt/lib/glibc-hwcaps/x86-64-v2/libhw.so",
                flags,
            )
        },
    ]);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let cache_path = root.join("etc/ld.so.cache");
    std::fs::write(&cache_path, cache).unwrap();
    cache_path
}

#[test]
fn written_cache_is_read_by_ldconfig() {
    let root = tempfile::tempdir().unwrap();
    let cache_path = build_root(root.path());
    let out = Command::new("ldconfig")
        .arg("-p")
        .arg("-C")
        .arg(&cache_path)
        .output()
        .expect("ldconfig (package libc-bin)");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.starts_with("3 libs found in cache"), "{listing}");
    assert!(
        listing.contains("libopt.so (libc6,x86-64) => /opt/lib/libopt.so"),
        "{listing}"
    );
    assert!(
        listing.contains(
            "libhw.so (libc6,x86-64, hwcap: \"x86-64-v2\") => /opt/lib/glibc-hwcaps/x86-64-v2/libhw.so"
        ),
        "{listing}"
    );
    // And it reads back as written.
    let parsed = LdCache::load(&cache_path).unwrap();
    assert_eq!(parsed.entries.len(), 3);
}

#[test]
fn resolves_inside_the_root_as_the_chrooted_loader_does() {
    let root = tempfile::tempdir().unwrap();
    build_root(root.path());
    let resolver = Resolver::new(root.path()).unwrap();
    let r = resolver.resolve(Path::new("/bin/prog")).unwrap();
    assert_eq!(
        r.interpreter.as_deref(),
        Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
    );
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    let predicted: Vec<String> = r
        .libraries
        .iter()
        .map(|l| l.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(predicted[0], "/opt/lib/libopt.so");
    assert!(predicted
        .iter()
        .all(|p| !p.starts_with(&*root.path().to_string_lossy())));

    // The real loader, in that root, with that root's cache.
    let out = Command::new("chroot")
        .arg(root.path())
        .arg("/bin/prog")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chroot (needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("linux-vdso") && *l != "/lib64/ld-linux-x86-64.so.2")
        .map(str::to_string)
        .collect();
    assert_eq!(predicted, loaded);
}

/// Writes a copy of `from` at `to` with e_machine set to AArch64 (183), as a stand-in for
/// a foreign-architecture file (no cross compiler needed; nothing here is run).
fn copy_as_aarch64(from: &Path, to: &Path) {
    let mut bytes = std::fs::read(from).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, bytes).unwrap();
}

#[test]
fn a_root_of_another_architecture_uses_its_own_directories_and_cache_flags() {
    const EM_AARCH64: u16 = 183;
    let fixtures = common::fixtures().join("wrong_class");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let host_libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6")
        .canonicalize()
        .unwrap();
    copy_as_aarch64(&fixtures.join("prog"), &r.join("bin/prog"));
    // Debian's first default directory holds an x86-64 libwc.so: passed over.
    copy(
        &fixtures.join("G/libwc.so"),
        &r.join("lib/aarch64-linux-gnu/libwc.so"),
    );
    copy_as_aarch64(
        &fixtures.join("G/libwc.so"),
        &r.join("usr/lib/aarch64-linux-gnu/libwc.so"),
    );
    // The cache names libc.so.6 twice; only the AArch64-flagged entry applies.
    copy(&host_libc, &r.join("opt/x86/libc.so.6"));
    copy_as_aarch64(&host_libc, &r.join("opt/arm/libc.so.6"));
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(
        r.join("etc/ld.so.cache"),
        write_cache(&[
            CacheEntry::new(
                "libc.so.6",
                "/opt/x86/libc.so.6",
                flags_for(ElfClass::Elf64, EM_X86_64),
            ),
            CacheEntry::new(
                "libc.so.6",
                "/opt/arm/libc.so.6",
                flags_for(ElfClass::Elf64, EM_AARCH64),
            ),
        ]),
    )
    .unwrap();

    let resolver = Resolver::new(r).unwrap();
    let resolution = resolver.resolve(Path::new("/bin/prog")).unwrap();
    let paths: Vec<String> = resolution
        .libraries
        .iter()
        .map(|l| l.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        paths,
        ["/usr/lib/aarch64-linux-gnu/libwc.so", "/opt/arm/libc.so.6"]
    );
    // The x86-64 interpreter and libc's x86-64 loader are not in this root.
    assert!(resolution
        .missing
        .iter()
        .all(|m| m.name.contains("ld-linux-x86-64")));
}

//! Support for the compatibility suite (`tests/compat.rs`): a Debian image made by
//! debootstrap, once per machine and shared by every test of the suite, and the
//! small programs the tests run inside it.
//!
//! nextest runs each test in a process of its own, so the image is built under a
//! lock file: the first test to come builds it (into a temp dir, renamed into place
//! when complete), the others wait for it, and later runs on the same build tree
//! reuse it. It lives in the target dir (`target/<profile>/compat-images/`), keyed by
//! a hash of its recipe, so `cargo clean` removes it and a changed package list builds
//! a new one. The tests launch its tarball, through one launch cache kept beside it:
//! the first launch of a build tree unpacks it (about 300 MB), the rest reuse that.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::builder::target_dir;
use crate::launch::launch;

/// The Debian release the image is made of.
const SUITE: &str = "bookworm";

/// What the workloads need beyond debootstrap's minbase (which already has apt, dpkg,
/// passwd for useradd, util-linux for su and flock, coreutils for nice and mkfifo):
/// python3 (os.link/os.replace, unix sockets, sqlite3), python3-venv (venv with pip
/// from its bundled wheels, no network), git, strace and gdb-minimal (ptrace of a
/// child), procps (ps, top, free: /proc readers).
const PACKAGES: &[&str] = &[
    "python3",
    "python3-venv",
    "git",
    "strace",
    "gdb-minimal",
    "procps",
];

/// Bumped whenever the way the image is made changes, so a stale one is not reused.
const RECIPE_VERSION: u32 = 1;

/// The Debian image, as a tarball, and the launch cache it is unpacked into.
pub struct DebianImage {
    tarball: PathBuf,
    cache_dir: PathBuf,
}

impl DebianImage {
    /// The image, made by this call if no test has made it yet in this build tree.
    /// Panics, saying what to install, when debootstrap is missing.
    pub fn get() -> DebianImage {
        let images = target_dir().join("compat-images");
        std::fs::create_dir_all(&images).expect("make compat-images dir");
        let key = recipe_key();
        let done = images.join(format!("debian-{SUITE}-{key}"));
        let image = DebianImage {
            tarball: done.join("debian.tar"),
            cache_dir: done.join("launch-cache"),
        };
        if !image.tarball.exists() {
            let _lock = ExclusiveLock::take(&images.join(format!("debian-{SUITE}-{key}.lock")));
            if !image.tarball.exists() {
                build_debian(&images, &done);
            }
        }
        image
    }

    /// Runs `launch` on the image with `flags` (none: launch's defaults) and
    /// `sh -c script`.
    pub fn run(&self, flags: &[&str], script: &str) -> Output {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--cache-dir".as_ref(),
            self.cache_dir.as_os_str(),
            self.tarball.as_os_str(),
        ];
        args.extend(flags.iter().map(std::ffi::OsStr::new));
        args.extend(["--", "/bin/sh", "-c", script].map(std::ffi::OsStr::new));
        launch(args)
    }
}

/// An flock(2) on a file, held until dropped (nextest's test processes wait on it).
struct ExclusiveLock {
    _file: File,
}

impl ExclusiveLock {
    fn take(path: &Path) -> ExclusiveLock {
        let file = File::create(path).expect("open lock file");
        // SAFETY: a valid open fd; blocks until the lock is ours.
        let ret = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(ret, 0, "flock {}", path.display());
        ExclusiveLock { _file: file }
    }
}

/// A short hash of everything that decides the image's content.
fn recipe_key() -> String {
    let recipe = format!("{RECIPE_VERSION} {SUITE} minbase {}", PACKAGES.join(","));
    hex::encode(&Sha256::digest(recipe.as_bytes())[..6])
}

/// debootstrap into a temp dir beside `done`, trimmed and tarred, then renamed to
/// `done` (so a build that dies half-way is never taken for an image). Called with the
/// lock held, so what an earlier, killed build left behind can be swept first.
fn build_debian(images: &Path, done: &Path) {
    let debootstrap = Path::new("/usr/sbin/debootstrap");
    assert!(
        debootstrap.exists(),
        "{} missing: apt-get install debootstrap (.ci/test-deps installs it)",
        debootstrap.display()
    );
    for entry in std::fs::read_dir(images)
        .expect("read compat-images")
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".building-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(images)
        .expect("temp dir");
    let root = work.path().join("root");
    let mut command = Command::new(debootstrap);
    command
        .arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&root);
    // The machine's own mirror, as apt is set up to use it; debootstrap's default
    // where apt names none for this suite.
    if let Some(mirror) = configured_mirror(SUITE) {
        command.arg(mirror);
    }
    let out = command.output().expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&String::from_utf8_lossy(&out.stdout), 30)
    );
    // The downloaded packages and the mirror's package lists are not needed: the tests
    // point apt at repositories of their own. 120 MB less to unpack.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for entry in std::fs::read_dir(root.join(dir))
            .expect("read apt dir")
            .flatten()
        {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path()).expect("remove apt file");
            }
        }
    }
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).expect("make out dir");
    let status = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-cf")
        .arg(out_dir.join("debian.tar"))
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the Debian image failed");
    std::fs::rename(&out_dir, done).expect("move the Debian image into place");
}

/// The first mirror apt's sources name for `suite` (one-line `deb URI SUITE ...` in
/// /etc/apt/sources.list{,.d/*.list}, or deb822 `URIs:` and `Suites:` in
/// /etc/apt/sources.list.d/*.sources).
fn configured_mirror(suite: &str) -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_in_deb822(&text, suite),
            Some("list") => mirror_in_one_line_style(&text, suite),
            _ if file.ends_with("sources.list") => mirror_in_one_line_style(&text, suite),
            _ => None,
        }
    })
}

fn mirror_in_one_line_style(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: `[a=b c=d]`, up to the word that closes them.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == suite).then(|| uri.to_string())
    })
}

fn mirror_in_deb822(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
        };
        let enabled = field("Enabled").as_deref() != Some("no");
        let types = field("Types")?;
        let suites = field("Suites")?;
        (enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == suite))
        .then(|| field("URIs"))?
        .and_then(|uris| uris.split_whitespace().next().map(str::to_string))
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_read_from_either_style_of_sources() {
        let deb822 = "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm \
                      bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: \
                      http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in_deb822(deb822, "bookworm").as_deref(),
            Some("http://mirror.invalid/debian")
        );
        assert_eq!(mirror_in_deb822(deb822, "trixie"), None);
        let list = "# a comment\ndeb-src http://src.invalid/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n";
        assert_eq!(
            mirror_in_one_line_style(list, "bookworm").as_deref(),
            Some("http://mirror.invalid/debian")
        );
    }
}

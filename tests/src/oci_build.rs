//! Support for the OCI-output and recipe tests (`tests/oci_output.rs`, `tests/recipe.rs`):
//! reading members of a tar, the external tools that must accept mkroot's images, and
//! copies of the example recipes in `fixtures/recipes/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The example recipes, `fixtures/recipes/` in the workspace.
pub fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/recipes")
        .canonicalize()
        .expect("fixtures/recipes exists")
}

/// Copies the example recipes (and the files they add) into `dir`, so a test can build
/// and change them without touching the fixtures or another test's copy.
pub fn copy_recipes(dir: &Path) {
    for entry in std::fs::read_dir(recipes_dir()).expect("list fixtures/recipes") {
        let path = entry.expect("read fixtures/recipes").path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).expect("copy a fixture");
    }
}

/// Runs mkroot with `args` in `cwd` and a fixed SOURCE_DATE_EPOCH.
pub fn mkroot_at(args: &[&str], cwd: &Path, epoch: u64) -> Output {
    Command::new(crate::builder::mkroot())
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .output()
        .expect("run mkroot")
}

/// Fails the test with mkroot's stderr unless it succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The contents of the member `name` of a plain or gzip'd tar file.
pub fn tar_member(archive: &Path, name: &str) -> Option<Vec<u8>> {
    let bytes = std::fs::read(archive).expect("read the archive");
    member_of(&bytes, name)
}

/// The contents of the member `name` of a plain or gzip'd tar held in memory.
pub fn member_of(bytes: &[u8], name: &str) -> Option<Vec<u8>> {
    let plain = gunzip_if_gzip(bytes);
    let mut archive = tar::Archive::new(&plain[..]);
    for entry in archive.entries().expect("read tar") {
        let mut entry = entry.expect("read tar entry");
        if entry.path().expect("entry path").to_string_lossy() == name {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).expect("read tar member");
            return Some(out);
        }
    }
    None
}

/// The member names of a plain or gzip'd tar held in memory, in archive order.
pub fn member_names(bytes: &[u8]) -> Vec<String> {
    let plain = gunzip_if_gzip(bytes);
    let mut archive = tar::Archive::new(&plain[..]);
    archive
        .entries()
        .expect("read tar")
        .map(|e| {
            e.expect("read tar entry")
                .path()
                .expect("entry path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// `bytes`, gunzipped when they start with gzip's magic.
pub fn gunzip_if_gzip(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        bytes.to_vec()
    }
}

/// Whether `tool` can be run (is on PATH).
pub fn tool_present(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The gate for tests that need an external tool. A missing tool fails the test (CI
/// installs it) unless the run names it in MKROOT_E2E_SKIP_TOOLS (comma-separated):
/// then the test says so on stderr and returns `false`, so a skip is always explicit,
/// never a silent pass.
pub fn require_tool(tool: &str, package: &str) -> bool {
    if tool_present(tool) {
        return true;
    }
    let skipped = std::env::var("MKROOT_E2E_SKIP_TOOLS").unwrap_or_default();
    if skipped.split(',').any(|t| t.trim() == tool) {
        eprintln!("SKIPPED: {tool} is not installed and MKROOT_E2E_SKIP_TOOLS names it");
        return false;
    }
    panic!(
        "{tool} is not installed: apt-get install {package} \
         (or set MKROOT_E2E_SKIP_TOOLS={tool} to skip this test explicitly)"
    );
}

/// Runs a tool and fails the test with its output unless it succeeded.
pub fn run_tool(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert_success(&out, &shown);
    out
}

/// `sha256:<hex>` of `bytes`, as OCI digests are written.
pub fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", mkroot_common::digest::sha256_bytes(bytes))
}

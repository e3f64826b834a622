//! Support for the `launch` end-to-end tests: the binary, busybox test images (built by
//! the test itself, so no test depends on the builder), host state snapshots, and
//! throwaway users for the rootless tests.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `launch` binary built next to the test executable.
pub fn launch_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .expect("deps dir")
        .parent()
        .expect("profile dir");
    dir.join("launch")
}

/// The busybox applets the test images carry, as links to /bin/busybox.
const APPLETS: &[&str] = &[
    "sh", "true", "false", "ps", "cat", "echo", "hostname", "ip", "ls", "sleep", "kill", "id",
    "test", "touch", "grep", "mount", "tty", "stat", "wc", "head", "env", "pwd",
];

/// A directory holding a busybox root filesystem, plus a tarball of it on demand.
pub struct BusyboxImage {
    pub dir: tempfile::TempDir,
}

impl BusyboxImage {
    /// Builds the image tree; panics with a hint when busybox-static is missing.
    pub fn new() -> BusyboxImage {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox missing: apt-get install busybox-static"
        );
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-image-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("rootfs");
        for sub in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(root.join(sub)).expect("image dir");
        }
        std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            symlink("busybox", root.join("bin").join(applet)).expect("applet link");
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/hostname"), "image-own-hostname\n").unwrap();
        BusyboxImage { dir }
    }

    /// The root filesystem directory (an image used in place).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// A gzipped tarball of the root filesystem, made once.
    pub fn tarball(&self) -> PathBuf {
        let path = self.dir.path().join("image.tgz");
        if !path.exists() {
            let status = Command::new("tar")
                .args(["czf"])
                .arg(&path)
                .arg("-C")
                .arg(self.root())
                .arg(".")
                .status()
                .expect("run tar");
            assert!(status.success(), "tar failed");
        }
        path
    }

    /// Runs `launch` on this image used in place: `flags`, then `--` and `command`.
    pub fn launch(&self, flags: &[&str], command: &[&str]) -> Output {
        let root = self.root();
        let mut args = vec![root.to_str().expect("temp paths are UTF-8")];
        args.extend_from_slice(flags);
        args.push("--");
        args.extend_from_slice(command);
        launch(args)
    }

    /// Lets `user` own the tree (a rootless user's own image) and reach it.
    pub fn give_to(&self, user: &TestUser) {
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{0}:{0}", user.name))
            .arg(self.dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        open_up(self.dir.path());
    }
}

impl Default for BusyboxImage {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `launch` with `args` (image and options first, then `--` and the command).
///
/// With `--userns` among them, launch sees subordinate id files of the test's own
/// ([`crate::subids`]), so the host's /etc/subuid is never written.
pub fn launch<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let mut command = Command::new(launch_bin());
    command.args(&args).stdin(std::process::Stdio::null());
    let subids = args
        .iter()
        .any(|a| a == "--userns")
        .then(crate::subids::SubidFiles::empty);
    if let Some(files) = &subids {
        files.apply(&mut command, false);
    }
    command.output().expect("run launch")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails the test, showing all of `output`, unless the launch succeeded.
#[track_caller]
pub fn assert_succeeded(output: &Output) {
    assert!(output.status.success(), "{}", describe(output));
}

/// The stdout of a launch that must have succeeded (see [`assert_succeeded`]).
#[track_caller]
pub fn stdout_of_success(output: &Output) -> String {
    assert_succeeded(output);
    stdout(output)
}

/// What an [`Output`] was, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The host's mount table (mount id, mount point and source per line).
pub fn host_mounts() -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Every path under `dir`, sorted: to see that nothing was added or left behind.
pub fn tree_listing(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.clone());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Makes `path` and its parents traversable by everyone (a tempdir is 0700).
pub fn open_up(path: &Path) {
    for p in path.ancestors() {
        if let Ok(meta) = std::fs::metadata(p) {
            let mode = meta.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o005));
            }
        }
    }
}

/// An ordinary user made for one test with useradd, removed (with its home) on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    /// A copy of `launch` the user can reach (the build tree may sit in a 0700 home).
    bin_dir: tempfile::TempDir,
}

impl TestUser {
    pub fn create(tag: &str) -> TestUser {
        TestUser::create_with(tag, true)
    }

    /// A service account's kind: no home directory (`useradd -M`).
    pub fn create_without_home(tag: &str) -> TestUser {
        TestUser::create_with(tag, false)
    }

    fn create_with(tag: &str, home: bool) -> TestUser {
        let name = format!("lt{}{}", tag, std::process::id());
        let name: String = name.chars().take(31).collect();
        let home_flag = if home {
            "--create-home"
        } else {
            "--no-create-home"
        };
        let status = Command::new("useradd")
            .args([home_flag, "--user-group", "--shell", "/bin/sh"])
            .arg(&name)
            .status()
            .expect("useradd");
        assert!(status.success(), "useradd {name} failed");
        let out = Command::new("id").args(["-u", &name]).output().expect("id");
        let uid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("uid");
        let bin_dir = tempfile::Builder::new()
            .prefix("launch-e2e-bin-")
            .tempdir()
            .expect("temp dir");
        std::fs::copy(launch_bin(), bin_dir.path().join("launch")).expect("copy launch");
        // The runtime verbs' program, which launch execs from its own directory.
        let runtime = launch_bin().with_file_name("launch-runtime");
        if runtime.exists() {
            std::fs::copy(&runtime, bin_dir.path().join("launch-runtime"))
                .expect("copy launch-runtime");
        }
        open_up(bin_dir.path());
        TestUser { name, uid, bin_dir }
    }

    /// Runs `launch` with `args` as this user.
    pub fn launch(&self, args: &[&str]) -> Output {
        let bin = self.bin_dir.path().join("launch");
        let mut line = shell_quote(&bin.to_string_lossy());
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        Command::new("su")
            .args([self.name.as_str(), "-s", "/bin/sh", "-c", &line])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("su")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["--remove", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

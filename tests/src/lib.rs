//! Support for the end-to-end tests: where the built binaries are, and temp dirs.

/// Support for the OCI-output, recipe and CLI tests (`tests/oci_output.rs`, ...).
pub mod oci_build;

/// Support for the `mkroot` end-to-end tests (`tests/builder.rs`).
pub mod builder {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// `target/<profile>/`, where cargo puts the workspace's binaries: the test
    /// executable lives in its `deps/`.
    pub fn target_dir() -> PathBuf {
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe.parent().expect("deps dir");
        deps.parent().expect("profile dir").to_path_buf()
    }

    /// The `mkroot` binary built with the tests.
    pub fn mkroot() -> PathBuf {
        let path = target_dir().join("mkroot");
        assert!(
            path.is_file(),
            "{} not built; run the tests with `cargo nextest run --workspace`",
            path.display()
        );
        path
    }

    /// Runs mkroot with `args` in the directory `cwd`, without SOURCE_DATE_EPOCH.
    pub fn run_mkroot(args: &[&str], cwd: &Path) -> Output {
        Command::new(mkroot())
            .args(args)
            .current_dir(cwd)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("run mkroot")
    }

    /// Runs mkroot with `args` in `cwd` and waits at most `limit` for it to end: on
    /// expiry it is killed (by its PID) and the test fails, naming the run. Returns how
    /// long it took, and what it printed.
    pub fn run_mkroot_within(
        args: &[&str],
        cwd: &Path,
        limit: std::time::Duration,
    ) -> (std::time::Duration, Output) {
        let start = std::time::Instant::now();
        let mut child = Command::new(mkroot())
            .args(args)
            .current_dir(cwd)
            .env_remove("SOURCE_DATE_EPOCH")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run mkroot");
        loop {
            if child.try_wait().expect("wait for mkroot").is_some() {
                let out = child.wait_with_output().expect("read mkroot's output");
                return (start.elapsed(), out);
            }
            if start.elapsed() > limit {
                // SIGKILL to this child's PID only.
                let _ = child.kill();
                let out = child.wait_with_output().expect("reap mkroot");
                panic!(
                    "mkroot {args:?} did not end within {limit:?}; killed it. stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Runs mkroot and fails the test with its stderr if it fails.
    pub fn build(args: &[&str], cwd: &Path) {
        let out = run_mkroot(args, cwd);
        assert!(
            out.status.success(),
            "mkroot {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Unpacks a tarball (gzip or not) with the system's tar, as a user would.
    pub fn unpack(archive: &Path, into: &Path) {
        std::fs::create_dir_all(into).expect("make unpack dir");
        let status = Command::new("tar")
            .arg("-xpf")
            .arg(archive)
            .arg("-C")
            .arg(into)
            .status()
            .expect("run tar");
        assert!(status.success(), "tar -xpf {} failed", archive.display());
    }

    /// Runs `argv` in the image at `root`: new mount and pid namespaces (so the /proc
    /// mounted for it is private to them and goes away with them), chroot into the
    /// image, a clean environment with `env`.
    pub fn run_in_image(root: &Path, argv: &[&str], env: &[(&str, &str)]) -> Output {
        in_image(root, argv, env, false)
    }

    /// [`run_in_image`] with the host's /dev bound in (for programs that open
    /// /dev/null: git, perl); the bind goes away with the mount namespace.
    pub fn run_in_image_with_dev(root: &Path, argv: &[&str], env: &[(&str, &str)]) -> Output {
        in_image(root, argv, env, true)
    }

    fn in_image(root: &Path, argv: &[&str], env: &[(&str, &str)], dev: bool) -> Output {
        let mut proc_dir = root.as_os_str().to_os_string();
        proc_dir.push("/proc");
        let mut mount_proc = std::ffi::OsString::from("--mount-proc=");
        mount_proc.push(&proc_dir);
        let mut command = Command::new("unshare");
        command.args(["--mount", "--pid", "--fork"]).arg(mount_proc);
        if dev {
            let bind_then_chroot =
                "mount --rbind /dev \"$1/dev\" && root=\"$1\" && shift && exec /usr/sbin/chroot \"$root\" \"$@\"";
            command.args(["/bin/sh", "-c", bind_then_chroot, "sh"]);
        } else {
            command.arg("/usr/sbin/chroot");
        }
        command.arg(root).args(argv).env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("run unshare")
    }

    /// Runs `argv` in the image and returns its stdout, failing the test (with both
    /// streams) unless it succeeds.
    pub fn stdout_in_image(root: &Path, argv: &[&str], env: &[(&str, &str)]) -> String {
        let out = run_in_image(root, argv, env);
        assert!(
            out.status.success(),
            "{argv:?} in the image failed ({}): stdout {} stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// sha256 of a file, as hex.
    pub fn sha256(path: &Path) -> String {
        mkroot_common::digest::sha256_file(path).expect("hash file")
    }

    /// Compiles C `source` with the system's cc into `dir/name`, with `flags`.
    pub fn compile_c(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, source).expect("write C source");
        let out = dir.join(name);
        let result = Command::new("cc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .args(flags)
            .output()
            .expect("run cc");
        assert!(
            result.status.success(),
            "cc failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        out
    }
}

pub mod attacks;
pub mod compat;
pub mod launch;
pub mod network;
pub mod oci;
pub mod registry;
pub mod runtime;
pub mod subids;

//! Support for the runtime tests (launch as an OCI runtime): bundles of the busybox test
//! image with a config.json from `launch spec`, and a state root of the test's own whose
//! containers are all deleted (forced) when it is dropped, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::launch::{launch_bin, BusyboxImage};

/// A bundle: the busybox image's rootfs and a config.json the test edits.
pub struct Bundle {
    pub image: BusyboxImage,
    pub config: serde_json::Value,
}

impl Bundle {
    /// A bundle whose process runs `args`, from `launch spec`'s default config (run as
    /// root, terminal off).
    pub fn new(args: &[&str]) -> Bundle {
        let image = BusyboxImage::new();
        let spec = Command::new(launch_bin())
            .args(["spec", "--bundle"])
            .arg(image.dir.path())
            .output()
            .expect("run launch spec");
        assert!(
            spec.status.success(),
            "launch spec: {}",
            String::from_utf8_lossy(&spec.stderr)
        );
        let text = std::fs::read_to_string(image.dir.path().join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config["process"]["args"] = serde_json::json!(args);
        // Writable, as engines' own bundles are (their rootfs is an overlay of theirs).
        config["root"]["readonly"] = serde_json::json!(false);
        // A cgroup of the bundle's own, not runc's default /ID: two test runs at once
        // on one machine may use the same container IDs.
        let name = image
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        config["linux"]["cgroupsPath"] = serde_json::json!(format!("/mkroot-e2e-runtime/{name}"));
        let bundle = Bundle { image, config };
        bundle.save();
        bundle
    }

    pub fn dir(&self) -> &Path {
        self.image.dir.path()
    }

    /// Its `linux.cgroupsPath`.
    pub fn cgroup_path(&self) -> String {
        self.config["linux"]["cgroupsPath"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Writes the (edited) config back.
    pub fn save(&self) {
        std::fs::write(
            self.dir().join("config.json"),
            serde_json::to_string_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// A state root (`--root`) of the test's own.
pub struct Runtime {
    pub root: tempfile::TempDir,
}

impl Runtime {
    pub fn new() -> Runtime {
        Runtime {
            root: tempfile::Builder::new()
                .prefix("launch-e2e-runtime-")
                .tempdir()
                .unwrap(),
        }
    }

    /// `launch --root ROOT ARGS...`, stdio captured (stdin empty).
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run launch")
    }

    /// The command, for a test that wants its own stdio.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(launch_bin());
        command
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// `create` with the container's stdio on /dev/null and a file: the container keeps
    /// what it inherits open, so a pipe would never reach EOF.
    pub fn create(&self, id: &str, bundle: &Bundle) -> Output {
        let mut command = self.command(&["create", "--bundle", bundle.dir().to_str().unwrap(), id]);
        self.run_with_stdio_in_files(&mut command)
    }

    /// Runs `command` (a `create`, `run -d`, `exec -d`) with stdout and stderr in files
    /// read back once launch exits.
    pub fn run_with_stdio_in_files(&self, command: &mut Command) -> Output {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = command
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .expect("run launch");
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut bytes = Vec::new();
            f.rewind().unwrap();
            f.read_to_end(&mut bytes).unwrap();
            bytes
        };
        Output {
            status,
            stdout: read(out),
            stderr: read(err),
        }
    }

    /// The container's `status` from `state`.
    pub fn status(&self, id: &str) -> String {
        let out = self.run(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        state["status"].as_str().unwrap().to_string()
    }

    /// The container's `state` JSON.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits (up to 10 s) for container `id` to reach `status`.
    pub fn wait_for(&self, id: &str, status: &str) {
        for _ in 0..1000 {
            if self.status(id) == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "container {id} never became {status} (is {})",
            self.status(id)
        );
    }

    pub fn ids(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.run(&["delete", "--force", &id]);
        }
        // The bundles' common parent in every hierarchy, once no other test's
        // container is in it.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join("mkroot-e2e-runtime"));
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/mkroot-e2e-runtime");
    }
}

/// Where a cgroup path lands in the memory hierarchy (v1 or hybrid) or the unified one.
pub fn cgroup_dir(path: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        v1.join(path.trim_start_matches('/'))
    } else {
        Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
    }
}

/// Whether `pid` is alive and not a zombie.
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

//! Support for the registry round trip: Debian's `docker-registry` on loopback, started
//! and stopped by PID, and an OCI archive to push (mkroot's own `--format oci` output
//! when this mkroot has it, else one made by umoci over a busybox tree).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::launch::BusyboxImage;

const TOOLS_HINT: &str = "apt-get install docker-registry skopeo umoci";

/// A registry serving on 127.0.0.1 from a temp storage dir; killed (by PID) and its
/// files removed on drop.
pub struct LocalRegistry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        let mut last_log = String::new();
        // A free port can be taken by someone else before the registry binds it: retry.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("registry-e2e-")
                .tempdir()
                .expect("temp dir");
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("storage").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("docker-registry: {e} ({TOOLS_HINT})"));
            let mut registry = LocalRegistry { child, port, dir };
            if registry.wait_until_serving() {
                return registry;
            }
            last_log = std::fs::read_to_string(registry.dir.path().join("log")).unwrap_or_default();
        }
        panic!("docker-registry did not start: {last_log}");
    }

    /// Polls the port until it answers; false if the registry died first.
    fn wait_until_serving(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `docker://127.0.0.1:PORT/NAME:TAG`.
    pub fn reference(&self, name_tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{name_tag}", self.port)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one of the registry tools (`skopeo`, `umoci`) with `args` and fails the test
/// with its stderr unless it succeeds (with the install hint if it is missing); returns
/// stdout.
fn stdout_of_registry_tool(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} ({TOOLS_HINT})"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `skopeo ARGS` (no signature policy needed: the images are ours, on loopback)
/// and fails the test with its output unless it succeeds; returns stdout.
pub fn skopeo(args: &[&str]) -> String {
    stdout_of_registry_tool("skopeo", &[&["--insecure-policy"], args].concat())
}

/// Whether this mkroot writes OCI images (`--format oci`).
pub fn mkroot_writes_oci() -> bool {
    let mkroot = crate::builder::target_dir().join("mkroot");
    Command::new(mkroot)
        .arg("--help")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("--format"))
        .unwrap_or(false)
}

/// An oci-archive at `dir/img.oci.tar` whose image has `sh` and `echo`: made by mkroot
/// if it can, else by umoci (init, new, unpack, add a busybox tree, repack), tarred.
pub fn oci_archive(dir: &Path) -> PathBuf {
    let archive = dir.join("img.oci.tar");
    if mkroot_writes_oci() {
        crate::builder::build(
            &[
                "-q",
                "--bins",
                "sh,echo",
                "--format",
                "oci",
                "-o",
                archive.to_str().unwrap(),
            ],
            dir,
        );
        return archive;
    }
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:test", layout.display());
    // SAFETY: geteuid cannot fail.
    let rootless: &[&str] = if unsafe { libc::geteuid() } == 0 {
        &[]
    } else {
        &["--rootless"]
    };
    let umoci = |args: &[&str]| {
        stdout_of_registry_tool("umoci", args);
    };
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(
        &[
            &["unpack"],
            rootless,
            &["--image", &image, bundle.to_str().unwrap()],
        ]
        .concat(),
    );
    let busybox = BusyboxImage::new();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(busybox.root().join("."))
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(copied.success());
    umoci(
        &[
            &["repack"],
            rootless,
            &["--image", &image, bundle.to_str().unwrap()],
        ]
        .concat(),
    );
    umoci(&["config", "--image", &image, "--config.cmd", "/bin/sh"]);
    let tarred = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(tarred.success());
    archive
}

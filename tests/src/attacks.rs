//! Support for the attack tests (`tests/attacks.rs`): an image carrying the attack
//! programs (compiled by the test from C sources beside this file), hostile tarballs
//! written byte by byte, and snapshots of the host's mounts, cgroups and files to show
//! that an attack left them as they were.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::builder::compile_c;
use crate::launch::{launch_bin, BusyboxImage};

/// The attack programs' C source: `attack MODE [ARGS]`, exit 0 when stopped.
const ATTACK_C: &str = include_str!("attack.c");
/// A stand-in dynamic loader without a C library (see the file).
const FAKE_LD_C: &str = include_str!("fake_ld.c");

/// A busybox image with `/bin/attack` (static) and the fake loader at the path the
/// launcher's binary names as its interpreter.
pub struct AttackImage {
    pub image: BusyboxImage,
    /// The per-test image cache (tests run in parallel).
    pub cache: tempfile::TempDir,
}

impl AttackImage {
    pub fn new() -> AttackImage {
        let image = BusyboxImage::new();
        let build = image.dir.path().join("build");
        std::fs::create_dir_all(&build).expect("build dir");
        let attack = compile_c(&build, "attack", ATTACK_C, &["-static", "-O1"]);
        std::fs::copy(attack, image.root().join("bin/attack")).expect("copy attack");
        let fake_ld = compile_c(
            &build,
            "fake_ld",
            FAKE_LD_C,
            &["-static", "-nostdlib", "-fno-stack-protector", "-O1"],
        );
        std::fs::create_dir_all(image.root().join("lib64")).expect("lib64");
        std::fs::copy(fake_ld, image.root().join("lib64/ld-linux-x86-64.so.2"))
            .expect("copy fake loader");
        let cache = tempfile::Builder::new()
            .prefix("launch-e2e-cache-")
            .tempdir()
            .expect("cache dir");
        AttackImage { image, cache }
    }

    /// Runs `launch [options] IMAGE -- command` and snapshots the host around it.
    pub fn run(&self, options: &[&str], command: &[&str]) -> Run {
        let root = self.image.root();
        run_launch(&self.cache, options, root.to_str().unwrap(), command)
    }

    /// Runs `launch [options] TARBALL -- command` on `tar` written over this image's tree
    /// (see [`HostileTar::write_over_busybox`]), and snapshots the host around it.
    pub fn run_hostile(&self, tar: &HostileTar, options: &[&str], command: &[&str]) -> Run {
        let tarball = self.image.dir.path().join("hostile.tgz");
        tar.write_over_busybox(&self.image, &tarball);
        run_launch(&self.cache, options, tarball.to_str().unwrap(), command)
    }
}

impl Default for AttackImage {
    fn default() -> Self {
        AttackImage::new()
    }
}

/// One launch: its output, the launcher's PID and the host before and after.
pub struct Run {
    pub output: Output,
    pub launcher_pid: u32,
    pub before: HostSnapshot,
    pub after: HostSnapshot,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn describe(&self) -> String {
        crate::launch::describe(&self.output)
    }

    /// Asserts that the host's mounts and cgroups are as before the launch.
    pub fn assert_host_unchanged(&self) {
        let new_mounts: Vec<&String> = self
            .after
            .mounts
            .iter()
            .filter(|m| !self.before.mounts.contains(m))
            .filter(|m| {
                // Other tests run in parallel: only mounts a launch could have made.
                m.contains("launch-e2e") || m.contains(" overlay ") || m.contains("mkroot")
            })
            .collect();
        assert!(
            new_mounts.is_empty(),
            "mounts leaked into the host: {new_mounts:?}"
        );
        let name = format!("mkroot-launch-{}", self.launcher_pid);
        let left = cgroups_named(&name);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
}

/// Runs launch with a per-test cache and takes the host's snapshots around it. With
/// `--userns` among the options, launch sees subordinate id files of the test's own
/// ([`crate::subids`]).
pub fn run_launch(
    cache: &tempfile::TempDir,
    options: &[&str],
    image: &str,
    command: &[&str],
) -> Run {
    let subids = options
        .contains(&"--userns")
        .then(crate::subids::SubidFiles::empty);
    let view = subids.as_ref().map(|files| files.view(false));
    run_launch_seeing(cache, options, image, command, view)
}

/// [`run_launch`], with `host_view` run in launch's process before its exec: it may give
/// launch a mount namespace of its own in which the host looks different (another cgroup
/// layout, say).
pub fn run_launch_seeing(
    cache: &tempfile::TempDir,
    options: &[&str],
    image: &str,
    command: &[&str],
    host_view: Option<crate::subids::HostView>,
) -> Run {
    let before = HostSnapshot::take();
    let mut launch = Command::new(launch_bin());
    launch
        .arg("--cache-dir")
        .arg(cache.path())
        .args(options)
        .arg(image)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(host_view) = host_view {
        // SAFETY: the hook makes only system calls (the caller's promise).
        unsafe { std::os::unix::process::CommandExt::pre_exec(&mut launch, host_view) };
    }
    let child = launch.spawn().expect("run launch");
    let launcher_pid = child.id();
    let output = child.wait_with_output().expect("wait for launch");
    let after = HostSnapshot::take();
    Run {
        output,
        launcher_pid,
        before,
        after,
    }
}

/// A [`run_launch_seeing`] view: an empty tmpfs over /sys/fs/cgroup/unified, so this
/// hybrid host looks like a pure cgroup v1 one (its v1 controllers only).
pub fn as_a_cgroup_v1_host() -> std::io::Result<()> {
    in_own_mount_namespace(|| {
        // SAFETY: a mount of constant strings.
        unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/sys/fs/cgroup/unified".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        }
    })
}

/// A [`run_launch_seeing`] view: this hybrid host's v2 tree, which offers none of the
/// limit controllers (they are bound to v1), bound over /sys/fs/cgroup: a pure cgroup v2
/// host whose cgroup was delegated without them.
pub fn as_a_cgroup_v2_host_without_controllers() -> std::io::Result<()> {
    in_own_mount_namespace(|| {
        // SAFETY: a bind mount of constant strings.
        unsafe {
            libc::mount(
                c"/sys/fs/cgroup/unified".as_ptr(),
                c"/sys/fs/cgroup".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        }
    })
}

/// Unshares the mount namespace, makes it private, then runs `change` (a mount call's
/// return value). Only system calls: for between fork and exec.
pub fn in_own_mount_namespace(change: impl FnOnce() -> libc::c_int) -> std::io::Result<()> {
    let private = libc::MS_REC | libc::MS_PRIVATE;
    // SAFETY: plain system calls on constant strings.
    let done = unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                private,
                std::ptr::null(),
            ) == 0
    } && change() == 0;
    if done {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The host's state an attack must not change.
pub struct HostSnapshot {
    pub mounts: Vec<String>,
}

impl HostSnapshot {
    pub fn take() -> HostSnapshot {
        // Mount ids differ between snapshots only when something was (un)mounted: keep
        // the whole line.
        HostSnapshot {
            mounts: crate::launch::host_mounts(),
        }
    }
}

/// Every cgroup directory called `name`, in any hierarchy under /sys/fs/cgroup.
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            if entry.file_name() == name {
                found.push(entry.path());
            } else if depth > 0 {
                walk(&entry.path(), name, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 5, &mut found);
    found
}

/// Removes the cgroup `name` (relative to a hierarchy's root) and everything under
/// it from every hierarchy: the v1 controllers, the unified one and a pure v2 root. An
/// engine (containerd, podman) makes such trees and leaves them when its daemon goes.
pub fn remove_cgroup_everywhere(name: &str) {
    fn remove_tree(dir: &Path) {
        // Children first: a cgroup directory goes only once it has none.
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                remove_tree(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let root = Path::new("/sys/fs/cgroup");
    remove_tree(&root.join(name));
    for hierarchy in std::fs::read_dir(root).into_iter().flatten().flatten() {
        remove_tree(&hierarchy.path().join(name));
    }
}

/// A tar archive written entry by entry, so that it can say what no honest tar would.
#[derive(Default)]
pub struct HostileTar {
    bytes: Vec<u8>,
}

/// Entry types.
pub const REGULAR: u8 = b'0';
pub const HARD_LINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR_DEVICE: u8 = b'3';
pub const BLOCK_DEVICE: u8 = b'4';
pub const DIRECTORY: u8 = b'5';
pub const FIFO: u8 = b'6';

impl HostileTar {
    /// One entry: a ustar header (name up to 100 bytes, any bytes) and its data.
    pub fn entry(
        &mut self,
        kind: u8,
        name: &[u8],
        link: &[u8],
        mode: u32,
        data: &[u8],
        device: (u32, u32),
    ) -> &mut Self {
        assert!(name.len() <= 100 && link.len() <= 100);
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        let octal = |h: &mut [u8; 512], at: usize, len: usize, value: u64| {
            let text = format!("{value:0width$o}\0", width = len - 1);
            h[at..at + len].copy_from_slice(text.as_bytes());
        };
        octal(&mut h, 100, 8, mode as u64);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, data.len() as u64);
        octal(&mut h, 136, 12, 1_600_000_000);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h, 329, 8, device.0 as u64);
        octal(&mut h, 337, 8, device.1 as u64);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        self.bytes.extend_from_slice(&h);
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &[u8], mode: u32, data: &[u8]) -> &mut Self {
        self.entry(REGULAR, name, b"", mode, data, (0, 0))
    }

    pub fn link(&mut self, kind: u8, name: &[u8], target: &[u8]) -> &mut Self {
        self.entry(kind, name, target, 0o777, b"", (0, 0))
    }

    /// A GNU long name (`L` entry) for the regular file that follows.
    pub fn long_name_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut long = name.to_vec();
        long.push(0);
        self.entry(b'L', b"././@LongLink", b"", 0, &long, (0, 0));
        self.file(b"placeholder", 0o644, data)
    }

    /// The hostile entries, then the busybox image's own (so the image still runs),
    /// gzipped, written to `path`.
    pub fn write_over_busybox(&self, image: &BusyboxImage, path: &Path) {
        let plain = Command::new("tar")
            .args(["--numeric-owner", "-cf", "-", "-C"])
            .arg(image.root())
            .arg(".")
            .output()
            .expect("run tar");
        assert!(plain.status.success(), "tar failed");
        let mut bytes = self.bytes.clone();
        bytes.extend_from_slice(&plain.stdout);
        std::fs::write(path, gzip(&bytes)).expect("write tarball");
    }
}

/// `bytes` through `gzip -c`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("gzip");
    writer.join().expect("writer").expect("write to gzip");
    out.stdout
}

/// A host directory with one file in it, that hostile images try to reach.
pub struct HostVictim {
    pub dir: tempfile::TempDir,
}

impl HostVictim {
    pub const SECRET: &'static str = "host secret, never to be seen inside\n";

    pub fn new() -> HostVictim {
        let dir = tempfile::Builder::new()
            .prefix("launch-e2e-victim-")
            .tempdir()
            .expect("victim dir");
        std::fs::write(dir.path().join("secret"), Self::SECRET).expect("secret");
        HostVictim { dir }
    }

    /// Asserts the directory holds the secret, unchanged, and nothing else.
    pub fn assert_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("victim dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["secret"], "files appeared in the host's victim dir");
        let secret = std::fs::read_to_string(self.dir.path().join("secret")).unwrap();
        assert_eq!(secret, Self::SECRET, "the host's file changed");
    }
}

impl Default for HostVictim {
    fn default() -> Self {
        HostVictim::new()
    }
}

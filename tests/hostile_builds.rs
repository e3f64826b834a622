//! End-to-end tests of mkroot on hostile and odd inputs (issue 17): sysroots, recipes,
//! `--add` trees and images made here to be wrong. Each runs the real binary and checks
//! what it says, how fast it says it, and what it leaves on the host.

use mkroot_e2e::builder::{build, run_mkroot, run_mkroot_within};
use mkroot_e2e::oci_build::copy_recipes;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// What "at once" means for a run that must not hang.
const AT_ONCE: Duration = Duration::from_secs(1);

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn mkfifo(path: &Path) {
    assert_eq!(unsafe { libc::mkfifo(c_path(path).as_ptr(), 0o644) }, 0);
}

/// A character device node (tests run as root), like `mknod PATH c MAJOR MINOR`.
fn mknod_char(path: &Path, major: u32, minor: u32) {
    let dev = libc::makedev(major, minor);
    let rc = unsafe { libc::mknod(c_path(path).as_ptr(), libc::S_IFCHR | 0o644, dev) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run failed with exit status `code` and one line on stderr that contains each of
/// `named`.
#[track_caller]
fn fails_with_one_line(out: &Output, code: i32, named: &[&str]) {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for name in named {
        assert!(stderr.contains(name), "{name:?} not in: {stderr}");
    }
}

/// Runs mkroot, which must end within [`AT_ONCE`] with exit status `code` and one line
/// naming each of `named`.
#[track_caller]
fn ends_at_once(args: &[&str], cwd: &Path, code: i32, named: &[&str]) {
    let (took, out) = run_mkroot_within(args, cwd, AT_ONCE * 10);
    assert!(took < AT_ONCE, "mkroot {args:?} took {took:?}");
    fails_with_one_line(&out, code, named);
}

/// A small sysroot made by mkroot itself from the host's sh and cat, in `dir/sysroot`.
fn sysroot(dir: &Path) -> PathBuf {
    let root = dir.join("sysroot");
    build(&["-q", "--bins", "sh,cat", "-o", "sysroot/"], dir);
    root
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn fifos_and_devices_given_to_add_end_at_once_naming_them() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    mkfifo(&dir.join("fifo"));
    mknod_char(&dir.join("zero"), 1, 5);
    std::fs::create_dir(dir.join("tree")).unwrap();
    mkfifo(&dir.join("tree/pipe"));
    let cases: [(&str, &str); 4] = [
        ("fifo:/x", "a fifo"),
        ("/dev/zero:/z", "a character device"),
        ("zero:/z", "a character device"),
        ("tree:/tree", "a fifo"),
    ];
    for (add, what) in cases {
        let host = add.split(':').next().unwrap();
        let shown = if host.starts_with('/') {
            host.to_string()
        } else if host == "tree" {
            format!("{}/tree/pipe", dir.display())
        } else {
            format!("{}/{host}", dir.display())
        };
        ends_at_once(
            &["-q", "--bins", "sh", "--add", add, "-o", "out.tgz"],
            dir,
            1,
            &[&shown, what],
        );
        assert!(!dir.join("out.tgz").exists(), "{add}: an image was written");
    }
    // A program that is a fifo, by its path.
    ends_at_once(
        &["-q", "--bins", path_str(&dir.join("fifo")), "-o", "out.tgz"],
        dir,
        1,
        &["fifo", "a fifo"],
    );
}

#[test]
fn a_fifo_given_as_the_recipe_or_the_image_to_check_ends_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    copy_recipes(dir);
    mkfifo(&dir.join("recipe.toml"));
    ends_at_once(
        &["-f", "recipe.toml", "-o", "out.tgz"],
        dir,
        1,
        &["recipe.toml", "a fifo"],
    );
    mkfifo(&dir.join("image.tgz"));
    ends_at_once(
        &["-f", "greeting.toml", "--check", "image.tgz"],
        dir,
        2,
        &["image.tgz", "a fifo"],
    );
    mknod_char(&dir.join("zero.tgz"), 1, 5);
    ends_at_once(
        &["-f", "greeting.toml", "--check", "zero.tgz"],
        dir,
        2,
        &["zero.tgz", "a character device"],
    );
}

#[test]
fn a_sysroot_whose_config_files_are_fifos_or_devices_ends_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let root = sysroot(dir);
    let sysroot_arg = path_str(&root).to_string();
    for file in ["etc/ld.so.cache", "etc/nsswitch.conf"] {
        let path = root.join(file);
        let saved = std::fs::read(&path).ok();
        for (make, what) in [
            (mkfifo as fn(&Path), "a fifo"),
            (|p: &Path| mknod_char(p, 1, 5), "a character device"),
        ] {
            let _ = std::fs::remove_file(&path);
            make(&path);
            ends_at_once(
                &["--sysroot", &sysroot_arg, "--bins", "sh", "--dry-run"],
                dir,
                1,
                &[path_str(&path), what],
            );
        }
        std::fs::remove_file(&path).unwrap();
        if let Some(bytes) = saved {
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

#[test]
fn symlink_loops_in_a_sysroot_are_called_loops_and_placed() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let root = sysroot(dir);
    let sysroot_arg = path_str(&root).to_string();
    let bin = root.join("usr/bin");
    std::os::unix::fs::symlink("loop-b", bin.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", bin.join("loop-b")).unwrap();
    // A chain of 61 links to a real program: longer than the kernel follows.
    for i in 1..=61 {
        std::os::unix::fs::symlink(format!("chain{}", i + 1), bin.join(format!("chain{i}")))
            .unwrap();
    }
    std::fs::copy(bin.join("cat"), bin.join("chain62")).unwrap();
    for program in ["loop-a", "/usr/bin/loop-a", "chain1"] {
        let out = run_mkroot(
            &["--sysroot", &sysroot_arg, "--bins", program, "--dry-run"],
            dir,
        );
        let name = program.trim_start_matches("/usr/bin/");
        fails_with_one_line(&out, 1, &["symlink loop", name]);
        assert!(
            !stderr_of(&out).contains("not found"),
            "{}",
            stderr_of(&out)
        );
    }
    // The loader cache linked to itself by its absolute host path: a loop inside the
    // sysroot, which is named, not the sysroot.
    let cache = root.join("etc/ld.so.cache");
    let _ = std::fs::remove_file(&cache);
    std::os::unix::fs::symlink("/etc/ld.so.cache", &cache).unwrap();
    let out = run_mkroot(
        &["--sysroot", &sysroot_arg, "--bins", "sh", "--dry-run"],
        dir,
    );
    fails_with_one_line(&out, 1, &[path_str(&cache), "symlink loop"]);
    assert!(
        !stderr_of(&out).contains("give an existing directory"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn odd_adds_and_recipe_keys_get_errors_naming_what_was_written() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::write(dir.join("file.txt"), "x\n").unwrap();
    // A file at the image root: named, not an error about an empty name.
    let out = run_mkroot(&["--bins", "sh", "--add", "file.txt:/", "-o", "x.tgz"], dir);
    fails_with_one_line(&out, 1, &["file.txt", "image root"]);
    assert!(
        !stderr_of(&out).starts_with("mkroot: :"),
        "{}",
        stderr_of(&out)
    );
    // A tree at the image root fills it.
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("tree/sub/f"), "f\n").unwrap();
    build(
        &["-q", "--bins", "sh", "--add", "tree:/", "-o", "tree.tgz"],
        dir,
    );
    let names = mkroot_e2e::oci_build::member_names(&std::fs::read(dir.join("tree.tgz")).unwrap());
    assert!(names.iter().any(|n| n == "sub/f"), "{names:?}");
    // A recipe's env key and workdir are named as recipe keys, not as flags.
    for (name, text, named) in [
        (
            "env.toml",
            "programs = [\"sh\"]\nenv = { \"\" = \"y\" }\n",
            "env",
        ),
        (
            "workdir.toml",
            "programs = [\"sh\"]\nworkdir = \"srv\"\n",
            "workdir",
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
        let out = run_mkroot(&["-f", name, "-o", "x.tgz"], dir);
        fails_with_one_line(&out, 1, &[name, named]);
        assert!(!stderr_of(&out).contains("--"), "{}", stderr_of(&out));
    }
}

//! End-to-end tests of builds that do not finish (issue 17): SIGINT or SIGTERM mid-build,
//! a write that fails, an output directory someone else writes into meanwhile. Each runs
//! the real binary on an image big enough to take seconds, then checks the exit status,
//! the one line, and that the directory holds exactly what it held before (an older
//! image, the user's files, an empty output directory the user made).

use mkroot_e2e::builder::mkroot;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a build may take to reach what a test waits for, or to end.
const LIMIT: Duration = Duration::from_secs(120);

/// Writes `mib` MiB of bytes that do not compress (xorshift), so that an image holding
/// them takes seconds to write: a signal sent once its output shows lands mid-write.
fn noise(path: &Path, mib: usize) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(mib << 20);
    while bytes.len() < mib << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// What a directory holds, recursively: each path with its type, the size and mtime of
/// files and symlinks, and the bytes of small files.
fn listing(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            // A directory's own mtime changes with what is made and removed in it.
            let mut what = format!("{:?}", meta.file_type());
            if !meta.is_dir() {
                what += &format!(
                    " {} bytes, mtime {}.{}",
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec()
                );
            }
            if meta.is_file() && meta.len() < 64 << 10 {
                what += &format!(": {:?}", std::fs::read(&path).unwrap());
            }
            if meta.is_dir() {
                stack.push(path);
            }
            found.push((name, what));
        }
    }
    found.sort();
    found
}

/// Starts mkroot with `args` in `cwd`, its stderr piped. SIGINT and SIGTERM get their
/// default disposition in it (as a shell with job control gives them), whatever the
/// test runner's are; `child_limits` runs in the child before exec.
fn start(args: &[&str], cwd: &Path, child_limits: fn() -> std::io::Result<()>) -> Child {
    let mut command = Command::new(mkroot());
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (signal, setrlimit) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            child_limits()
        });
    }
    command.spawn().expect("run mkroot")
}

fn no_limits() -> std::io::Result<()> {
    Ok(())
}

/// Sends `signal` to the child, by its PID.
fn send(child: &Child, signal: libc::c_int) {
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill {}: {}",
        child.id(),
        std::io::Error::last_os_error()
    );
}

/// Waits until `ready()` says the build got where the test wants it, then stops it
/// there (SIGSTOP), so that it gets no further while the test acts. Fails the test,
/// the child killed, if the build ends first or takes longer than [`LIMIT`].
fn stop_when(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mkroot ended ({status}) before {what}");
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mkroot did not reach {what} within {LIMIT:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    send(child, libc::SIGSTOP);
}

/// Waits (at most [`LIMIT`]) for the child to end, and returns what it printed.
fn finish(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mkroot did not end within {LIMIT:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

/// Sends `signal` to the stopped child, lets it go on, and checks how it ended: exit
/// status `code` and the one line `line`.
#[track_caller]
fn interrupt(child: Child, signal: libc::c_int, code: i32, line: &str) {
    send(&child, signal);
    send(&child, libc::SIGCONT);
    let out = finish(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr, format!("{line}\n"));
}

/// A temp dir with a big file to add (`big`), an older image under the output's name
/// (`out.tgz`) and a file of the user's (`notes.txt`).
fn workspace() -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    noise(&temp.path().join("big"), 64);
    std::fs::write(temp.path().join("out.tgz"), "an older image\n").unwrap();
    std::fs::write(temp.path().join("notes.txt"), "the user's\n").unwrap();
    temp
}

/// mkroot's arguments for an image holding `big` (written early, taking most of the
/// time) and a small file at `/zz/last` (written last), to `output`.
fn big_build(output: &str) -> Vec<&str> {
    vec![
        "-q",
        "--bins",
        "sh",
        "--add",
        "big:/a/big",
        "--add",
        "notes.txt:/zz/last",
        "-o",
        output,
    ]
}

#[test]
fn a_signal_mid_tarball_removes_the_partial_and_keeps_the_older_image() {
    let temp = workspace();
    let dir = temp.path();
    let before = listing(dir);
    for (signal, code, line) in [
        (
            libc::SIGINT,
            130,
            "mkroot: interrupted; removed the partial out.tgz",
        ),
        (
            libc::SIGTERM,
            143,
            "mkroot: terminated; removed the partial out.tgz",
        ),
    ] {
        let mut child = start(&big_build("out.tgz"), dir, no_limits);
        let partial = dir.join(format!("out.tgz.partial-{}", child.id()));
        stop_when(&mut child, "the partial tarball", || partial.exists());
        interrupt(child, signal, code, line);
        assert_eq!(listing(dir), before, "{line}");
    }
}

#[test]
fn a_signal_mid_directory_removes_what_was_made_and_keeps_what_was_there() {
    let temp = workspace();
    let dir = temp.path();
    // An empty output directory the user made stays, empty.
    std::fs::create_dir(dir.join("empty")).unwrap();
    let before = listing(dir);
    for (output, first, signal, code, line) in [
        (
            "out/",
            "out/.mkroot",
            libc::SIGTERM,
            143,
            "mkroot: terminated; removed the partial out/",
        ),
        (
            "empty/",
            "empty/.mkroot",
            libc::SIGINT,
            130,
            "mkroot: interrupted; removed the partial empty/",
        ),
        // Parents the build made go too.
        (
            "new/sub/out/",
            "new/sub/out/.mkroot",
            libc::SIGINT,
            130,
            "mkroot: interrupted; removed the partial new/sub/out/",
        ),
    ] {
        let mut child = start(&big_build(output), dir, no_limits);
        let first = dir.join(first);
        stop_when(&mut child, "the first entry", || first.exists());
        interrupt(child, signal, code, line);
        assert_eq!(listing(dir), before, "{output}");
    }
}

/// Whether process `pid` holds an unnamed file (O_TMPFILE) in `dir`.
fn holds_unnamed_file_in(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target: PathBuf| {
            let text = target.to_string_lossy();
            target.starts_with(dir) && text.ends_with("(deleted)")
        })
}

#[test]
fn a_signal_while_an_oci_layer_is_written_leaves_nothing() {
    let temp = workspace();
    let dir = temp.path();
    let before = listing(dir);
    for output in ["img.oci.tar", "layout/"] {
        let mut args = big_build(output);
        args.extend(["--format", "oci"]);
        let mut child = start(&args, dir, no_limits);
        let pid = child.id();
        stop_when(&mut child, "the layer's scratch file", || {
            holds_unnamed_file_in(pid, dir)
        });
        interrupt(child, libc::SIGINT, 130, "mkroot: interrupted");
        assert_eq!(listing(dir), before, "{output}");
    }
}

#[test]
fn an_ignored_sigint_stays_ignored() {
    let temp = workspace();
    let dir = temp.path();
    let mut child = start(&big_build("out.tgz"), dir, || {
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        Ok(())
    });
    let partial = dir.join(format!("out.tgz.partial-{}", child.id()));
    stop_when(&mut child, "the partial tarball", || partial.exists());
    send(&child, libc::SIGINT);
    send(&child, libc::SIGCONT);
    let out = finish(child);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(dir.join("out.tgz")).unwrap().len() > 64 << 20);
    assert!(!partial.exists());
}

/// Files the child writes may not grow past 1 MiB (`ulimit -f`): a write past it fails
/// with EFBIG, as a full disk fails with ENOSPC. SIGXFSZ is ignored so that it fails
/// rather than kills.
fn small_file_limit() -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 1 << 20,
        rlim_max: 1 << 20,
    };
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn a_write_that_fails_leaves_no_half_made_output() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    noise(&dir.join("big"), 4);
    std::fs::write(dir.join("out.tgz"), "an older image\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "the user's\n").unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    let before = listing(dir);
    for (output, format, removed) in [
        ("out/", "rootfs", Some("out/")),
        ("empty/", "rootfs", Some("empty/")),
        ("out.tgz", "rootfs", Some("out.tgz")),
        // The layer fails before anything named is made.
        ("layout/", "oci", None),
    ] {
        let mut args = big_build(output);
        args.extend(["--format", format]);
        let out = finish(start(&args, dir, small_file_limit));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("File too large"), "{stderr}");
        match removed {
            Some(name) => assert!(
                stderr
                    .trim_end()
                    .ends_with(&format!("; removed the partial {name}")),
                "{stderr}"
            ),
            None => assert!(!stderr.contains("removed"), "{stderr}"),
        }
        assert_eq!(listing(dir), before, "{output}");
    }
}

#[test]
fn a_directory_output_someone_else_writes_into_keeps_their_files() {
    let temp = workspace();
    let dir = temp.path();
    let mut child = start(&big_build("out/"), dir, no_limits);
    let first = dir.join("out/.mkroot");
    stop_when(&mut child, "the first entry", || first.exists());
    // Another process puts a directory where the build will write its last one.
    let theirs = dir.join("out/zz");
    assert!(
        !theirs.exists(),
        "the build got to out/zz before it was stopped"
    );
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("theirs.txt"), "not mkroot's\n").unwrap();
    send(&child, libc::SIGCONT);
    let out = finish(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for named in ["out/zz", "File exists", "also holds files it did not make"] {
        assert!(stderr.contains(named), "{named:?} not in: {stderr}");
    }
    let left: Vec<String> = listing(&dir.join("out"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(left, ["zz", "zz/theirs.txt"]);
}

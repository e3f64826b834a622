//! The tracer on real probes, run as root (as CI does): what it records of the host's
//! tree, what it leaves out, and that a probe changes nothing on the host and leaves no
//! process behind.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mkroot_builder::trace::{trace, Probe, TraceError, TraceNet, TraceRecord};

fn probe(command: &str) -> Probe {
    Probe {
        cwd: PathBuf::from("/"),
        ..Probe::new(command)
    }
}

fn traced(command: &str) -> TraceRecord {
    trace(&probe(command)).unwrap_or_else(|e| panic!("tracing `{command}`: {e}"))
}

/// A directory of the host's real tree (not a /tmp that could be a tmpfs of its own),
/// removed at the end of the test.
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mkroot-trace-test.")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

#[test]
fn a_file_read_is_recorded() {
    let record = traced("cat /etc/hostname");
    assert!(
        record.files.contains(Path::new("/etc/hostname")),
        "{record:#?}"
    );
    // The probe's program and what the loader opened for it.
    assert!(
        record.files.contains(Path::new("/usr/bin/cat")),
        "{record:#?}"
    );
    assert!(
        record.files.contains(Path::new("/etc/ld.so.cache")),
        "{record:#?}"
    );
    assert_eq!(record.exit_status, 0);
}

#[test]
fn a_merged_usr_link_is_recorded_with_the_real_program() {
    let record = traced("/bin/ls >/dev/null");
    assert_eq!(
        record.symlinks.get(Path::new("/bin")),
        Some(&PathBuf::from("usr/bin")),
        "{record:#?}"
    );
    assert!(
        record.files.contains(Path::new("/usr/bin/ls")),
        "{record:#?}"
    );
    assert!(!record.files.contains(Path::new("/bin/ls")));
    // Run as a program, not only opened.
    assert!(record.executed.contains(Path::new("/usr/bin/ls")));
}

#[test]
fn a_chain_of_links_is_kept_whole() {
    let dir = host_dir();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("c"), "data").unwrap();
    symlink(root.join("c"), root.join("b")).unwrap();
    symlink("b", root.join("a")).unwrap();
    let record = traced(&format!("cat {}", root.join("a").display()));
    assert_eq!(
        record.symlinks.get(&root.join("a")),
        Some(&PathBuf::from("b"))
    );
    assert_eq!(record.symlinks.get(&root.join("b")), Some(&root.join("c")));
    assert!(record.files.contains(&root.join("c")));
    assert!(!record.files.contains(&root.join("a")));
}

#[test]
fn a_listed_directory_is_recorded_as_one() {
    let dir = host_dir();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("inside"), "").unwrap();
    let record = traced(&format!("ls {} >/dev/null", root.display()));
    assert!(record.dirs.contains(&root), "{record:#?}");
    assert!(!record.files.contains(&root));
    // Listed, not opened: its entries are not the probe's files.
    assert!(!record.files.contains(&root.join("inside")));
}

#[test]
fn a_relative_path_is_taken_from_the_working_directory() {
    let dir = host_dir();
    let root = dir.path().canonicalize().unwrap();
    std::fs::write(root.join("here"), "").unwrap();
    let record = trace(&Probe {
        cwd: root.clone(),
        ..Probe::new("cat ./here && cd / && cat etc/hostname")
    })
    .unwrap();
    assert!(record.files.contains(&root.join("here")), "{record:#?}");
    assert!(record.files.contains(Path::new("/etc/hostname")));
}

#[test]
fn a_failed_lookup_is_not_recorded() {
    let record = traced("cat /nonexistent-mkroot-trace 2>/dev/null || true");
    assert!(record
        .files
        .iter()
        .chain(record.dirs.iter())
        .chain(record.symlinks.keys())
        .all(|p| !p.starts_with("/nonexistent-mkroot-trace")));
}

#[test]
fn what_the_probe_writes_stays_in_the_sandbox() {
    let marker = format!("mkroot-trace-{}", std::process::id());
    let at_root = PathBuf::from(format!("/{marker}"));
    let in_tmp = PathBuf::from(format!("/tmp/{marker}"));
    let in_etc = Path::new("/etc/hostname");
    let hostname_before = std::fs::read(in_etc).unwrap();
    let record = traced(&format!(
        "echo x > {root} && echo y > {tmp} && cat {root} {tmp} && echo z >> /etc/hostname && mkdir -p /usr/mkroot-trace-dir",
        root = at_root.display(),
        tmp = in_tmp.display()
    ));
    assert!(!at_root.exists());
    assert!(!in_tmp.exists());
    assert!(!Path::new("/usr/mkroot-trace-dir").exists());
    assert_eq!(std::fs::read(in_etc).unwrap(), hostname_before);
    for path in [&at_root, &in_tmp] {
        assert!(!record.files.contains(path), "{record:#?}");
    }
    // A host file the probe wrote to is still a host file it used.
    assert!(record.files.contains(in_etc));
}

#[test]
fn nested_shells_are_followed() {
    let record = traced("sh -c 'sh -c \"cat /etc/os-release\"' >/dev/null");
    assert!(
        record.files.contains(Path::new("/usr/lib/os-release"))
            || record.files.contains(Path::new("/etc/os-release")),
        "{record:#?}"
    );
    assert!(record.files.contains(Path::new("/usr/bin/cat")));
    assert!(record.executed.contains(Path::new("/usr/bin/cat")));
    // What cat read it did not run.
    assert!(record.executed.iter().all(|p| !p.ends_with("os-release")));
}

#[test]
fn python_imports_are_recorded() {
    let record = traced("python3 -c 'import json'");
    assert!(
        record
            .files
            .iter()
            .any(|p| p.ends_with("json/__init__.py") && p.starts_with("/usr/lib")),
        "{record:#?}"
    );
}

#[test]
fn a_probe_past_its_time_limit_is_killed_with_everything_it_started() {
    // A unique argument finds the sleep among the host's processes.
    let marker = format!("{}.{}", 100 + std::process::id() % 1000, std::process::id());
    let probe = Probe {
        timeout: Duration::from_secs(1),
        ..probe(&format!("sleep {marker} & sleep {marker}; wait"))
    };
    let started = Instant::now();
    let result = trace(&probe);
    assert!(
        matches!(result, Err(TraceError::TimedOut { ref limit, .. }) if *limit == Duration::from_secs(1)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let survivors = processes_with(&marker);
    assert!(survivors.is_empty(), "{survivors:?}");
}

/// The host's processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker))
        .collect()
}

/// Polls `done` for up to ten seconds.
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn a_caller_killed_with_sigkill_leaves_no_probe_process() {
    let marker = format!("{}.{}", 200 + std::process::id() % 1000, std::process::id());
    // SAFETY: the child only calls trace and leaves with _exit.
    let caller = unsafe { libc::fork() };
    assert!(caller >= 0);
    if caller == 0 {
        let _ = trace(&probe(&format!("sleep {marker}")));
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(0) };
    }
    let started = eventually(|| !processes_with(&format!("sleep {marker}")).is_empty());
    // SAFETY: our own child.
    unsafe {
        libc::kill(caller, libc::SIGKILL);
        libc::waitpid(caller, std::ptr::null_mut(), 0);
    }
    assert!(started, "the probe never started");
    assert!(
        eventually(|| processes_with(&marker).is_empty()),
        "{:?}",
        processes_with(&marker)
    );
}

#[test]
fn a_failing_probe_gives_its_status_and_still_its_record() {
    match trace(&probe("cat /etc/hostname >/dev/null; exit 3")) {
        Err(TraceError::ProbeFailed { status, record, .. }) => {
            assert_eq!(status, 3);
            assert_eq!(record.exit_status, 3);
            assert!(record.files.contains(Path::new("/etc/hostname")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_program_is_not_found() {
    let result = trace(&probe("mkroot-no-such-program --version"));
    match result {
        Err(TraceError::NotFound { ref stderr, .. }) => assert!(stderr.contains("not found")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_traces_of_one_probe_are_equal() {
    let command = "ls -l /usr/bin >/dev/null && python3 -c 'import json'";
    assert_eq!(traced(command), traced(command));
}

#[test]
fn without_host_networking_only_loopback_is_there() {
    let dir = host_dir();
    let out = dir.path().join("links");
    let record = traced(
        "ls /sys/class/net > /tmp/links && cat /tmp/links >&2 && test \"$(cat /tmp/links)\" = lo",
    );
    assert!(!out.exists());
    assert_eq!(record.exit_status, 0);
    let host = trace(&Probe {
        net: TraceNet::Host,
        ..probe("test -e /sys/class/net/lo")
    });
    assert!(host.is_ok(), "{host:?}");
}

#[test]
fn excluded_paths_and_system_trees_are_left_out() {
    let record = trace(&Probe {
        exclude: vec!["/etc/host*".to_string()],
        ..probe("cat /etc/hostname /proc/self/status /sys/class/net/lo/mtu >/dev/null")
    })
    .unwrap();
    assert!(!record.files.contains(Path::new("/etc/hostname")));
    for path in record.files.iter().chain(&record.dirs) {
        assert!(
            !["/proc", "/sys", "/dev", "/run"]
                .iter()
                .any(|t| path.starts_with(t)),
            "{path:?}"
        );
    }
}

//! End-to-end tests of `launch`: real containers from busybox images the tests build.
//! They need root (CI runs as root); the rootless ones create a user of their own.

use std::os::fd::FromRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mkroot_e2e::launch::{
    assert_succeeded, describe, host_mounts, launch, launch_bin, open_up, stdout,
    stdout_of_success, tree_listing, BusyboxImage, TestUser,
};

/// Runs the shell `script` in the image (used in place).
fn run_in(image: &BusyboxImage, script: &str) -> std::process::Output {
    run_with_flags(image, &[], script)
}

/// Runs the shell `script` in the image with launch's `flags` before the `--`.
fn run_with_flags(image: &BusyboxImage, flags: &[&str], script: &str) -> std::process::Output {
    image.launch(flags, &["/bin/sh", "-c", script])
}

/// The stdout of `script` run in the image; fails the test unless it succeeds.
#[track_caller]
fn stdout_of_script(image: &BusyboxImage, script: &str) -> String {
    stdout_of_success(&run_in(image, script))
}

#[test]
fn the_command_runs_under_an_init_as_pid_1_and_sees_only_its_own_processes() {
    let image = BusyboxImage::new();
    let text = stdout_of_script(
        &image,
        "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'; ps -o pid,comm,args | grep '^ *1 '",
    );
    let lines: Vec<&str> = text.lines().collect();
    // The shell is PID 2: PID 1 is the launcher's init in front of it, one name for it
    // in top's /proc/1/comm and in ps's command line.
    assert_eq!(lines[0], "2", "{text}");
    assert_eq!(lines[1], "launch-init", "{text}");
    let init: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(init, ["1", "launch-init", "launch-init"], "{text}");
    // init, the shell, and the shell's ls/grep pipeline: nothing of the host's.
    let count: usize = lines[2].parse().unwrap();
    assert!(count <= 4, "{count} processes visible: {text}");

    let ps = run_in(&image, "ps");
    let listed: Vec<String> = stdout(&ps).lines().skip(1).map(str::to_string).collect();
    assert!(listed.len() <= 3, "{}", describe(&ps));
    for line in &listed {
        let pid: u32 = line.split_whitespace().next().unwrap().parse().unwrap();
        assert!(pid < 10, "host-like pid in ps: {line}");
    }
}

#[test]
fn the_hostname_inside_is_its_own() {
    let image = BusyboxImage::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let text = stdout_of_script(&image, "hostname; cat /etc/hostname");
    let mut lines = text.lines();
    let inside = lines.next().unwrap();
    assert_ne!(inside, host.trim());
    assert_eq!(lines.next(), Some(inside), "/etc/hostname matches");

    let named = run_with_flags(
        &image,
        &["--hostname", "box-one"],
        "hostname; grep box-one /etc/hosts",
    );
    assert_succeeded(&named);
    assert!(stdout(&named).starts_with("box-one\n"));
    // The image's own /etc/hostname was covered, never written.
    let own = std::fs::read_to_string(image.root().join("etc/hostname")).unwrap();
    assert_eq!(own, "image-own-hostname\n");
}

/// A System V message queue made on the host, removed on drop.
struct HostMessageQueue(String);

impl HostMessageQueue {
    fn create() -> HostMessageQueue {
        let out = Command::new("ipcmk").arg("-Q").output().expect("ipcmk");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().rsplit(' ').next().unwrap().to_string();
        HostMessageQueue(id)
    }
}

impl Drop for HostMessageQueue {
    fn drop(&mut self) {
        let _ = Command::new("ipcrm").args(["-q", &self.0]).status();
    }
}

#[test]
fn a_host_message_queue_is_not_visible_inside() {
    let image = BusyboxImage::new();
    let queue = HostMessageQueue::create();
    let ids = |table: &str| -> Vec<String> {
        table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    };
    let host_table = std::fs::read_to_string("/proc/sysvipc/msg").unwrap();
    assert!(
        ids(&host_table).contains(&queue.0),
        "the host sees its queue"
    );
    let out = run_in(&image, "cat /proc/sysvipc/msg");
    assert_succeeded(&out);
    assert!(ids(&stdout(&out)).is_empty(), "{}", describe(&out));
}

#[test]
fn only_loopback_is_inside_and_it_is_up() {
    let image = BusyboxImage::new();
    let text = stdout_of_script(
        &image,
        "ls /sys/class/net; cat /sys/class/net/lo/operstate; cat /proc/net/dev",
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("lo"), "{text}");
    // lo reports `unknown` when up (it has no carrier), `down` otherwise.
    assert_eq!(lines.next(), Some("unknown"), "{text}");
    let interfaces: Vec<&str> = lines
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(interfaces, ["lo"], "{text}");
}

#[test]
fn rootless_maps_the_caller_to_root() {
    let user = TestUser::create("map");
    let image = BusyboxImage::new();
    image.give_to(&user);
    let root = image.root();
    let out = user.launch(&[
        root.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; hostname; echo x > /written && cat /written",
    ]);
    let text = stdout_of_success(&out);
    let fields: Vec<Vec<&str>> = text
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], ["0", &user.uid.to_string(), "1"], "{text}");
    assert_eq!(fields[1][0], "0");
    assert_eq!(fields[1][2], "1");
    assert_eq!(text.lines().nth(2), Some("0"), "root inside: {text}");
    assert!(text.ends_with("x\n"), "{text}");
    assert!(!root.join("written").exists(), "the image is untouched");

    // A tarball, unpacked into the user's own cache (~/.cache/mkroot-launch).
    let tarball = image.tarball();
    open_up(&tarball);
    let out = user.launch(&[
        tarball.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "id -u; ls /bin/busybox",
    ]);
    assert_succeeded(&out);
    assert_eq!(stdout(&out), "0\n/bin/busybox\n");
    let home = std::path::PathBuf::from(format!("/home/{}", user.name));
    assert_eq!(names_in(&home.join(".cache/mkroot-launch/images")).len(), 1);
}

#[test]
fn volumes_are_writable_or_read_only() {
    let image = BusyboxImage::new();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("from-host"), "hello\n").unwrap();
    let rw = format!("{}:/data", shared.path().display());
    let out = run_with_flags(
        &image,
        &["-v", &rw],
        "cat /data/from-host && echo inside > /data/from-container",
    );
    assert_succeeded(&out);
    assert_eq!(stdout(&out), "hello\n");
    let written = std::fs::read_to_string(shared.path().join("from-container")).unwrap();
    assert_eq!(written, "inside\n");

    let ro = format!("{}:/deep/ro/data:ro", shared.path().display());
    let out = run_with_flags(
        &image,
        &["-v", &ro],
        "cat /deep/ro/data/from-host; echo no > /deep/ro/data/denied",
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    assert!(!shared.path().join("denied").exists());

    let missing = image.launch(&["-v", "/no/such/dir:/x"], &["true"]);
    assert_eq!(missing.status.code(), Some(125), "{}", describe(&missing));
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1);
}

#[test]
fn exit_statuses_follow_docker() {
    let image = BusyboxImage::new();
    let cases: [(&[&str], i32); 6] = [
        (&["/bin/sh", "-c", "exit 0"], 0),
        (&["/bin/sh", "-c", "exit 42"], 42),
        (&["/bin/sh", "-c", "kill -9 $$"], 137),
        (&["/no/such/program"], 127),
        (&["/etc/passwd"], 126),
        (&["/etc"], 126),
    ];
    for (command, expected) in cases {
        let out = image.launch(&[], command);
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{command:?}: {}",
            describe(&out)
        );
    }
    // A directory is said to be one (exec itself only says "Permission denied").
    let dir = image.launch(&[], &["/etc"]);
    assert_eq!(
        String::from_utf8_lossy(&dir.stderr),
        "launch: /etc: Is a directory\n"
    );
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let not_a_tarball = launch(["--cache-dir", cache_dir, "/etc/passwd", "--", "true"]);
    assert_eq!(
        not_a_tarball.status.code(),
        Some(125),
        "{}",
        describe(&not_a_tarball)
    );
    assert_eq!(
        String::from_utf8_lossy(&not_a_tarball.stderr)
            .lines()
            .count(),
        1
    );

    let bad_image = launch(["/no/such/image.tgz", "--", "true"]);
    assert_eq!(
        bad_image.status.code(),
        Some(125),
        "{}",
        describe(&bad_image)
    );
    let stderr = String::from_utf8_lossy(&bad_image.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/no/such/image.tgz"), "{stderr}");
}

#[test]
fn the_command_gets_sigpipe_like_any_program() {
    // The launcher ignores SIGPIPE (its C main, as Rust's runtime would); the command
    // must not inherit that (`yes | head -1` would end in EPIPE errors, not SIGPIPE).
    let image = BusyboxImage::new();
    let text = stdout_of_script(&image, "grep SigIgn /proc/self/status");
    let mask = text
        .split_whitespace()
        .nth(1)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn mask in {text:?}"));
    assert_eq!(
        mask & 1 << (libc::SIGPIPE - 1),
        0,
        "SIGPIPE ignored: {text}"
    );
}

#[test]
fn a_bad_flag_is_one_line_naming_it_and_exit_125() {
    for args in [
        &["--bogus", "img.tgz"][..],
        &["--memory", "lots", "img.tgz"][..],
        &["--net", "sideways", "img.tgz"][..],
    ] {
        let out = launch(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("launch: "), "{stderr}");
        assert!(
            stderr.contains(args[0]) || stderr.contains(args[1]),
            "{stderr}"
        );
    }
}

#[test]
fn an_unusable_image_or_cache_is_one_line_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("passwd-copy");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let cache = dir.path().join("cache");
    let missing = dir.path().join("missing.tgz");
    let not_a_dir = text.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "--cache-dir",
                cache.to_str().unwrap(),
                missing.to_str().unwrap(),
            ],
            "no such image; give a tarball",
        ),
        (
            vec![
                "--cache-dir",
                cache.to_str().unwrap(),
                text.to_str().unwrap(),
            ],
            "not a tar archive",
        ),
        (
            vec!["--cache-dir", not_a_dir, text.to_str().unwrap()],
            "give --cache-dir a directory you can write",
        ),
    ];
    for (args, expected) in cases {
        let out = launch(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        // The file's contents are not quoted back.
        assert!(!stderr.contains("root:x"), "{stderr}");
    }
}

#[test]
fn a_closed_stdout_is_not_taken_by_a_file_launch_opens() {
    // Started with descriptor 1 closed, launch must not let the first file it opens (the
    // image, a cache file) take the number: what the container prints would land there.
    let image = BusyboxImage::new();
    let cache = tempfile::tempdir().unwrap();
    let tarball = image.tarball();
    let before = std::fs::read(&tarball).unwrap();
    let mut command = Command::new(launch_bin());
    command
        .args(["--cache-dir", cache.path().to_str().unwrap()])
        .arg(&tarball)
        .args(["--", "/bin/sh", "-c", "echo PRINTED; echo PRINTED >&2"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: close(2) between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::close(1);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "PRINTED\n");
    assert_eq!(std::fs::read(&tarball).unwrap(), before);
    for file in tree_listing(cache.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(7).any(|w| w == b"PRINTED"),
            "{} got the output",
            file.display()
        );
    }
}

#[test]
fn signals_to_launch_reach_the_command() {
    let image = BusyboxImage::new();
    let root = image.root();
    for (signal, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR1, "USR1"),
    ] {
        let mut child = Command::new(launch_bin())
            .args([root.to_str().unwrap(), "--", "/bin/sh", "-c"])
            .arg(format!(
                "trap 'echo got-{name}; exit 7' {name}; echo ready; while :; do sleep 0.05; done"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        // SAFETY: signalling the child we spawned.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert_eq!(rest, format!("got-{name}\n"));
        assert_eq!(status.code(), Some(7), "SIG{name}");
    }
}

#[test]
fn orphans_are_reaped_by_init() {
    let image = BusyboxImage::new();
    // The inner shell starts a short sleep, prints its PID and exits at once: the sleep
    // is orphaned to PID 1 (its parent is then 1). Once it has ended, its /proc entry is
    // gone only if init reaped it; unreaped it would stay as a zombie (state Z), and if
    // it never ended it would still be sleeping: either way the entry is still there.
    let text = stdout_of_script(
        &image,
        "pid=$(sh -c 'sleep 0.3 >/dev/null & echo $!'); \
         read -r _ _ _ parent _ < /proc/$pid/stat; echo parent=$parent; \
         sleep 1; \
         if [ -e /proc/$pid ]; then cat /proc/$pid/stat; else echo reaped; fi",
    );
    assert_eq!(text, "parent=1\nreaped\n", "orphan not reaped");
}

#[test]
fn a_file_written_to_root_is_gone_at_the_next_launch() {
    let image = BusyboxImage::new();
    let before = tree_listing(&image.root());
    let out = run_in(&image, "echo x > /marker && rm /bin/ls && cat /marker");
    assert_succeeded(&out);
    let out = run_in(&image, "test ! -e /marker && test -e /bin/ls && echo clean");
    assert_eq!(stdout(&out), "clean\n", "{}", describe(&out));
    assert_eq!(
        tree_listing(&image.root()),
        before,
        "the image itself is unchanged"
    );

    let ro = run_with_flags(
        &image,
        &["--read-only", "--tmpfs", "/scratch"],
        "echo ok > /scratch/f && cat /scratch/f && echo no > /denied",
    );
    assert!(!ro.status.success(), "{}", describe(&ro));
    assert_eq!(stdout(&ro), "ok\n");
    assert!(String::from_utf8_lossy(&ro.stderr).contains("Read-only file system"));
}

/// The names in `dir` (empty when it does not exist).
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn ten_launches_of_one_image_at_once_all_succeed_and_share_one_cache_entry() {
    let image = BusyboxImage::new();
    let tarball = image.tarball();
    let cache = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..10)
        .map(|i| {
            Command::new(launch_bin())
                .arg("--cache-dir")
                .arg(cache.path())
                .arg(&tarball)
                .args(["--", "/bin/sh", "-c"])
                .arg(format!("echo {i} > /mine && cat /mine"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_succeeded(&out);
        assert_eq!(
            stdout(&out),
            format!("{i}\n"),
            "each container its own layer"
        );
    }
    assert_eq!(
        names_in(&cache.path().join("images")).len(),
        1,
        "one cache entry"
    );
    assert!(
        names_in(&cache.path().join("tmp")).is_empty(),
        "no unpack left over"
    );
    assert!(
        names_in(&cache.path().join("layers")).is_empty(),
        "no layer left over"
    );
}

#[test]
fn the_cache_is_listed_and_pruned() {
    let image = BusyboxImage::new();
    let tarball = image.tarball();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_str().unwrap();
    let out = launch(["--cache-dir", dir, tarball.to_str().unwrap(), "--", "true"]);
    assert_succeeded(&out);
    let digest = names_in(&cache.path().join("images"))
        .pop()
        .expect("cached");

    let ls = launch(["cache", "ls", "--cache-dir", dir]);
    assert_succeeded(&ls);
    assert!(stdout(&ls).contains(&digest[..16]), "{}", describe(&ls));

    let prune = launch(["cache", "prune", "--cache-dir", dir]);
    assert_succeeded(&prune);
    assert!(names_in(&cache.path().join("images")).is_empty());
    let ls = launch(["cache", "ls", "--cache-dir", dir]);
    assert!(!stdout(&ls).contains(&digest[..16]), "{}", describe(&ls));
}

#[test]
fn an_interactive_shell_through_a_real_pty() {
    let image = BusyboxImage::new();
    let line = format!("{} {}", launch_bin().display(), image.root().display());
    // script(1) gives launch a real terminal; the shell reads our lines from it.
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        b"echo sum-$((40+2)); tty\nexit 3\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("sum-42"), "{}", describe(&out));
    assert!(
        text.contains("/dev/pts/0"),
        "a pty of the container's own devpts: {text}"
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
}

#[test]
fn nothing_is_left_behind_after_exit_error_or_sigkill() {
    let image = BusyboxImage::new();
    let root = image.root();
    let cache = tempfile::tempdir().unwrap();
    let mounts = host_mounts();
    let files = tree_listing(&root);

    let ok = run_in(&image, "touch /a /tmp/b; mount | grep -c overlay");
    assert_succeeded(&ok);
    let tarball = image.tarball();
    let cached = launch([
        "--cache-dir",
        cache.path().to_str().unwrap(),
        tarball.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "touch /a /tmp/b",
    ]);
    assert_succeeded(&cached);
    let cached_files = tree_listing(cache.path());
    // A working directory under a file: the command cannot start (exit 125).
    let failed = image.launch(&["--workdir", "/bin/sh/x"], &["true"]);
    assert_eq!(failed.status.code(), Some(125), "{}", describe(&failed));

    // SIGKILL of launch itself: the container must die with it.
    let mut child = Command::new(launch_bin())
        .args([
            root.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "echo up; exec sleep 60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = [0u8; 3];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut up).unwrap();
    let launcher = child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children")).unwrap();
    let init: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{init}")).exists() {
        assert!(Instant::now() < deadline, "the container outlived launch");
        std::thread::sleep(Duration::from_millis(20));
    }

    assert_eq!(host_mounts(), mounts, "no mount leaked into the host");
    assert_eq!(tree_listing(&root), files, "no file left in the image dir");
    assert_eq!(
        tree_listing(cache.path()),
        cached_files,
        "nothing added to the cache"
    );
    assert!(names_in(&cache.path().join("tmp")).is_empty());
    assert!(names_in(&cache.path().join("layers")).is_empty());
}

#[test]
fn user_workdir_and_environment_reach_the_command() {
    let image = BusyboxImage::new();
    let env_file = image.dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=1\nBOTH=file\n").unwrap();
    let out = run_with_flags(
        &image,
        &[
            "-u",
            "1000:1001",
            "-w",
            "/tmp",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "BOTH=flag",
        ],
        "id -u; id -g; pwd; echo $FROM_FILE $BOTH; grep Cap[EP][fr][fm] /proc/self/status",
    );
    let text = stdout_of_success(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..4], ["1000", "1001", "/tmp", "1 flag"], "{text}");
    // Not root: no capabilities left at all.
    for line in &lines[4..] {
        assert!(line.ends_with("0000000000000000"), "{text}");
    }

    let root_caps = run_in(&image, "grep CapBnd /proc/self/status");
    let mask = stdout(&root_caps);
    let mask = u64::from_str_radix(mask.split_whitespace().nth(1).unwrap(), 16).unwrap();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_NET_ADMIN: u64 = 1 << 12;
    assert_eq!(
        mask & (CAP_SYS_ADMIN | CAP_NET_ADMIN),
        0,
        "root inside keeps a small set"
    );
    assert!(mask.count_ones() <= 14, "{mask:x}");

    // A working directory the image lacks is made (root's, 0755), as docker does; the
    // image itself is untouched.
    let made = run_with_flags(
        &image,
        &["-w", "/made/here"],
        "pwd; stat -c %a:%u /made/here",
    );
    assert_eq!(stdout_of_success(&made), "/made/here\n755:0\n");
    assert!(!image.root().join("made").exists());
}

#[test]
fn the_images_recorded_command_and_environment_are_the_default() {
    let image = BusyboxImage::new();
    let root = image.root();
    std::fs::create_dir_all(root.join(".mkroot")).unwrap();
    let manifest = mkroot_common::manifest::ImageManifest {
        version: mkroot_common::manifest::MANIFEST_VERSION,
        cmd: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo from-manifest $IMAGE_VAR".into(),
        ],
        env: vec!["IMAGE_VAR=7".into()],
        files: Vec::new(),
    };
    std::fs::write(
        root.join(mkroot_common::manifest::MANIFEST_PATH),
        manifest.to_json_bytes(),
    )
    .unwrap();
    let out = launch([root.to_str().unwrap()]);
    assert_succeeded(&out);
    assert_eq!(stdout(&out), "from-manifest 7\n");
    // A command given after `--` wins; the image's environment still applies (docker's
    // rule), and `-e` overrides it.
    let out = run_in(&image, "echo $IMAGE_VAR");
    assert_eq!(stdout(&out), "7\n", "{}", describe(&out));
    let out = run_with_flags(&image, &["-e", "IMAGE_VAR=8"], "echo $IMAGE_VAR");
    assert_eq!(stdout(&out), "8\n", "{}", describe(&out));
}

#[test]
fn userns_as_root_maps_root_inside_to_an_unprivileged_range() {
    let image = BusyboxImage::new();
    let root = image.root();
    let out = run_with_flags(
        &image,
        &["--userns"],
        "cat /proc/self/uid_map; id -u; stat -c %u /bin; echo w > /etc/written && cat /etc/written",
    );
    let text = stdout_of_success(&out);
    let map: Vec<u64> = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(map[0], 0, "{text}");
    assert!(map[1] >= 1000, "root inside is not root outside: {text}");
    assert!(map[2] >= 1, "{text}");
    // The image's files (root's outside) are root's inside, and its directories can be
    // written to (through the overlay).
    assert!(text.ends_with("0\n0\nw\n"), "{text}");
    assert!(!root.join("etc/written").exists(), "the image is untouched");
}

#[test]
fn a_command_that_is_an_init_runs_as_pid_1_itself() {
    let image = BusyboxImage::new();
    let root = image.root();
    let tini = root.join("bin/tini");
    std::fs::write(&tini, "#!/bin/sh\necho pid=$$\nexit 3\n").unwrap();
    std::fs::set_permissions(&tini, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = image.launch(&[], &["tini"]);
    assert_eq!(stdout(&out), "pid=1\n", "{}", describe(&out));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
}

/// Runs `launch args` as uid/gid `id` inside a user namespace of our own in which
/// user namespaces are forbidden (user.max_user_namespaces = 0 is per namespace), so
/// the host's setting is left alone. Returns (exit code, stderr).
fn launch_where_user_namespaces_are_forbidden(id: u32, args: &[&str]) -> (i32, String) {
    use std::ffi::CString;
    let bin = CString::new(launch_bin().to_str().unwrap()).unwrap();
    let argv_c: Vec<CString> = std::iter::once("launch")
        .chain(args.iter().copied())
        .map(|a| CString::new(a).unwrap())
        .collect();
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env_c = [CString::new("HOME=/nonexistent").unwrap()];
    let env = [env_c[0].as_ptr(), std::ptr::null()];
    let sysctl = CString::new("/proc/sys/user/max_user_namespaces").unwrap();
    let mut ready = [0; 2];
    let mut go = [0; 2];
    let mut err = [0; 2];
    // SAFETY: after fork the child makes only async-signal-safe syscalls on data
    // prepared above, and execs or _exits.
    unsafe {
        assert_eq!(libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        if pid == 0 {
            let mut byte = 0u8;
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                libc::_exit(90);
            }
            libc::write(ready[1], b"r".as_ptr().cast(), 1);
            libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
            let fd = libc::open(sysctl.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0\n".as_ptr().cast(), 2) != 2 {
                libc::_exit(91);
            }
            libc::dup2(err[1], 2);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(id, id, id) != 0
                || libc::setresuid(id, id, id) != 0
            {
                libc::_exit(92);
            }
            libc::execve(bin.as_ptr(), argv.as_ptr(), env.as_ptr());
            libc::_exit(93);
        }
        libc::close(ready[1]);
        libc::close(go[0]);
        libc::close(err[1]);
        let mut byte = 0u8;
        assert_eq!(libc::read(ready[0], (&mut byte as *mut u8).cast(), 1), 1);
        // As root outside we may map both root (to write the sysctl) and the user.
        let map = format!("0 0 1\n{id} {id} 1\n");
        std::fs::write(format!("/proc/{pid}/uid_map"), &map).unwrap();
        std::fs::write(format!("/proc/{pid}/gid_map"), &map).unwrap();
        libc::write(go[1], b"g".as_ptr().cast(), 1);
        let stderr = std::fs::File::from_raw_fd(err[0]);
        let stderr = std::io::read_to_string(stderr).unwrap();
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::close(ready[0]);
        libc::close(go[1]);
        (libc::WEXITSTATUS(status), stderr)
    }
}

#[test]
fn rootless_says_clearly_when_the_kernel_forbids_user_namespaces() {
    let image = BusyboxImage::new();
    let root = image.root();
    open_up(&root);
    let (code, stderr) =
        launch_where_user_namespaces_are_forbidden(1000, &[root.to_str().unwrap(), "--", "true"]);
    assert_eq!(code, 125, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("forbids unprivileged user namespaces")
            && stderr.contains("user.max_user_namespaces = 0"),
        "{stderr}"
    );
}

/// Landlock denies moving or linking a file into another directory unless the ruleset
/// grants it (REFER): every installer that stages files and moves them into place
/// (apt, dpkg, pip, git) depends on it. On the root, on /tmp and on a volume.
#[test]
fn files_move_and_link_between_directories_everywhere() {
    let image = BusyboxImage::new();
    let volume = tempfile::tempdir().unwrap();
    let rw = format!("{}:/data", volume.path().display());
    let script = "for d in /var /tmp /data; do \
        busybox mkdir -p $d/a $d/b && echo x > $d/a/f && \
        busybox ln $d/a/f $d/b/linked && \
        busybox mv $d/a/f $d/b/moved 2>&1 && \
        busybox mkdir $d/a/sub && busybox mv $d/a/sub $d/b/sub && \
        echo $d ok || exit 1; done";
    // mv would hide an EXDEV by copying; a hard link has no such fallback.
    let out = run_with_flags(&image, &["-v", &rw], script);
    assert_eq!(
        stdout(&out),
        "/var ok\n/tmp ok\n/data ok\n",
        "{}",
        describe(&out)
    );
    assert!(volume.path().join("b/moved").exists());
}

/// A program the image keeps under /tmp runs: launch mounts nothing over the image's
/// /tmp, /run or /var/tmp (as docker and runc), and with --read-only they stay
/// writable with the image's content in them.
#[test]
fn the_images_own_tmp_is_used_and_stays_writable_when_read_only() {
    let image = BusyboxImage::new();
    let work = image.root().join("tmp/work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("hello.sh"), "#!/bin/sh\necho hello from /tmp\n").unwrap();
    std::fs::set_permissions(
        work.join("hello.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = image.launch(&[], &["/tmp/work/hello.sh"]);
    assert_eq!(stdout(&out), "hello from /tmp\n", "{}", describe(&out));

    let out = run_with_flags(
        &image,
        &["--read-only"],
        "/tmp/work/hello.sh && for d in /tmp /run /var/tmp; do echo x > $d/w || exit 1; done \
         && stat -c %a /var/tmp && echo no > /denied",
    );
    assert_eq!(
        stdout(&out),
        "hello from /tmp\n1777\n",
        "{}",
        describe(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
}

/// Init keeps CAP_KILL alone once the command runs: enough to end what a command
/// running as another user left behind (kill(-1) from root needs it for processes of
/// other uids), so the launch still ends when the command does.
#[test]
fn what_a_command_of_another_user_leaves_running_is_ended_with_it() {
    let image = BusyboxImage::new();
    let started = Instant::now();
    let out = run_with_flags(
        &image,
        &["-u", "1000:1000"],
        "sleep 600 > /dev/null 2>&1 & echo left $(id -u)",
    );
    assert_eq!(stdout(&out), "left 1000\n", "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the launch waited for the leftover sleep: {:?}",
        started.elapsed()
    );
}

#[test]
fn userns_as_root_works_the_users_way_from_the_default_cache_and_under_tmp() {
    // As a new user types it: a tarball in root's default cache (/var/cache/mkroot-launch,
    // here a tmpfs of the test's own), and a directory image under /tmp.
    let image = BusyboxImage::new();
    let subids = mkroot_e2e::subids::SubidFiles::empty();
    for target in [image.tarball(), image.root()] {
        let mut command = Command::new(launch_bin());
        command
            .arg(&target)
            .args(["--userns", "--", "id", "-u"])
            .stdin(Stdio::null());
        subids.apply(&mut command, true);
        let out = command.output().expect("run launch");
        assert_eq!(
            stdout(&out),
            "0\n",
            "{}: {}",
            target.display(),
            describe(&out)
        );
    }
    assert_eq!(subids.subuid(), "mkroot-launch:100000:65536\n");
}

#[test]
fn a_user_without_a_home_directory_launches_with_a_cache_of_its_own() {
    let user = TestUser::create_without_home("nohome");
    let image = BusyboxImage::new();
    image.give_to(&user);
    let tarball = image.tarball();
    let fallback = std::path::PathBuf::from(format!("/tmp/mkroot-launch-{}", user.uid));
    let _ = std::fs::remove_dir_all(&fallback);
    let out = user.launch(&[tarball.to_str().unwrap(), "--", "echo", "hi"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    let _cleanup = RemoveOnDrop(fallback.clone());
    assert_eq!(stdout_of_success(&out), "hi\n", "{said}");
    assert!(
        said.contains(&format!("caching images in {}", fallback.display())),
        "{said}"
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&fallback).unwrap();
    assert_eq!(meta.uid(), user.uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    // The second launch finds the image in that cache.
    let again = user.launch(&[tarball.to_str().unwrap(), "--", "echo", "again"]);
    assert_eq!(stdout_of_success(&again), "again\n");
}

/// Removes a directory (with what is in it) when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cache_ls_shows_sources_and_a_total_and_prune_goes_by_age_and_size() {
    let a = BusyboxImage::new();
    let b = BusyboxImage::new();
    std::fs::write(b.root().join("etc/b"), "b\n").unwrap();
    let (ta, tb) = (a.tarball(), b.tarball());
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_str().unwrap();
    for tarball in [&ta, &tb] {
        assert_succeeded(&launch([
            "--cache-dir",
            dir,
            tarball.to_str().unwrap(),
            "--",
            "true",
        ]));
    }
    // The row of each image: (digest prefix, bytes), found by its source.
    let rows = || {
        let ls = launch(["cache", "ls", "--cache-dir", dir]);
        assert_succeeded(&ls);
        stdout(&ls)
    };
    let row_of = |text: &str, source: &Path| -> Option<(String, u64)> {
        text.lines()
            .find(|l| l.ends_with(source.to_str().unwrap()))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[1].parse().unwrap())
            })
    };
    let text = rows();
    let (digest_a, bytes_a) = row_of(&text, &ta).unwrap_or_else(|| panic!("{text}"));
    let (_, bytes_b) = row_of(&text, &tb).unwrap_or_else(|| panic!("{text}"));
    assert!(
        text.contains(&format!("total: 2 image(s), {} bytes", bytes_a + bytes_b)),
        "{text}"
    );

    // A was last used ten days ago: --older-than 7d removes it alone.
    let full = names_in(&cache.path().join("images"))
        .into_iter()
        .find(|d| d.starts_with(&digest_a))
        .unwrap();
    let used = cache.path().join("images").join(full).join("used");
    let touched = std::process::Command::new("touch")
        .args(["-d", "10 days ago"])
        .arg(&used)
        .status()
        .unwrap();
    assert!(touched.success());
    assert_succeeded(&launch([
        "cache",
        "prune",
        "--cache-dir",
        dir,
        "--older-than",
        "7d",
    ]));
    let text = rows();
    assert!(row_of(&text, &ta).is_none(), "{text}");
    assert!(row_of(&text, &tb).is_some(), "{text}");

    // A again (now the newest): a budget of A's size removes B, the least recently used.
    assert_succeeded(&launch([
        "--cache-dir",
        dir,
        ta.to_str().unwrap(),
        "--",
        "true",
    ]));
    let budget = bytes_a.to_string();
    assert_succeeded(&launch([
        "cache",
        "prune",
        "--cache-dir",
        dir,
        "--max-size",
        &budget,
    ]));
    let text = rows();
    assert!(row_of(&text, &ta).is_some(), "{text}");
    assert!(row_of(&text, &tb).is_none(), "{text}");
    let bad = launch(["cache", "prune", "--cache-dir", dir, "--older-than", "soon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--older-than soon"));
}

#[test]
fn a_large_first_unpack_shows_progress_on_a_terminal_only() {
    let image = BusyboxImage::new();
    // Incompressible, so the tarball itself is above the 8 MiB the progress line waits for.
    let mut blob = vec![0u8; 10 << 20];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for byte in blob.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *byte = seed as u8;
    }
    std::fs::write(image.root().join("blob"), &blob).unwrap();
    let tarball = image.tarball();
    let cache = tempfile::tempdir().unwrap();
    let line = format!(
        "{} --cache-dir {} {} -- true",
        launch_bin().display(),
        cache.path().join("tty").display(),
        tarball.display()
    );
    // script(1) gives launch a terminal for its stderr.
    let on_tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&on_tty.stdout).into_owned();
    assert!(on_tty.status.success(), "{shown}");
    assert!(shown.contains("launch: unpacking image.tgz: "), "{shown:?}");
    // 10 MiB of blob, and the tar's own headers and busybox.
    let done = shown
        .split("launch: unpacked image.tgz: ")
        .nth(1)
        .unwrap_or_default();
    assert!(done.starts_with("11 MiB in "), "{shown:?}");
    // Cached now: nothing to show.
    let again = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&again.stdout).contains("unpack"));
    // Not on a terminal: a first unpack says nothing.
    let cache_arg = cache.path().join("pipe");
    let piped = launch([
        "--cache-dir",
        cache_arg.to_str().unwrap(),
        tarball.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_succeeded(&piped);
    assert!(piped.stderr.is_empty(), "{}", describe(&piped));
}

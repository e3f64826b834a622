//! Attacks on the container, each of which must fail (issue 4): run as root, each with
//! an image and cache of its own; after each, the host's mounts and cgroups are as they
//! were. The attack programs are C, compiled by the test (tests/src/attack.c).

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::process::Command;

use mkroot_e2e::attacks::{
    AttackImage, HostVictim, HostileTar, Run, BLOCK_DEVICE, CHAR_DEVICE, DIRECTORY, FIFO,
    HARD_LINK, SYMLINK,
};

/// Runs `/bin/attack MODE ARGS` in a fresh container; asserts it was stopped.
fn attack(image: &AttackImage, options: &[&str], args: &[&str]) -> Run {
    let mut command = vec!["/bin/attack"];
    command.extend_from_slice(args);
    let run = image.run(options, &command);
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "attack {args:?} got through:\n{}",
        run.describe()
    );
    assert!(!run.stdout().contains("ALLOWED"), "{}", run.describe());
    run.assert_host_unchanged();
    run
}

fn sh(image: &AttackImage, options: &[&str], script: &str) -> Run {
    image.run(options, &["/bin/sh", "-c", script])
}

#[test]
fn writing_proc_sysrq_trigger_and_kernel_settings_fails() {
    let image = AttackImage::new();
    // `h` only prints help to the kernel log, should the write ever get through.
    let run = sh(
        &image,
        &[],
        "echo h > /proc/sysrq-trigger && echo SYSRQ-WRITTEN; \
         echo 1 > /proc/sys/kernel/sysrq && echo SYSCTL-WRITTEN; \
         grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo",
    );
    let out = run.stdout();
    assert!(!out.contains("WRITTEN"), "{}", run.describe());
    for path in ["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"] {
        let line = out.lines().find(|l| l.split(' ').nth(4) == Some(path));
        if let Some(line) = line {
            assert!(line.contains(" ro,"), "{path} is writable: {line}");
        }
    }
    assert!(out.contains(" /proc/sys "), "{}", run.describe());
    run.assert_host_unchanged();
}

#[test]
fn reading_kernel_memory_symbols_keys_and_firmware_fails() {
    let image = AttackImage::new();
    let run = sh(
        &image,
        &[],
        "for f in /proc/kcore /proc/kallsyms /proc/keys /proc/timer_list /proc/sched_debug; do \
           echo \"$f $(cat $f 2>/dev/null | wc -c)\"; done; \
         echo \"firmware $(ls /sys/firmware | wc -l)\"; \
         echo \"powercap $(ls /sys/devices/virtual/powercap 2>/dev/null | wc -l)\"",
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.describe());
    let out = run.stdout();
    for line in out.lines() {
        let count = line.rsplit(' ').next().unwrap();
        assert_eq!(count, "0", "readable inside: {line}\n{}", run.describe());
    }
    assert_eq!(out.lines().count(), 7, "{}", run.describe());
    run.assert_host_unchanged();
}

#[test]
fn mounting_anything_fails() {
    let image = AttackImage::new();
    attack(&image, &[], &["mount"]);
    let run = sh(&image, &[], "mount -t proc proc /tmp && echo MOUNTED");
    assert!(!run.stdout().contains("MOUNTED"), "{}", run.describe());
    run.assert_host_unchanged();
}

#[test]
fn with_sys_admin_neither_mount_api_mounts_anything() {
    let image = AttackImage::new();
    let admin = ["--cap-add", "SYS_ADMIN"];
    attack(&image, &admin, &["fsmount"]);
    let run = sh(&image, &admin, "mount -t tmpfs none /tmp && echo MOUNTED");
    assert!(!run.stdout().contains("MOUNTED"), "{}", run.describe());
    run.assert_host_unchanged();
    // Control: without the filter Landlock still refuses mount(2), but the new API
    // mounts (here it also reaches the host's cgroup v1 hierarchy, when there is one).
    let open = image.run(
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
        ],
        &["/bin/attack", "fsmount"],
    );
    assert_eq!(open.output.status.code(), Some(1), "{}", open.describe());
    assert!(
        open.stdout().contains("fsmount tmpfs: ALLOWED"),
        "{}",
        open.describe()
    );
    open.assert_host_unchanged();
}

#[test]
fn loading_a_kernel_module_fails() {
    let image = AttackImage::new();
    attack(&image, &[], &["module"]);
}

/// A process on the host, killed (by PID) and reaped when the test ends.
struct HostSleep(std::process::Child);

impl Drop for HostSleep {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn host_processes_can_be_neither_seen_nor_signalled_nor_traced() {
    let image = AttackImage::new();
    let mut sleep = HostSleep(Command::new("sleep").arg("600").spawn().expect("sleep"));
    let pid = sleep.0.id().to_string();
    // (Quoted so that ps, showing this script, does not print the word itself.)
    let seen = sh(
        &image,
        &[],
        &format!("test -e /proc/{pid} && echo F''OUND; ps"),
    );
    assert!(!seen.stdout().contains("FOUND"), "{}", seen.describe());
    assert!(!seen.stdout().contains("sleep 600"), "{}", seen.describe());
    // Not even the launcher's own command line (host paths of the image and cache).
    assert!(!seen.stdout().contains("launch-e2e"), "{}", seen.describe());
    attack(&image, &[], &["signal", &pid]);
    attack(&image, &[], &["ptrace", &pid]);
    assert!(
        sleep.0.try_wait().expect("try_wait").is_none(),
        "the host's process died"
    );
}

#[test]
fn tracing_the_containers_init_fails() {
    let image = AttackImage::new();
    // PID 1 runs the launcher's binary: not dumpable, and no CAP_SYS_PTRACE inside.
    attack(&image, &[], &["ptrace", "1"]);
    attack(&image, &[], &["exe"]);
}

#[test]
fn the_launcher_binary_cannot_be_overwritten_through_proc_self_exe() {
    // CVE-2019-5736: the command /proc/self/exe (or a script starting `#!/proc/self/exe`)
    // runs the launcher's binary inside, with the image's "dynamic loader" (our fake, in
    // /lib64) in control. With Landlock the exec is refused: nothing outside the root
    // may run. Without it the binary runs from a read-only mount, which the fake checks
    // when `launch` is linked dynamically (a static `launch`, the default build, has no
    // loader for an image to supply).
    let image = AttackImage::new();
    let script = image.image.root().join("bin/evil");
    std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for command in ["/proc/self/exe", "/bin/evil"] {
        let run = image.run(&[], &[command]);
        let refused =
            run.output.status.code() == Some(126) && run.stderr().contains("Permission denied");
        let read_only =
            run.output.status.code() == Some(0) && run.stdout().contains("read-only mount");
        assert!(refused || read_only, "{command}: {}", run.describe());
        assert!(!run.stdout().contains("ALLOWED"), "{}", run.describe());
        run.assert_host_unchanged();
    }
}

#[test]
fn without_landlock_the_launcher_runs_from_a_read_only_mount_of_its_binary() {
    // On a kernel without Landlock nothing stops the container from running the host's
    // `launch` (/proc/self/exe); instead launch re-executes itself from a read-only,
    // detached bind mount of its binary, so no handle on it can be opened for writing.
    // A seccomp filter around launch answers landlock_create_ruleset with ENOSYS, as such
    // a kernel does, for launch and (inherited) for the whole container.
    let image = mkroot_e2e::launch::BusyboxImage::new();
    // A copy of its own: other tests running the same binary at the same time would keep
    // it busy (ETXTBSY) however it is mounted.
    let binary = image.dir.path().join("launch");
    std::fs::copy(mkroot_e2e::launch::launch_bin(), &binary).unwrap();
    let mut command = Command::new(&binary);
    command
        .arg(image.root())
        .args(["--", "/bin/sh", "-c", "echo up; read line || true"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    // SAFETY: between fork and exec only prctl with a program built before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, deny_landlock);
    }
    let mut child = command.spawn().unwrap();
    let mut up = [0u8; 3];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut up).unwrap();
    // CVE-2019-5736's way: a handle on the running binary now (writing it while it runs
    // would be ETXTBSY anyway), reopened for writing once nothing runs it any more.
    let exe = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{}/exe", child.id()))
        .unwrap();
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Opened, never written: were the mount writable this would succeed and change nothing.
    // The container's init, which runs the same binary, may take a moment more to exit
    // after launch has: until then the answer is ETXTBSY.
    let reopen = || {
        std::fs::OpenOptions::new()
            .append(true)
            .open(format!("/proc/self/fd/{}", exe.as_raw_fd()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut reopened = reopen();
    while matches!(&reopened, Err(e) if e.raw_os_error() == Some(libc::ETXTBSY))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
        reopened = reopen();
    }
    let err = reopened.expect_err("the launcher's binary reopened for writing");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}

/// Installs a seccomp filter on the calling thread under which
/// landlock_create_ruleset fails with ENOSYS. Allocation-free (for pre_exec).
fn deny_landlock() -> std::io::Result<()> {
    const ENOSYS_ACTION: u32 = 0x0005_0000 | libc::ENOSYS as u32;
    let program = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == landlock_create_ruleset: skip to ENOSYS
        libc::sock_filter {
            code: 0x15,
            jt: 1,
            jf: 0,
            k: libc::SYS_landlock_create_ruleset as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: ENOSYS_ACTION,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: a valid program that outlives the call; root may install it without
    // no_new_privs.
    let installed = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if installed != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn a_host_disk_device_cannot_be_made_or_opened() {
    let image = AttackImage::new();
    let dev = std::fs::metadata("/").expect("stat /").dev();
    // SAFETY: plain arithmetic on a dev_t.
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    attack(
        &image,
        &[],
        &["disk", &major.to_string(), &minor.to_string()],
    );
    let run = sh(&image, &[], "ls /dev");
    let mut names: Vec<String> = run.stdout().split_whitespace().map(String::from).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
            "tty", "urandom", "zero"
        ],
        "{}",
        run.describe()
    );
}

#[test]
fn the_chroot_fchdir_escape_finds_no_host_file() {
    let image = AttackImage::new();
    let victim = HostVictim::new();
    let marker = victim.dir.path().join("secret");
    attack(&image, &[], &["chroot", marker.to_str().unwrap()]);
    victim.assert_untouched();
}

#[test]
fn raising_an_rlimit_fails_and_ulimit_only_lowers() {
    let image = AttackImage::new();
    attack(&image, &[], &["rlimit"]);
    let lowered = sh(
        &image,
        &["--ulimit", "nofile=64:128"],
        "ulimit -n; ulimit -Hn",
    );
    assert_eq!(lowered.stdout(), "64\n128\n", "{}", lowered.describe());
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    if hard.rlim_max != libc::RLIM_INFINITY {
        let raise = format!("nofile=1:{}", hard.rlim_max + 1);
        let refused = sh(&image, &["--ulimit", &raise], "echo RAN");
        assert_eq!(
            refused.output.status.code(),
            Some(125),
            "{}",
            refused.describe()
        );
        assert!(!refused.stdout().contains("RAN"));
        assert_eq!(
            refused.stderr().lines().count(),
            1,
            "{}",
            refused.describe()
        );
        assert!(
            refused.stderr().contains("only lower"),
            "{}",
            refused.describe()
        );
    }
}

#[test]
fn keyctl_bpf_and_the_x32_abi_are_refused_by_seccomp() {
    let image = AttackImage::new();
    for call in ["keyctl", "add_key", "bpf", "x32"] {
        attack(&image, &[], &[call]);
    }
    let filtered = sh(&image, &[], "grep Seccomp: /proc/self/status");
    assert!(filtered.stdout().contains('2'), "{}", filtered.describe());
    let off = sh(
        &image,
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status",
    );
    assert!(off.stdout().contains('0'), "{}", off.describe());
}

#[test]
fn vsock_sockets_are_refused_even_where_the_network_is_isolated() {
    let image = AttackImage::new();
    for net in [&[][..], &["--net", "none"][..]] {
        attack(&image, net, &["vsock"]);
    }
    // Control: without the filter the kernel makes the socket.
    let open = image.run(
        &["--security-opt", "seccomp=unconfined"],
        &["/bin/attack", "vsock"],
    );
    assert_eq!(open.output.status.code(), Some(1), "{}", open.describe());
    assert!(open.stdout().contains("ALLOWED"), "{}", open.describe());
}

#[test]
fn capabilities_are_cut_in_all_five_sets() {
    let image = AttackImage::new();
    let caps = |options: &[&str]| -> Vec<(String, u64)> {
        let run = sh(&image, options, "grep ^Cap /proc/self/status");
        run.assert_host_unchanged();
        run.stdout()
            .lines()
            .map(|l| {
                let (name, value) = l.split_once(':').unwrap();
                (
                    name.to_string(),
                    u64::from_str_radix(value.trim(), 16).unwrap(),
                )
            })
            .collect()
    };
    // chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service
    // sys_chroot setfcap
    let default = 0x8004_05fb_u64;
    for (set, value) in caps(&[]) {
        let expected = if set == "CapInh" || set == "CapAmb" {
            0
        } else {
            default
        };
        assert_eq!(value, expected, "{set}");
    }
    for (set, value) in caps(&["--cap-drop", "ALL"]) {
        assert_eq!(value, 0, "{set} with --cap-drop ALL");
    }
    let with_ptrace = caps(&["--cap-add", "SYS_PTRACE", "--cap-drop", "KILL"]);
    let bounding = with_ptrace.iter().find(|(s, _)| s == "CapBnd").unwrap().1;
    assert_eq!(bounding, (default | 1 << 19) & !(1 << 5));
}

#[test]
fn no_host_file_descriptor_reaches_the_command() {
    let image = AttackImage::new();
    // ls's own directory fd is 3.
    let run = sh(&image, &[], "ls /proc/self/fd");
    assert_eq!(
        run.stdout().split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{}",
        run.describe()
    );
}

/// How many processes `/bin/attack forkbomb` made before the kernel refused one.
fn forks_before_blocked(run: &Run) -> u32 {
    run.stdout()
        .split("blocked after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fork count: {}", run.describe()))
}

#[test]
fn a_fork_bomb_is_stopped_by_pids_limit_and_the_host_is_unharmed() {
    let image = AttackImage::new();
    let run = attack(&image, &["--pids-limit", "32"], &["forkbomb"]);
    assert!(forks_before_blocked(&run) < 32, "{}", run.describe());
    assert!(Command::new("true")
        .status()
        .expect("fork on the host")
        .success());
}

#[test]
fn a_memory_hog_is_killed_by_memory_with_exit_137() {
    let image = AttackImage::new();
    let run = sh(
        &image,
        &["--memory", "32M"],
        "x=0123456789abcdef; while true; do x=$x$x; done",
    );
    assert_eq!(run.output.status.code(), Some(137), "{}", run.describe());
    let stderr = run.stderr();
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("launch:"))
        .collect();
    assert_eq!(ours.len(), 1, "{}", run.describe());
    assert!(ours[0].contains("memory"), "{}", run.describe());
    run.assert_host_unchanged();
}

#[test]
fn limits_hold_on_a_cgroup_v1_only_host() {
    // Pure v1: no v2 cgroup to be born in (no CLONE_INTO_CGROUP); the child is moved into
    // each controller's cgroup, which the limits are written to.
    assert!(
        std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists(),
        "this test needs the hybrid cgroup layout CI has"
    );
    let image = AttackImage::new();
    let root = image.image.root();
    let run = |options: &[&str], command: &[&str]| {
        mkroot_e2e::attacks::run_launch_seeing(
            &image.cache,
            options,
            root.to_str().unwrap(),
            command,
            Some(Box::new(mkroot_e2e::attacks::as_a_cgroup_v1_host)),
        )
    };
    let bomb = run(&["--pids-limit", "32"], &["/bin/attack", "forkbomb"]);
    assert_eq!(bomb.output.status.code(), Some(0), "{}", bomb.describe());
    assert!(forks_before_blocked(&bomb) < 32, "{}", bomb.describe());
    let hog = run(
        &["--memory", "32M"],
        &[
            "/bin/sh",
            "-c",
            "x=0123456789abcdef; while true; do x=$x$x; done",
        ],
    );
    assert_eq!(hog.output.status.code(), Some(137), "{}", hog.describe());
    assert!(hog.stderr().contains("memory limit"), "{}", hog.describe());
    // No mount, and the container's cgroups gone from every hierarchy.
    bomb.assert_host_unchanged();
    hog.assert_host_unchanged();
}

#[test]
fn a_limit_whose_cgroup_v2_controller_is_not_offered_is_refused_saying_which() {
    let offered = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .expect("this test needs the hybrid cgroup layout CI has (/sys/fs/cgroup/unified)");
    assert!(
        !offered.split_whitespace().any(|c| c == "pids"),
        "{offered}"
    );
    let image = AttackImage::new();
    let run = mkroot_e2e::attacks::run_launch_seeing(
        &image.cache,
        &["--pids-limit", "20"],
        image.image.root().to_str().unwrap(),
        &["true"],
        Some(Box::new(
            mkroot_e2e::attacks::as_a_cgroup_v2_host_without_controllers,
        )),
    );
    assert_eq!(run.output.status.code(), Some(125), "{}", run.describe());
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--pids-limit: the cgroup v2 controller pids is not available")
            && stderr.contains("Delegate=yes"),
        "{stderr}"
    );
    // Refused before any cgroup of its own was made, in any hierarchy.
    run.assert_host_unchanged();
}

#[test]
fn cpus_and_limits_are_refused_when_malformed() {
    let image = AttackImage::new();
    for options in [
        ["--memory", "lots"],
        ["--cpus", "0"],
        ["--pids-limit", "0"],
        ["--cap-add", "FLY"],
        ["--security-opt", "apparmor=x"],
        ["--ulimit", "files=3"],
    ] {
        let run = sh(&image, &options, "echo RAN");
        assert_eq!(
            run.output.status.code(),
            Some(125),
            "{options:?}: {}",
            run.describe()
        );
        assert_eq!(run.stderr().lines().count(), 1, "{}", run.describe());
        assert!(!run.stdout().contains("RAN"));
    }
    let run = sh(&image, &["--cpus", "0.5"], "echo RAN");
    assert_eq!(run.stdout(), "RAN\n", "{}", run.describe());
    run.assert_host_unchanged();
}

/// Launches a hostile tarball (the entries of `tar` over a busybox image) and runs
/// `script`; the launch either works or is refused in one line with 125. Returns the
/// run, the victim dir untouched either way.
fn launch_hostile(tar: &HostileTar, options: &[&str], script: &str) -> Run {
    let image = AttackImage::new();
    let victim = HostVictim::new();
    let run = image.run_hostile(tar, options, &["/bin/sh", "-c", script]);
    victim.assert_untouched();
    run.assert_host_unchanged();
    run
}

fn assert_refused_in_one_line(run: &Run) {
    assert_eq!(run.output.status.code(), Some(125), "{}", run.describe());
    assert_eq!(run.stderr().lines().count(), 1, "{}", run.describe());
    assert!(run.stderr().starts_with("launch: "), "{}", run.describe());
}

#[test]
fn hostile_names_stay_inside_the_root() {
    let victim = HostVictim::new();
    let host_dir = victim.dir.path().to_str().unwrap().trim_start_matches('/');
    let through = |link: &str| format!("{link}/{host_dir}/pwned");
    let mut tar = HostileTar::default();
    tar.file(b"../../../../escaped-dotdot", 0o644, b"dotdot\n")
        .file(format!("/{host_dir}/pwned-abs").as_bytes(), 0o644, b"abs\n")
        .link(SYMLINK, b"to-root", b"/")
        .file(through("to-root").as_bytes(), 0o644, b"via-root\n")
        .link(SYMLINK, b"up", b"../../../../../..")
        .file(through("up").as_bytes(), 0o644, b"via-up\n");
    let image = AttackImage::new();
    let run = image.run_hostile(&tar, &[], &["/bin/cat", "/escaped-dotdot"]);
    victim.assert_untouched();
    run.assert_host_unchanged();
    assert_eq!(run.output.status.code(), Some(0), "{}", run.describe());
    // Everything landed inside the image (the unpacked tree in the cache; the
    // container's own /tmp is a fresh tmpfs over the image's).
    assert_eq!(run.stdout(), "dotdot\n", "{}", run.describe());
    let unpacked = mkroot_e2e::launch::tree_listing(image.cache.path());
    for name in ["pwned-abs", "pwned"] {
        assert!(
            unpacked
                .iter()
                .any(|p| p.ends_with(format!("{host_dir}/{name}"))),
            "{name} is not in the image"
        );
    }
    let parent_of_cache = image.cache.path().parent().unwrap();
    assert!(!parent_of_cache.join("escaped-dotdot").exists());
    assert!(!std::path::Path::new("/escaped-dotdot").exists());
}

#[test]
fn a_hard_link_to_a_host_file_gets_no_host_bytes() {
    let victim = HostVictim::new();
    let secret = victim.dir.path().join("secret");
    let mut tar = HostileTar::default();
    tar.link(HARD_LINK, b"stolen", secret.to_str().unwrap().as_bytes());
    let run = launch_hostile(&tar, &[], "cat /stolen");
    assert!(
        !run.stdout().contains("host secret"),
        "the host's file was read into the image: {}",
        run.describe()
    );
    if run.output.status.code() == Some(125) {
        assert_refused_in_one_line(&run);
    }
    victim.assert_untouched();
}

#[test]
fn device_nodes_fifos_and_setuid_bits_do_not_survive() {
    let mut tar = HostileTar::default();
    tar.entry(CHAR_DEVICE, b"mem", b"", 0o666, b"", (1, 1))
        .entry(BLOCK_DEVICE, b"disk", b"", 0o666, b"", (8, 0))
        .entry(FIFO, b"pipe", b"", 0o666, b"", (0, 0))
        .entry(DIRECTORY, b"sbin2", b"", 0o755, b"", (0, 0))
        .file(b"sbin2/rootshell", 0o4755, b"#!/bin/sh\nid\n");
    let run = launch_hostile(
        &tar,
        &[],
        "test -e /mem && echo MEM; test -e /disk && echo DISK; test -p /pipe && echo FIFO; \
         stat -c %a /sbin2/rootshell",
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.describe());
    assert_eq!(run.stdout(), "755\n", "{}", run.describe());
}

#[test]
fn duplicates_non_utf8_and_very_long_names_unpack_inside() {
    let long = format!("{}/end", "d".repeat(200));
    let mut tar = HostileTar::default();
    tar.file(b"dup", 0o644, b"first\n")
        .file(b"dup", 0o644, b"second\n")
        .file(b"name-\xff\xfe", 0o644, b"bytes\n")
        .long_name_file(long.as_bytes(), b"long\n");
    let run = launch_hostile(&tar, &[], &format!("cat /dup; cat /name-*; cat /{long}"));
    assert_eq!(run.output.status.code(), Some(0), "{}", run.describe());
    assert_eq!(run.stdout(), "second\nbytes\nlong\n", "{}", run.describe());
}

#[test]
fn a_truncated_gzip_is_refused_in_one_line() {
    let image = AttackImage::new();
    let whole = image.image.tarball();
    let bytes = std::fs::read(&whole).unwrap();
    let cut = image.image.dir.path().join("cut.tgz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let run =
        mkroot_e2e::attacks::run_launch(&image.cache, &[], cut.to_str().unwrap(), &["/bin/true"]);
    assert_refused_in_one_line(&run);
    run.assert_host_unchanged();
}

#[test]
fn a_gzip_bomb_is_stopped_by_max_image_size() {
    let image = AttackImage::new();
    // 64 MiB of zeros: about 64 KiB gzipped.
    let zeros = vec![0u8; 64 << 20];
    let mut tar = HostileTar::default();
    tar.file(b"bomb", 0o644, &zeros);
    drop(zeros);
    // The clock starts once the tarball is written: the bound is on launch alone.
    let tarball = image.image.dir.path().join("bomb.tgz");
    tar.write_over_busybox(&image.image, &tarball);
    let started = std::time::Instant::now();
    let run = mkroot_e2e::attacks::run_launch(
        &image.cache,
        &["--max-image-size", "16M"],
        tarball.to_str().unwrap(),
        &["/bin/true"],
    );
    assert_refused_in_one_line(&run);
    assert!(
        run.stderr().contains("--max-image-size"),
        "{}",
        run.describe()
    );
    assert!(started.elapsed().as_secs() < 30);
    run.assert_host_unchanged();
    // Nothing of it stays in the cache.
    let used: u64 = mkroot_e2e::launch::tree_listing(image.cache.path())
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum();
    assert!(used < 16 << 20, "the cache kept {used} bytes");
}

#[test]
fn terminal_injection_into_the_hosts_terminal_fails() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let image = AttackImage::new();
    // A terminal of the test's own stands in for the user's: the command's stdout.
    // SAFETY: plain pty calls; each fd is owned at once.
    let (master, slave) = unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(master)).to_owned();
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(slave >= 0, "open the pty's slave");
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    };
    let output = Command::new(mkroot_e2e::launch::launch_bin())
        .arg("--cache-dir")
        .arg(image.cache.path())
        .arg(image.image.root())
        .args(["--", "/bin/attack", "tiocsti"])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::from(slave))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run launch");
    drop(master);
    assert_eq!(
        output.status.code(),
        Some(0),
        "TIOCSTI got through: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn setgroups_is_denied_in_a_user_namespace() {
    let image = AttackImage::new();
    let run = sh(&image, &["--userns"], "cat /proc/self/setgroups");
    assert_eq!(run.stdout(), "deny\n", "{}", run.describe());
    run.assert_host_unchanged();
    attack(&image, &["--userns"], &["setgroups"]);
}

#[test]
fn a_cgroup_left_by_a_killed_launch_is_swept_by_the_next() {
    let image = AttackImage::new();
    let root = image.image.root();
    let mut first = Command::new(mkroot_e2e::launch::launch_bin())
        .arg("--cache-dir")
        .arg(image.cache.path())
        .args(["--memory", "64M"])
        .arg(&root)
        .args(["--", "/bin/sleep", "60"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("run launch");
    let name = format!("mkroot-launch-{}", first.id());
    let started = std::time::Instant::now();
    while mkroot_e2e::attacks::cgroups_named(&name).is_empty() {
        assert!(
            started.elapsed().as_secs() < 10,
            "no cgroup {name} appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SIGKILL: the launcher cleans nothing up; its container dies with it.
    first.kill().expect("kill launch");
    first.wait().expect("reap launch");
    // Left behind (unless a launch of a test running alongside swept it already).
    let left = mkroot_e2e::attacks::cgroups_named(&name);
    let empty = |dir: &std::path::PathBuf| {
        std::fs::read_to_string(dir.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty())
    };
    while !left.iter().all(empty) {
        assert!(
            started.elapsed().as_secs() < 20,
            "the container outlived its launcher"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let next = image.run(&["--memory", "64M"], &["/bin/true"]);
    assert_eq!(next.output.status.code(), Some(0), "{}", next.describe());
    next.assert_host_unchanged();
    let still = mkroot_e2e::attacks::cgroups_named(&name);
    assert!(still.is_empty(), "not swept: {still:?}");
}

/// The attack image as an oci-archive whose config's `config` part is `run_config`:
/// what a hostile registry image looks like to `launch`.
fn as_oci_archive(image: &AttackImage, run_config: serde_json::Value) -> std::path::PathBuf {
    use mkroot_e2e::oci::{Image, Layer, LayerTar};
    let layer = LayerTar::new().tree(&image.image.root()).finish();
    let path = image.image.dir.path().join("hostile-oci.tar");
    Image::new(vec![Layer::gzip(layer)], run_config).write_oci_archive(&path);
    path
}

#[test]
fn a_hostile_working_dir_makes_nothing_on_the_host_or_in_the_cache() {
    // The image's WorkingDir climbs out through a descriptor the launcher might have
    // left open in the container's init (its fd 3 was the host's image tree) to a
    // directory of the host.
    let image = AttackImage::new();
    let host = tempfile::tempdir().unwrap();
    let target = host.path().join("made-by-the-image");
    let climb = "/proc/self/fd/3/../../../../../../../../../../..";
    let hostile = as_oci_archive(
        &image,
        serde_json::json!({"WorkingDir": format!("{climb}{}/sub", target.display())}),
    );
    let cache_before = mkroot_e2e::launch::tree_listing(image.cache.path());
    let run = mkroot_e2e::attacks::run_launch(
        &image.cache,
        &[],
        hostile.to_str().unwrap(),
        &["/bin/true"],
    );
    assert!(
        !target.exists(),
        "the image made a host directory:\n{}",
        run.describe()
    );
    run.assert_host_unchanged();
    // Only this image's own entry was added to the cache: nothing under another's.
    let added: Vec<_> = mkroot_e2e::launch::tree_listing(image.cache.path())
        .into_iter()
        .filter(|p| !cache_before.contains(p))
        .filter(|p| p.to_string_lossy().contains("/root/"))
        .filter(|p| p.ends_with("sub") || p.ends_with("made-by-the-image"))
        .collect();
    assert!(added.is_empty(), "made in the cache: {added:?}");
    // `-w` from the command line goes the same way.
    let run = image.run(
        &["-w", &format!("{climb}{}/sub", target.display())],
        &["/bin/true"],
    );
    assert!(
        !target.exists(),
        "-w made a host directory:\n{}",
        run.describe()
    );

    // Control: a path that does lead to the host (a volume) is made there, so the check
    // above can see a directory made on the host.
    let volume = format!("{}:/vol", host.path().display());
    let run = image.run(
        &["-v", &volume, "-w", "/vol/made-by-the-image/sub"],
        &["/bin/true"],
    );
    assert!(target.join("sub").is_dir(), "control: {}", run.describe());
}

#[test]
fn an_images_env_entry_without_a_value_reads_nothing_of_the_callers_environment() {
    let image = AttackImage::new();
    let hostile = as_oci_archive(&image, serde_json::json!({"Env": ["MKROOT_ATTACK_SECRET"]}));
    // A mkroot image's manifest may say the same.
    let root = image.image.root();
    std::fs::create_dir_all(root.join(".mkroot")).unwrap();
    let manifest = mkroot_common::manifest::ImageManifest {
        version: mkroot_common::manifest::MANIFEST_VERSION,
        cmd: vec!["/bin/env".into()],
        env: vec!["MKROOT_ATTACK_SECRET".into()],
        files: Vec::new(),
    };
    std::fs::write(
        root.join(mkroot_common::manifest::MANIFEST_PATH),
        manifest.to_json_bytes(),
    )
    .unwrap();
    let env_in = |image_path: &std::path::Path, flags: &[&str]| {
        let out = Command::new(mkroot_e2e::launch::launch_bin())
            .arg("--cache-dir")
            .arg(image.cache.path())
            .args(flags)
            .arg(image_path)
            .args(["--", "/bin/env"])
            .env("MKROOT_ATTACK_SECRET", "hunter2")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run launch");
        assert!(
            out.status.success(),
            "{}",
            mkroot_e2e::launch::describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for image_path in [hostile.as_path(), root.as_path()] {
        let env = env_in(image_path, &[]);
        assert!(!env.contains("hunter2"), "{}: {env}", image_path.display());
        // Control: the user's own `-e NAME` does pass the caller's value on.
        let env = env_in(image_path, &["-e", "MKROOT_ATTACK_SECRET"]);
        assert!(
            env.contains("MKROOT_ATTACK_SECRET=hunter2"),
            "control: {env}"
        );
    }
}

#[test]
fn tracing_init_with_sys_ptrace_reaches_no_host_file_environment_or_unfiltered_call() {
    // Allowed to trace init, a process of the container sees what init holds: its
    // descriptors (as /proc/1/fd links, which open the file itself), its environment,
    // and whatever init may do that the command may not. Init holds only pipes and the
    // stdio the command has anyway, a blank environment, CAP_KILL alone, and the same
    // seccomp filter and Landlock domain as the command.
    let image = AttackImage::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("host-file"), "h").unwrap();
    let volume = format!("{}:/vol", host.path().display());
    let script = "for fd in /proc/1/fd/*; do readlink $fd; done; echo ---; \
        busybox tr '\\0' '\\n' < /proc/1/environ > /tmp/init-environ; \
        cat /tmp/init-environ; echo ---; \
        grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/1/status; echo ---; \
        exec 7</vol/host-file; readlink /proc/self/fd/7; \
        busybox tr '\\0' '\\n' < /proc/self/environ > /tmp/own-environ; \
        grep SECRET /tmp/own-environ";
    let run = Command::new(mkroot_e2e::launch::launch_bin())
        .arg("--cache-dir")
        .arg(image.cache.path())
        .args([
            "--cap-add",
            "SYS_PTRACE",
            "-v",
            &volume,
            "-e",
            "MKROOT_ATTACK_SECRET=own",
        ])
        .arg(image.image.root())
        .args(["--", "/bin/sh", "-c", script])
        .env("MKROOT_ATTACK_SECRET", "hunter2")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run launch");
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let describe = mkroot_e2e::launch::describe(&run);
    assert!(run.status.success(), "{describe}");
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 4, "{describe}");
    let (fds, environ, status, control) = (parts[0], parts[1], parts[2], parts[3]);
    assert!(
        !fds.trim().is_empty(),
        "init's fds were not readable: {describe}"
    );
    for target in fds.lines() {
        assert!(
            target.starts_with("pipe:") || target == "/dev/null",
            "init holds {target}: {describe}"
        );
    }
    // Readable (blank bytes, one per character the environment had), and blank.
    assert!(
        !environ.is_empty(),
        "init's environment was not readable: {describe}"
    );
    assert!(
        !environ.contains("hunter2") && !environ.contains('='),
        "{describe}"
    );
    assert!(status.contains("CapEff:\t0000000000000020"), "{describe}");
    assert!(status.contains("Seccomp:\t2"), "{describe}");
    assert!(status.contains("NoNewPrivs:\t1"), "{describe}");
    // Control: the same reads on the command's own process show a host file's path and
    // an environment, so the checks above can see both.
    assert!(control.contains("/vol/host-file"), "{describe}");
    assert!(control.contains("MKROOT_ATTACK_SECRET=own"), "{describe}");
}

/// `stat -f` of each of `paths` inside a container launched with `options`: the
/// filesystem's size in bytes.
fn filesystem_sizes(image: &AttackImage, options: &[&str], paths: &[&str]) -> Vec<u64> {
    let run = sh(
        image,
        options,
        &format!("stat -f -c '%b %S' {}", paths.join(" ")),
    );
    assert!(run.output.status.success(), "{}", run.describe());
    run.stdout()
        .lines()
        .map(|line| {
            let (blocks, block_size) = line.split_once(' ').expect("blocks and block size");
            blocks.parse::<u64>().unwrap() * block_size.parse::<u64>().unwrap()
        })
        .collect()
}

/// Writes `mib` MiB of zeros to `path` in a container launched with `options`: whether
/// the write completed, and the run.
fn fill(image: &AttackImage, options: &[&str], path: &str, mib: u32) -> (bool, Run) {
    let script = format!("busybox dd if=/dev/zero of={path} bs=1M count={mib} && echo FILLED");
    let run = sh(image, options, &script);
    run.assert_host_unchanged();
    (run.stdout().contains("FILLED"), run)
}

fn host_memory() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn writing_the_writable_layer_and_dev_shm_full_stops_at_their_bounds() {
    // Each of the container's tmpfs mounts is host memory that no process's RSS shows:
    // unbounded, each could take half the host's RAM. /tmp and /run are the writable
    // layer itself (made in it when the image lacks them), so one bound covers them.
    let image = AttackImage::new();
    let sizes = filesystem_sizes(&image, &[], &["/", "/tmp", "/dev/shm"]);
    let quarter = host_memory() / 4;
    for size in &sizes[..2] {
        assert!(
            size.abs_diff(quarter) < 1 << 20,
            "{sizes:?}, RAM/4 {quarter}"
        );
    }
    assert_eq!(sizes[2], 64 << 20, "{sizes:?}");
    assert_eq!(
        filesystem_sizes(&image, &["--memory", "48M"], &["/"]),
        [48 << 20],
        "--memory bounds the writable layer"
    );

    // The attack: more than the bound. A refusal must be the tmpfs's ENOSPC.
    let (filled, run) = fill(&image, &[], "/dev/shm/f", 65);
    assert!(!filled, "{}", run.describe());
    assert!(
        run.stderr().contains("No space left on device"),
        "{}",
        run.describe()
    );
    let small = ["--storage-opt", "size=32M"];
    for path in ["/tmp/f", "/f"] {
        let (filled, run) = fill(&image, &small, path, 40);
        assert!(!filled, "{path}: {}", run.describe());
        assert!(
            run.stderr().contains("No space left on device"),
            "{}",
            run.describe()
        );
    }

    // Controls: larger bounds let the same writes through, and ordinary writes under
    // the defaults succeed.
    let (filled, run) = fill(&image, &["--shm-size", "128M"], "/dev/shm/f", 65);
    assert!(filled, "{}", run.describe());
    let (filled, run) = fill(&image, &["--storage-opt", "size=64M"], "/tmp/f", 40);
    assert!(filled, "{}", run.describe());
    let (filled, run) = fill(&image, &[], "/tmp/f", 40);
    assert!(filled, "{}", run.describe());
}

#[test]
fn a_tmpfs_flag_is_bounded_and_takes_dockers_options() {
    let image = AttackImage::new();
    let writable_layer = filesystem_sizes(&image, &[], &["/"])[0];
    assert_eq!(
        filesystem_sizes(&image, &["--tmpfs", "/scratch"], &["/scratch"]),
        [writable_layer],
        "a --tmpfs without size= has the writable layer's bound"
    );
    let (filled, run) = fill(&image, &["--tmpfs", "/scratch:size=8M"], "/scratch/f", 9);
    assert!(!filled, "{}", run.describe());
    assert!(
        run.stderr().contains("No space left on device"),
        "{}",
        run.describe()
    );
    let (filled, run) = fill(&image, &["--tmpfs", "/scratch:size=16M"], "/scratch/f", 9);
    assert!(filled, "control: {}", run.describe());

    let run = sh(
        &image,
        &["--tmpfs", "/scratch:mode=700,ro"],
        "stat -c %a /scratch; touch /scratch/f",
    );
    assert_eq!(run.stdout(), "700\n", "{}", run.describe());
    assert!(
        run.stderr().contains("Read-only file system"),
        "{}",
        run.describe()
    );
}

#[test]
fn what_a_container_writes_is_charged_to_its_own_cgroup() {
    // A cgroup made for --pids-limit also accounts memory (no limit): the pages the
    // container writes to its writable layer count against it, not the launcher.
    let image = AttackImage::new();
    let mut launch = Command::new(mkroot_e2e::launch::launch_bin())
        .arg("--cache-dir")
        .arg(image.cache.path())
        .args(["--pids-limit", "64"])
        .arg(image.image.root())
        .args(["--", "/bin/sh", "-c"])
        .arg("busybox dd if=/dev/zero of=/tmp/f bs=1M count=40 2>/dev/null; echo written; sleep 60")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run launch");
    let mut stdout = std::io::BufReader::new(launch.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let name = format!("mkroot-launch-{}", launch.id());
    let charged: Vec<u64> = mkroot_e2e::attacks::cgroups_named(&name)
        .iter()
        .filter_map(|dir| {
            ["memory.current", "memory.usage_in_bytes"]
                .iter()
                .find_map(|file| std::fs::read_to_string(dir.join(file)).ok())
        })
        .filter_map(|bytes| bytes.trim().parse().ok())
        .collect();
    // SAFETY: signals the launch this test started, by PID; it stops its container.
    unsafe { libc::kill(launch.id() as libc::pid_t, libc::SIGTERM) };
    let _ = launch.wait();
    assert_eq!(line, "written\n");
    assert!(
        charged.iter().any(|&bytes| bytes >= 40 << 20),
        "no memory cgroup of {name} holds the 40 MiB written: {charged:?}"
    );
    assert!(mkroot_e2e::attacks::cgroups_named(&name).is_empty());
}

#[test]
fn bad_storage_sizes_are_refused_in_one_line() {
    let image = AttackImage::new();
    for (flags, says) in [
        (["--storage-opt", "size=lots"], "--storage-opt size=lots"),
        (
            ["--storage-opt", "dm.basesize=1G"],
            "the only option is size=",
        ),
        (["--shm-size", "10k"], "--shm-size 10k"),
        (["--tmpfs", "/s:size=0"], "--tmpfs /s:size=0"),
        (["--tmpfs", "/s:uid=3"], "unknown option"),
        (["--tmpfs", "relative"], "absolute path"),
    ] {
        let run = sh(&image, &flags, "echo RAN");
        assert_eq!(run.output.status.code(), Some(125), "{}", run.describe());
        let stderr = run.stderr();
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}

#[test]
fn userns_never_maps_root_onto_a_users_subordinate_range() {
    // useradd gives the first user 100000:65536, the range launch fell back to when root
    // had no entry: the container's files would then be alice's. Launch records a range
    // of its own that overlaps no entry, and refuses a recorded one that does.
    let image = AttackImage::new();
    let alice = "alice:100000:65536\n";
    let subids = mkroot_e2e::subids::SubidFiles::new(alice, alice);
    let script = "cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/mine";
    let run = |subids: &mkroot_e2e::subids::SubidFiles| {
        mkroot_e2e::attacks::run_launch_seeing(
            &image.cache,
            &["--userns"],
            image.image.root().to_str().unwrap(),
            &["/bin/sh", "-c", script],
            Some(subids.view(false)),
        )
    };
    for _ in 0..2 {
        let first = run(&subids);
        assert!(first.output.status.success(), "{}", first.describe());
        for map in first.stdout().lines() {
            let fields: Vec<u64> = map.split_whitespace().map(|f| f.parse().unwrap()).collect();
            assert_eq!(fields, [0, 165_536, 65_536], "{}", first.describe());
        }
        first.assert_host_unchanged();
    }
    let recorded = "mkroot-launch:165536:65536\n";
    assert_eq!(
        subids.subuid(),
        format!("{alice}{recorded}"),
        "recorded once"
    );
    assert_eq!(subids.subgid(), format!("{alice}{recorded}"));

    // Control: the old fallback's range, recorded as launch's, lies in alice's: refused.
    let old = format!("{alice}mkroot-launch:100000:65536\n");
    let overlapping = mkroot_e2e::subids::SubidFiles::new(&old, &old);
    let refused = run(&overlapping);
    assert_eq!(
        refused.output.status.code(),
        Some(125),
        "{}",
        refused.describe()
    );
    let stderr = refused.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("overlaps alice's (100000-165535)"),
        "{stderr}"
    );
    assert_eq!(overlapping.subuid(), old, "nothing written");
}

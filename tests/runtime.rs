//! launch as an OCI runtime, driven the way engines drive runc: `create` / `start` /
//! `state` / `kill` / `delete` on real bundles (the busybox image and a config.json from
//! `launch spec`), with the test as the subreaper that waits for the container's process,
//! as conmon and containerd-shim are.

use std::os::unix::net::UnixListener;
use std::path::Path;

use mkroot_e2e::launch::host_mounts;
use mkroot_e2e::runtime::{alive, cgroup_dir, Bundle, Runtime};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(out: &std::process::Output) {
    assert!(out.status.success(), "launch failed: {}", stderr(out));
}

/// Makes this test process the subreaper of what its children leave: the container's
/// process, once `create` exits, is ours to wait for (nextest runs each test in a
/// process of its own).
fn become_subreaper() {
    // SAFETY: plain prctl.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
}

/// Waits for our (adopted) child `pid`; its exit code, or 128+signal.
fn wait_exit(pid: i64) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for a child of ours.
    let ret = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    assert_eq!(
        ret,
        pid as libc::pid_t,
        "waitpid: {}",
        std::io::Error::last_os_error()
    );
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

fn pid_of(runtime: &Runtime, id: &str) -> i64 {
    runtime.state(id)["pid"].as_i64().unwrap()
}

#[test]
fn lifecycle_create_start_stopped_delete_leaves_nothing() {
    become_subreaper();
    let mounts_before = host_mounts();
    let bundle = Bundle::new(&["sh", "-c", "read line; exit 4"]);
    let runtime = Runtime::new();
    // The container's stdin is this pipe: the process ends when we close it.
    let (stdin_read, stdin) = std::io::pipe().unwrap();
    let mut create = runtime.command(&["create", "--bundle", bundle.dir().to_str().unwrap(), "c1"]);
    create.stdin(stdin_read);
    let out = runtime.run_with_stdio_in_files(&mut create);
    assert_ok(&out);
    let state = runtime.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "c1");
    assert_eq!(state["ociVersion"], "1.2.0");
    assert_eq!(state["bundle"], bundle.dir().to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap();
    assert!(alive(pid), "the created container's process is not alive");
    // It is blocked before exec: still the launcher's binary, not sh.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    assert!(
        !exe.ends_with("busybox"),
        "already exec'd: {}",
        exe.display()
    );
    let cgroup = cgroup_dir(&bundle.cgroup_path());
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "not in its cgroup: {procs}"
    );

    assert_ok(&runtime.run(&["start", "c1"]));
    assert_eq!(runtime.status("c1"), "running");
    assert_eq!(pid_of(&runtime, "c1"), pid);
    drop(stdin);
    assert_eq!(wait_exit(pid), 4, "the process's own exit code");
    assert_eq!(runtime.status("c1"), "stopped");

    assert_ok(&runtime.run(&["delete", "c1"]));
    assert!(
        !runtime.root.path().join("c1").exists(),
        "state left behind"
    );
    assert!(!cgroup.exists(), "cgroup left behind: {}", cgroup.display());
    assert_eq!(host_mounts(), mounts_before, "mounts left on the host");
    let out = runtime.run(&["state", "c1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kill_takes_names_with_and_without_sig_and_numbers() {
    become_subreaper();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "trap 'exit 7' USR1; trap 'exit 8' TERM; while true; do sleep 0.05; done",
    ]);
    let runtime = Runtime::new();
    for (id, signal, code) in [
        ("k1", "USR1", 7),
        ("k2", "SIGTERM", 8),
        ("k3", "9", 137),
        ("k4", "kill", 137),
    ] {
        assert_ok(&runtime.create(id, &bundle));
        assert_ok(&runtime.run(&["start", id]));
        let pid = pid_of(&runtime, id);
        // The traps are set once sh has read its script.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_ok(&runtime.run(&["kill", id, signal]));
        assert_eq!(wait_exit(pid), code, "kill {signal}");
        assert_eq!(runtime.status(id), "stopped");
        let out = runtime.run(&["kill", id, "TERM"]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("container not running"),
            "{}",
            stderr(&out)
        );
        assert_ok(&runtime.run(&["delete", id]));
    }
    let out = runtime.run(&["kill", "k9", "FLY"]);
    assert!(!out.status.success());
}

#[test]
fn delete_refuses_a_running_container_and_force_kills_it() {
    become_subreaper();
    let bundle = Bundle::new(&["sleep", "60"]);
    let runtime = Runtime::new();
    assert_ok(&runtime.create("d1", &bundle));
    assert_ok(&runtime.run(&["start", "d1"]));
    let pid = pid_of(&runtime, "d1");
    let out = runtime.run(&["delete", "d1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot delete container d1 that is not stopped: running"),
        "{}",
        stderr(&out)
    );
    assert!(alive(pid));
    assert_ok(&runtime.run(&["delete", "--force", "d1"]));
    assert_eq!(wait_exit(pid), 137);
    assert!(!runtime.root.path().join("d1").exists());
    let cgroup = cgroup_dir(&bundle.cgroup_path());
    assert!(!cgroup.exists(), "cgroup left behind");
    // A container that is not there: forced, nothing to do; else runc's words.
    assert_ok(&runtime.run(&["delete", "--force", "d1"]));
    let out = runtime.run(&["delete", "d1"]);
    assert!(
        stderr(&out).contains("container does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_and_duplicate_ids_get_runcs_words() {
    let bundle = Bundle::new(&["sleep", "60"]);
    let runtime = Runtime::new();
    for verb in [
        &["start", "nope"][..],
        &["state", "nope"],
        &["kill", "nope"],
        &["pause", "nope"],
        &["ps", "nope"],
    ] {
        let out = runtime.run(verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        assert!(
            stderr(&out).contains("container does not exist: nope"),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
    assert_ok(&runtime.create("dup", &bundle));
    let out = runtime.create("dup", &bundle);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("container with id exists: dup"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        runtime.status("dup"),
        "created",
        "the first container is untouched"
    );
    let out = runtime.run(&["create", "--bundle", "/nonexistent", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    assert!(!runtime.root.path().join("x").exists());
    let out = runtime.run(&[
        "create",
        "--bundle",
        bundle.dir().to_str().unwrap(),
        "../escape",
    ]);
    assert!(!out.status.success());
    assert!(!runtime
        .root
        .path()
        .parent()
        .unwrap()
        .join("escape")
        .exists());
}

#[test]
fn two_containers_run_at_once_each_in_its_own_namespaces() {
    become_subreaper();
    let mut a = Bundle::new(&["sleep", "60"]);
    a.config["hostname"] = serde_json::json!("box-a");
    a.save();
    let mut b = Bundle::new(&["sleep", "60"]);
    b.config["hostname"] = serde_json::json!("box-b");
    b.save();
    let runtime = Runtime::new();
    assert_ok(&runtime.create("a", &a));
    assert_ok(&runtime.create("b", &b));
    assert_ok(&runtime.run(&["start", "a"]));
    assert_ok(&runtime.run(&["start", "b"]));
    let (pa, pb) = (pid_of(&runtime, "a"), pid_of(&runtime, "b"));
    assert_ne!(pa, pb);
    for ns in ["pid", "mnt", "uts", "net", "ipc"] {
        let na = std::fs::read_link(format!("/proc/{pa}/ns/{ns}")).unwrap();
        let nb = std::fs::read_link(format!("/proc/{pb}/ns/{ns}")).unwrap();
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(na, nb, "{ns}");
        assert_ne!(na, host, "{ns}");
    }
    let out = runtime.run(&["exec", "a", "hostname"]);
    assert_ok(&out);
    assert_eq!(stdout(&out).trim(), "box-a");
    let out = runtime.run(&["exec", "b", "hostname"]);
    assert_eq!(stdout(&out).trim(), "box-b");
    let list = runtime.run(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    for id in ["a", "b"] {
        assert_ok(&runtime.run(&["kill", id, "KILL"]));
    }
    assert_eq!(wait_exit(pa), 137);
    assert_eq!(wait_exit(pb), 137);
}

#[test]
fn run_passes_output_and_exit_code_through_and_cleans_up() {
    let bundle = Bundle::new(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let runtime = Runtime::new();
    let out = runtime.run(&["run", "--bundle", bundle.dir().to_str().unwrap(), "r1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"));
    assert!(
        runtime.ids().is_empty(),
        "run leaves no state: {:?}",
        runtime.ids()
    );
    let missing = Bundle::new(&["no-such-program"]);
    let out = runtime.run(&["run", "--bundle", missing.dir().to_str().unwrap(), "r2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("\"no-such-program\": executable file not found in $PATH"),
        "{}",
        stderr(&out)
    );
    assert!(runtime.ids().is_empty(), "a failed create leaves no state");
}

#[test]
fn exec_joins_a_running_container_detached_or_not() {
    become_subreaper();
    let bundle = Bundle::new(&["sleep", "60"]);
    let runtime = Runtime::new();
    assert_ok(&runtime.create("e1", &bundle));
    assert_ok(&runtime.run(&["start", "e1"]));
    let pid = pid_of(&runtime, "e1");
    let out = runtime.run(&[
        "exec",
        "e1",
        "--",
        "sh",
        "-c",
        "echo $$; ps -o pid,args; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with("1 ") && l.contains("sleep 60")),
        "{text}"
    );
    // The process file of `exec --process`, as engines pass it.
    let process = serde_json::json!({
        "args": ["sh", "-c", "sleep 30"], "cwd": "/tmp", "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0}
    });
    let file = bundle.dir().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let pid_file = bundle.dir().join("exec.pid");
    let out = runtime.run_with_stdio_in_files(&mut runtime.command(&[
        "exec",
        "--process",
        file.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "e1",
    ]));
    assert_ok(&out);
    let exec_pid: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(exec_pid));
    let ps = runtime.run(&["ps", "--format", "json", "e1"]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.contains(&pid) && pids.contains(&exec_pid), "{pids:?}");
    let cwd = std::fs::read_link(format!("/proc/{exec_pid}/cwd")).unwrap();
    assert!(cwd.ends_with("tmp"), "{}", cwd.display());
    assert_ok(&runtime.run(&["kill", "--all", "e1", "KILL"]));
    assert_eq!(wait_exit(exec_pid), 137);
    assert_eq!(wait_exit(pid), 137);
}

#[test]
fn pause_freezes_and_resume_thaws() {
    become_subreaper();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "while true; do echo x >> /tmp/count; sleep 0.01; done",
    ]);
    let runtime = Runtime::new();
    assert_ok(&runtime.create("p1", &bundle));
    assert_ok(&runtime.run(&["start", "p1"]));
    let pid = pid_of(&runtime, "p1");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_ok(&runtime.run(&["pause", "p1"]));
    assert_eq!(runtime.status("p1"), "paused");
    let count = format!("/proc/{pid}/root/tmp/count");
    let frozen = std::fs::read_to_string(&count).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        frozen,
        "it ran while paused"
    );
    let out = runtime.run(&["pause", "p1"]);
    assert!(!out.status.success());
    assert_ok(&runtime.run(&["resume", "p1"]));
    assert_eq!(runtime.status("p1"), "running");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_ne!(
        std::fs::read_to_string(&count).unwrap(),
        frozen,
        "it did not run again"
    );
    assert_ok(&runtime.run(&["delete", "--force", "p1"]));
    assert_eq!(wait_exit(pid), 137);
}

#[test]
fn the_configs_seccomp_profile_is_enforced_and_can_be_left_out() {
    let script = "mkdir /tmp/made && echo made";
    let runtime = Runtime::new();
    // Control: without a profile the call goes through.
    let open = Bundle::new(&["sh", "-c", script]);
    let out = runtime.run(&["run", "--bundle", open.dir().to_str().unwrap(), "s0"]);
    assert_eq!(stdout(&out).trim(), "made", "{}", stderr(&out));
    let mut closed = Bundle::new(&["sh", "-c", script]);
    closed.config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    closed.save();
    let out = runtime.run(&["run", "--bundle", closed.dir().to_str().unwrap(), "s1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let status = runtime.run(&["run", "--bundle", closed.dir().to_str().unwrap(), "s2"]);
    assert!(!status.status.success());
}

#[test]
fn resources_are_written_and_enforced_in_the_cgroup() {
    let mut bundle = Bundle::new(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
    ]);
    bundle.config["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 67108864}, "pids": {"limit": 4},
        "cpu": {"quota": 50000, "period": 100000}
    });
    bundle.save();
    let runtime = Runtime::new();
    let out = runtime
        .command(&["run", "--bundle", bundle.dir().to_str().unwrap(), "l1"])
        .output()
        .unwrap();
    // The fork past the limit fails inside the container (busybox says so).
    assert!(
        stderr(&out).contains("Resource temporarily unavailable")
            || stderr(&out).contains("can't fork"),
        "{}",
        stderr(&out)
    );
    let mut bundle = Bundle::new(&["sleep", "60"]);
    bundle.config["linux"]["resources"] =
        serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 4}});
    bundle.save();
    assert_ok(&runtime.create("l2", &bundle));
    let memory = cgroup_dir(&bundle.cgroup_path());
    let file = if memory.join("memory.limit_in_bytes").exists() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    assert_eq!(
        std::fs::read_to_string(memory.join(file)).unwrap().trim(),
        "67108864"
    );
    assert_ok(&runtime.run(&["delete", "--force", "l2"]));
    assert!(!memory.exists());
}

#[test]
fn a_terminal_goes_to_the_console_socket_as_runc_sends_it() {
    become_subreaper();
    let mut bundle = Bundle::new(&["sh", "-c", "tty; stat -c %t,%T /dev/console"]);
    bundle.config["process"]["terminal"] = serde_json::json!(true);
    bundle.save();
    let runtime = Runtime::new();
    let socket_path = bundle.dir().join("console.sock");
    let listener = UnixListener::bind(&socket_path).unwrap();
    let out = runtime.run(&[
        "create",
        "--bundle",
        bundle.dir().to_str().unwrap(),
        "--console-socket",
        socket_path.to_str().unwrap(),
        "t1",
    ]);
    assert_ok(&out);
    let (stream, _) = listener.accept().unwrap();
    let master = receive_fd(&stream);
    let pid = pid_of(&runtime, "t1");
    assert_ok(&runtime.run(&["start", "t1"]));
    let mut output = Vec::new();
    let mut file = std::fs::File::from(master);
    let _ = std::io::Read::read_to_end(&mut file, &mut output);
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("88,0"), "/dev/console is the pty: {text}");
    assert_eq!(wait_exit(pid), 0);
    let out = runtime.run(&["create", "--bundle", bundle.dir().to_str().unwrap(), "t2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--console-socket"),
        "{}",
        stderr(&out)
    );
}

/// Receives one fd sent with SCM_RIGHTS.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u8; 64];
    // SAFETY: msghdr is plain data, filled below with valid buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: valid socket and message.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; one SCM_RIGHTS message with one fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null());
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        let fd = *(libc::CMSG_DATA(cmsg) as *const libc::c_int);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn errors_go_to_the_log_as_json_lines() {
    let runtime = Runtime::new();
    let log = runtime.root.path().join("log.json");
    let out = runtime.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "kill",
        "nope",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().unwrap().contains("does not exist"),
        "{line}"
    );
    let out = runtime.run(&["--systemd-cgroup", "state", "x"]);
    assert!(
        stderr(&out).contains("--systemd-cgroup: not supported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn features_and_spec_describe_the_runtime() {
    let out = mkroot_e2e::launch::launch(["features"]);
    assert_ok(&out);
    let features: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(features["ociVersionMax"], "1.2.0");
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "user"));
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(mkroot_e2e::launch::launch_bin())
        .arg("spec")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
}

#[test]
fn a_user_namespace_config_maps_root_and_reaches_its_fifo() {
    let mut bundle = Bundle::new(&["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let namespaces = bundle.config["linux"]["namespaces"].as_array_mut().unwrap();
    namespaces.push(serde_json::json!({"type": "user"}));
    let mapping = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    bundle.config["linux"]["uidMappings"] = mapping.clone();
    bundle.config["linux"]["gidMappings"] = mapping;
    bundle.save();
    let runtime = Runtime::new();
    let out = runtime.run(&["run", "--bundle", bundle.dir().to_str().unwrap(), "u1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "200000", "65536"]);
}

#[test]
fn bind_options_and_propagation_are_applied() {
    let mut bundle = Bundle::new(&["cat", "/proc/self/mountinfo"]);
    let source = tempfile::tempdir().unwrap();
    let mounts = bundle.config["mounts"].as_array_mut().unwrap();
    mounts.push(
        serde_json::json!({"destination": "/mnt/shared", "source": source.path(),
        "options": ["bind", "shared", "nosuid", "strictatime", "ro"]}),
    );
    mounts.push(
        serde_json::json!({"destination": "/mnt/private", "source": source.path(),
        "options": ["rbind", "rprivate", "noexec"]}),
    );
    bundle.save();
    let runtime = Runtime::new();
    let out = runtime.run(&["run", "--bundle", bundle.dir().to_str().unwrap(), "m1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = |dest: &str| {
        text.lines()
            .find(|l| l.split(' ').nth(4) == Some(dest))
            .unwrap_or_else(|| panic!("{dest} not mounted: {text}"))
            .to_string()
    };
    let shared = line("/mnt/shared");
    assert!(
        shared.contains(" ro,nosuid") && shared.contains("shared:"),
        "{shared}"
    );
    let private = line("/mnt/private");
    assert!(
        private.contains("noexec") && !private.contains("shared:"),
        "{private}"
    );
}

#[test]
fn the_devices_cgroup_refuses_a_device_the_config_does_not_allow() {
    if !std::path::Path::new("/sys/fs/cgroup/devices").is_dir() {
        // cgroup v2 has no devices files (its device rules are eBPF programs): the
        // default capability set, without CAP_MKNOD, is what keeps devices out there.
        eprintln!("SKIPPED: no v1 devices hierarchy on this host");
        return;
    }
    // The tun device (c 10:200), a node made inside and opened: the devices cgroup,
    // not a capability, is what decides (opening it needs none).
    let script = "mknod /tmp/tun c 10 200 && exec 3<> /tmp/tun && echo opened";
    let with_mknod = |bundle: &mut Bundle| {
        for set in ["bounding", "effective", "permitted"] {
            let caps = bundle.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap();
            caps.push(serde_json::json!("CAP_MKNOD"));
        }
        bundle.save();
    };
    let runtime = Runtime::new();
    // Control: with no device rules the container opens it.
    let mut open = Bundle::new(&["sh", "-c", script]);
    open.config["linux"]["resources"] = serde_json::json!({});
    with_mknod(&mut open);
    let out = runtime.run(&["run", "--bundle", open.dir().to_str().unwrap(), "dev0"]);
    assert_eq!(stdout(&out).trim(), "opened", "control: {}", stderr(&out));
    // The default spec's rule (deny all) keeps it out; /dev/null still works.
    let closed_script = format!("echo ok > /dev/null && {script}");
    let mut closed = Bundle::new(&["sh", "-c", &closed_script]);
    with_mknod(&mut closed);
    let out = runtime.run(&["run", "--bundle", closed.dir().to_str().unwrap(), "dev1"]);
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_six_hooks_run_in_order_with_the_state_on_stdin() {
    become_subreaper();
    let mut bundle = Bundle::new(&["sh", "-c", "echo program >> /hooks.log"]);
    let log = bundle.dir().join("hooks.log");
    let host_hook = |name: &str| {
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("echo {name} >> {0}; cat > {0}.{name}.json", log.display())]})
    };
    bundle.config["hooks"] = serde_json::json!({
        "createRuntime": [host_hook("createRuntime")],
        "prestart": [host_hook("prestart")],
        "createContainer": [host_hook("createContainer")],
        // In the container: its own /bin/sh and a file of its own.
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /hooks.log"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")],
    });
    bundle.save();
    let runtime = Runtime::new();
    assert_ok(&runtime.create("h1", &bundle));
    let pid = pid_of(&runtime, "h1");
    let ran = |file: &Path| std::fs::read_to_string(file).unwrap_or_default();
    assert_eq!(ran(&log), "createRuntime\nprestart\ncreateContainer\n");
    let state: serde_json::Value =
        serde_json::from_str(&ran(&bundle.dir().join("hooks.log.prestart.json"))).unwrap();
    assert_eq!(state["id"], "h1");
    assert_eq!(state["pid"].as_i64(), Some(pid));
    assert_ok(&runtime.run(&["start", "h1"]));
    assert_eq!(wait_exit(pid), 0);
    let inside = bundle.image.root().join("hooks.log");
    assert_eq!(ran(&inside), "startContainer\nprogram\n");
    assert!(ran(&log).ends_with("poststart\n"), "{}", ran(&log));
    assert_ok(&runtime.run(&["delete", "h1"]));
    assert_eq!(
        ran(&log),
        "createRuntime\nprestart\ncreateContainer\npoststart\npoststop\n"
    );
    // A failing createRuntime hook fails the create and leaves nothing.
    bundle.config["hooks"] = serde_json::json!({"createRuntime": [{"path": "/bin/false"}]});
    bundle.save();
    let out = runtime.create("h2", &bundle);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("createRuntime hook /bin/false failed"),
        "{}",
        stderr(&out)
    );
    assert!(runtime.ids().is_empty());
}

#[test]
fn an_ordinary_user_runs_a_rootless_bundle() {
    let user = mkroot_e2e::launch::TestUser::create("rt");
    let bundle = Bundle::new(&["true"]);
    std::fs::remove_file(bundle.dir().join("config.json")).unwrap();
    bundle.image.give_to(&user);
    let dir = bundle.dir().to_str().unwrap();
    let out = user.launch(&["spec", "--rootless", "--bundle", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = bundle.dir().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["process"]["args"] =
        serde_json::json!(["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"]);
    config["root"]["readonly"] = serde_json::json!(false);
    std::fs::write(&path, config.to_string()).unwrap();
    let state = bundle.dir().join("state");
    let out = user.launch(&[
        "--root",
        state.to_str().unwrap(),
        "run",
        "--bundle",
        dir,
        "r1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "0", "{text}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", &user.uid.to_string(), "1"]);
    assert_eq!(lines[2], "launch");
    assert!(
        std::fs::read_dir(&state).unwrap().next().is_none(),
        "run leaves no state"
    );
}

#[test]
fn under_launchs_own_defenses_files_move_and_link_between_directories() {
    // What installers do (dpkg, pip): Landlock's exec rule, kept under an engine too,
    // must not turn a rename or hard link between directories into EXDEV.
    let script = "busybox mkdir -p /tmp/a /tmp/b && echo x > /tmp/a/f \
                  && busybox mv /tmp/a/f /tmp/b/f && busybox ln /tmp/b/f /tmp/a/g \
                  && cat /tmp/a/g && echo moved";
    let bundle = Bundle::new(&["sh", "-c", script]);
    let runtime = Runtime::new();
    let out = runtime.run(&["run", "--bundle", bundle.dir().to_str().unwrap(), "w1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "x\nmoved\n");
}

#[test]
fn masked_paths_of_either_kind_are_hidden_and_read_only_paths_refuse_writes() {
    // A directory and a file under maskedPaths (the runtime guesses a file first, so the
    // directory takes the other way), one missing path, and /proc/sys read-only.
    // /proc/sys/kernel/domainname is the container's own (UTS namespace): writable
    // without the read-only path, which is the control.
    let script = "echo firmware $(ls /sys/firmware | busybox wc -l); \
                  echo keys $(busybox wc -c < /proc/keys); \
                  echo x > /proc/sys/kernel/domainname && echo wrote";
    let run = |masked: &[&str], read_only: &[&str], id: &str| {
        let mut bundle = Bundle::new(&["sh", "-c", script]);
        bundle.config["linux"]["maskedPaths"] = serde_json::json!(masked);
        bundle.config["linux"]["readonlyPaths"] = serde_json::json!(read_only);
        bundle.save();
        let runtime = Runtime::new();
        let out = runtime.run(&["run", "--bundle", bundle.dir().to_str().unwrap(), id]);
        assert!(out.status.code().is_some(), "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let (control, _) = run(&[], &[], "m0");
    assert!(!control.contains("firmware 0"), "{control}");
    assert!(control.contains("wrote"), "{control}");
    let (masked, err) = run(
        &["/sys/firmware", "/proc/keys", "/proc/no-such-entry"],
        &["/proc/sys"],
        "m1",
    );
    assert!(masked.contains("firmware 0\n"), "{masked} {err}");
    assert!(masked.contains("keys 0\n"), "{masked} {err}");
    assert!(!masked.contains("wrote"), "{masked}");
    assert!(err.contains("Read-only file system"), "{err}");
}

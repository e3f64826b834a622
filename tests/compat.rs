//! The compatibility suite (issue 11): ordinary programs run under launch's defaults.
//! The attack tests (`tests/attacks.rs`) prove that attacks fail; these prove that a
//! Debian system (made by debootstrap, see `mkroot_e2e::compat`) still does its everyday
//! work under the same defaults, as it does under docker's default profile. Every test
//! runs `launch IMAGE -- sh -c SCRIPT` with no security option and checks what the
//! workload printed, not only its exit status.
//!
//! What each defense would break if it were too strict, and the tests that show it
//! does not (the same table is in docs/hardening.md, "What the defaults must not break"):
//!
//! - **Landlock** (execute only beneath the root): without the REFER right every rename
//!   or link into another directory fails with EXDEV, and with it apt (lists staged in
//!   `partial/`), dpkg (files unpacked as `.dpkg-new`), pip and git. Tests:
//!   `files_move_and_link_between_directories_on_the_root_tmp_and_a_volume`,
//!   `apt_get_update_and_install_from_a_local_file_repository`,
//!   `dpkg_installs_and_removes_a_package_built_in_the_container`,
//!   `python_makes_a_venv_installs_into_it_and_uses_sqlite_with_wal`,
//!   `git_init_commit_and_gc`; a program kept under the image's /tmp must be executable:
//!   `a_program_under_the_images_tmp_runs`. Control:
//!   `a_landlock_ruleset_without_refer_breaks_the_same_link` (the same link, EXDEV once
//!   the command stacks a ruleset of its own without REFER).
//! - **Capabilities** (docker's set less NET_RAW, MKNOD, AUDIT_WRITE): without CHOWN,
//!   DAC_OVERRIDE, FOWNER, FSETID, SETUID and SETGID, dpkg and apt (files owned by
//!   others, apt's `_apt` sandbox), useradd (a home chowned to the user), su and chown
//!   fail; without them nice could not lower a priority either (it needs none). Tests:
//!   `useradd_makes_a_home_and_su_runs_as_that_user`,
//!   `chown_and_setuid_bits_work_inside_the_container`, `nice_lowers_the_priority`, and
//!   the apt and dpkg tests. Control: `without_chown_setuid_and_setgid_chown_and_su_fail`.
//! - **seccomp** (a deny-list): refusing ptrace (docker allows it on kernels >= 4.8)
//!   breaks strace and gdb; refusing the IPC calls would break fifos, flock and unix
//!   sockets. Tests: `strace_and_gdb_trace_their_own_child`,
//!   `fifos_flock_and_unix_sockets_work`. Control:
//!   `a_seccomp_filter_refusing_ptrace_breaks_strace`. process_vm_readv and
//!   process_vm_writev stay open with ptrace (docker allows both), which profilers
//!   need: `a_program_reads_its_childs_memory_with_process_vm_readv`.
//! - **Masked paths** (`/proc/kcore`, `/proc/sys` read-only, `/sys/firmware`, ...):
//!   masking too much would break what reads `/proc/self/*`, `/proc/<pid>/stat`,
//!   `/proc/meminfo`, `/proc/cpuinfo` and `/sys/devices/system/cpu`: ps, top, free,
//!   nproc, python's `os.cpu_count`. Test: `ps_top_free_and_cpu_counts_read_proc_and_sys`.
//! - **no_new_privs**: `su` from root still works (it only gives privileges away:
//!   `useradd_makes_a_home_and_su_runs_as_that_user`), but a setuid-root program run by
//!   another user does not gain root, as under docker's
//!   `--security-opt no-new-privileges` (the overlay is also mounted nosuid):
//!   `a_setuid_program_run_by_another_user_gains_nothing`.

use mkroot_e2e::builder::build;
use mkroot_e2e::compat::DebianImage;
use mkroot_e2e::launch::{describe, launch, stdout, stdout_of_success};

/// Runs `script` in the Debian image with launch's defaults; its stdout, which must be
/// that of a success.
#[track_caller]
fn in_debian(script: &str) -> String {
    stdout_of_success(&DebianImage::get().run(&[], script))
}

/// A tiny Debian package, built in the container with dpkg-deb into `/repo`:
/// `/usr/bin/compat-hello` and a postinst and postrm that say they ran.
const BUILD_PACKAGE: &str = r#"
set -e
pkg=/build/compat-hello
mkdir -p $pkg/DEBIAN $pkg/usr/bin /repo
cat > $pkg/DEBIAN/control <<EOF
Package: compat-hello
Version: 1.0
Architecture: all
Maintainer: mkroot tests <tests@localhost>
Description: says hello (built by the compatibility suite)
EOF
printf '#!/bin/sh\necho hello from compat-hello\n' > $pkg/usr/bin/compat-hello
printf '#!/bin/sh\necho postinst ran: $1\n' > $pkg/DEBIAN/postinst
printf '#!/bin/sh\necho postrm ran: $1\n' > $pkg/DEBIAN/postrm
chmod 755 $pkg/usr/bin/compat-hello $pkg/DEBIAN/postinst $pkg/DEBIAN/postrm
dpkg-deb --root-owner-group --build $pkg /repo/compat-hello_1.0_all.deb >/dev/null
"#;

#[test]
fn files_move_and_link_between_directories_on_the_root_tmp_and_a_volume() {
    let volume = tempfile::tempdir().unwrap();
    let rw = format!("{}:/data", volume.path().display());
    // A hard link has no copying fallback (mv has), so EXDEV would show.
    let script = r#"
for d in /var/lib /tmp /data; do
  mkdir -p $d/a $d/b && echo x > $d/a/f && ln $d/a/f $d/b/ln-link || exit 1
  python3 -c '
import os, sys
d = sys.argv[1]
os.link(d + "/a/f", d + "/b/py-link")
os.replace(d + "/a/f", d + "/b/moved")
os.rename(d + "/a", d + "/b/dir")
print(d, sorted(os.listdir(d + "/b")), os.stat(d + "/b/moved").st_nlink)
' $d || exit 1
done"#;
    let out = DebianImage::get().run(&["-v", &rw], script);
    assert_eq!(
        stdout(&out),
        "/var/lib ['dir', 'ln-link', 'moved', 'py-link'] 3\n\
         /tmp ['dir', 'ln-link', 'moved', 'py-link'] 3\n\
         /data ['dir', 'ln-link', 'moved', 'py-link'] 3\n",
        "{}",
        describe(&out)
    );
    assert_eq!(
        std::fs::read_to_string(volume.path().join("b/moved")).unwrap(),
        "x\n"
    );
}

/// The control: the link that works above fails with EXDEV as soon as the command
/// stacks a Landlock ruleset of its own that handles EXECUTE but does not grant REFER
/// (what the launcher's ruleset was before 5637f36), while a rename within one
/// directory still works.
#[test]
fn a_landlock_ruleset_without_refer_breaks_the_same_link() {
    let out = in_debian(
        r#"
mkdir -p /tmp/a /tmp/b && echo x > /tmp/a/f
python3 - <<'PY'
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]
class PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]
EXECUTE = 1
def call(*args):
    ret = libc.syscall(*[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if ret < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return ret
os.link("/tmp/a/f", "/tmp/b/before")
print("link before:", os.path.exists("/tmp/b/before"))
attr = RulesetAttr(EXECUTE)
ruleset = call(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)
rule = PathBeneath(EXECUTE, os.open("/", os.O_PATH))
call(445, ruleset, 1, ctypes.byref(rule), 0)
call(446, ruleset, 0)
os.rename("/tmp/a/f", "/tmp/a/g")
print("same-directory rename: ok")
for what, op in [("link", os.link), ("rename", os.rename)]:
    try:
        op("/tmp/a/g", "/tmp/b/after")
        print(what, "after: ok")
    except OSError as e:
        print(what, "after:", errno.errorcode[e.errno])
PY
"#,
    );
    assert_eq!(
        out,
        "link before: True\nsame-directory rename: ok\nlink after: EXDEV\nrename after: EXDEV\n"
    );
}

/// apt-get update copies each index into `lists/partial` and renames it into `lists/`;
/// apt-get install downloads into `archives/partial` as the `_apt` user, then dpkg
/// unpacks. The repository is a flat one (`./`) the container makes itself.
#[test]
fn apt_get_update_and_install_from_a_local_file_repository() {
    let script = format!(
        r#"{BUILD_PACKAGE}
cd /repo
{{ dpkg-deb -f compat-hello_1.0_all.deb
  echo "Filename: ./compat-hello_1.0_all.deb"
  echo "Size: $(stat -c %s compat-hello_1.0_all.deb)"
  echo "SHA256: $(sha256sum compat-hello_1.0_all.deb | cut -d' ' -f1)"
  echo; }} > Packages
rm -f /etc/apt/sources.list.d/* /etc/apt/sources.list
echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list
apt-get update -q >/tmp/update.log 2>&1 || {{ cat /tmp/update.log; exit 1; }}
ls /var/lib/apt/lists/ | grep -c _repo_._Packages
apt-cache policy compat-hello | grep Candidate
apt-get install -y -q compat-hello >/tmp/install.log 2>&1 || {{ cat /tmp/install.log; exit 1; }}
grep 'postinst ran' /tmp/install.log | tr -d '\r'
compat-hello
dpkg-query -W -f '${{Package}} ${{Version}} ${{Status}}\n' compat-hello
"#
    );
    assert_eq!(
        in_debian(&script),
        "1\n  Candidate: 1.0\npostinst ran: configure\nhello from compat-hello\n\
         compat-hello 1.0 install ok installed\n"
    );
}

#[test]
fn dpkg_installs_and_removes_a_package_built_in_the_container() {
    let script = format!(
        r#"{BUILD_PACKAGE}
dpkg -i /repo/compat-hello_1.0_all.deb | grep 'postinst ran'
compat-hello
dpkg -L compat-hello | grep bin/compat-hello
dpkg -r compat-hello | grep 'postrm ran'
test -e /usr/bin/compat-hello && echo still there || echo removed
dpkg-query -W -f '${{Status}}\n' compat-hello
dpkg -P compat-hello | grep 'postrm ran'
dpkg-query -W compat-hello 2>/dev/null || echo not installed
"#
    );
    let out = in_debian(&script);
    assert_eq!(
        out,
        "postinst ran: configure\nhello from compat-hello\n/usr/bin/compat-hello\n\
         postrm ran: remove\nremoved\n\
         deinstall ok config-files\npostrm ran: purge\nnot installed\n",
    );
}

/// useradd locks, rewrites and renames /etc/passwd, shadow and group, copies /etc/skel
/// and chowns the home (CHOWN, DAC_OVERRIDE, FOWNER); su from root sets the user's
/// groups and ids (SETGID, SETUID) through PAM.
#[test]
fn useradd_makes_a_home_and_su_runs_as_that_user() {
    let out = in_debian(
        r#"
useradd -m -s /bin/sh compat
stat -c '%U %G %a' /home/compat
ls -A /home/compat | tr '\n' ' '; echo
su compat -c 'id -un; id -gn; echo $HOME; touch ~/mine && stat -c %U ~/mine'
su - compat -c pwd
"#,
    );
    assert_eq!(
        out,
        "compat compat 755\n.bash_logout .bashrc .profile \ncompat\ncompat\n/home/compat\n\
         compat\n/home/compat\n"
    );
}

#[test]
fn chown_and_setuid_bits_work_inside_the_container() {
    let out = in_debian(
        r#"
touch /tmp/f && chown 1234:5678 /tmp/f && stat -c '%u %g' /tmp/f
chmod 640 /tmp/f && stat -c %a /tmp/f
cp /usr/bin/id /tmp/id && chmod u+s,g+s /tmp/id && stat -c %A /tmp/id
chown 1234 /tmp/id && stat -c '%A %u' /tmp/id
chown -R nobody:nogroup /var/tmp && stat -c '%U %G' /var/tmp
"#,
    );
    // chown clears the set-id bits, as on any Linux system.
    assert_eq!(
        out,
        "1234 5678\n640\n-rwsr-sr-x\n-rwxr-xr-x 1234\nnobody nogroup\n"
    );
}

/// The control: take away the capabilities chown and su use (`--cap-drop`) and they
/// fail as they would under a set cut too far.
#[test]
fn without_chown_setuid_and_setgid_chown_and_su_fail() {
    let image = DebianImage::get();
    let out = image.run(
        &[
            "--cap-drop",
            "CHOWN",
            "--cap-drop",
            "SETUID",
            "--cap-drop",
            "SETGID",
        ],
        "touch /tmp/f; chown 1234 /tmp/f || echo chown refused; \
         su nobody -s /bin/sh -c id || echo su refused",
    );
    assert_eq!(
        stdout(&out),
        "chown refused\nsu refused\n",
        "{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        describe(&out)
    );
}

/// Lowering one's priority needs no capability; raising it needs SYS_NICE, which docker
/// does not give either.
#[test]
fn nice_lowers_the_priority() {
    let out = in_debian(
        "nice -n 5 nice; nice -n 5 sh -c 'ps -o ni= -p $$'; \
         nice -n -5 true 2>/dev/null; nice -n -5 nice",
    );
    assert_eq!(out, "5\n  5\n0\n");
}

/// no_new_privs: a setuid-root copy of `id` made by root inside, run by another user,
/// runs with that user's ids (as with docker's `--security-opt no-new-privileges`; the
/// overlay is mounted nosuid too). su from root works (it gives privileges away).
#[test]
fn a_setuid_program_run_by_another_user_gains_nothing() {
    let out = in_debian(
        r#"
cp /usr/bin/id /tmp/id-setuid && chmod 4755 /tmp/id-setuid && stat -c '%A %U' /tmp/id-setuid
su nobody -s /bin/sh -c '/tmp/id-setuid -u; /tmp/id-setuid -un; grep NoNewPrivs /proc/self/status'
"#,
    );
    assert_eq!(out, "-rwsr-xr-x root\n65534\nnobody\nNoNewPrivs:\t1\n");
}

/// ptrace of one's own child is open (docker allows it on kernels >= 4.8): strace -f
/// follows a forked child and decodes its exec; gdb runs a program to its crash.
#[test]
fn strace_and_gdb_trace_their_own_child() {
    let out = in_debian(
        r#"
strace -f -qq -e trace=execve -o /tmp/trace sh -c '/bin/true; echo traced ran'
grep -c 'execve("/bin/true", \["/bin/true"\]' /tmp/trace
strace -f -o /dev/null true && echo strace to /dev/null ok
gdb -batch -ex run -ex bt --args /bin/sh -c 'kill -SEGV $$' 2>/dev/null | grep -E -o '^Program received signal SIGSEGV|^#0 .* in kill ' | sed 's/0x[0-9a-f]*/ADDR/'
"#,
    );
    assert_eq!(
        out,
        "traced ran\n1\nstrace to /dev/null ok\n\
         Program received signal SIGSEGV\n#0  ADDR in kill \n"
    );
}

/// The control: the same strace fails once the command stacks a seccomp filter of its
/// own that refuses ptrace (as docker's profile did before kernel 4.8).
#[test]
fn a_seccomp_filter_refusing_ptrace_breaks_strace() {
    let script = format!(
        r#"
python3 - <<'PY'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]
EPERM = 1
program = (SockFilter * 4)(
    SockFilter(0x20, 0, 0, 0),                   # load the system call number
    SockFilter(0x15, 0, 1, {ptrace}),            # ptrace?
    SockFilter(0x06, 0, 0, 0x00050000 | EPERM),  # refuse: EPERM
    SockFilter(0x06, 0, 0, 0x7FFF0000),          # allow
)
fprog = SockFprog(len(program), program)
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
    raise OSError(ctypes.get_errno(), "prctl")
os.execvp("strace", ["strace", "-f", "-o", "/dev/null", "true"])
PY
echo "strace exit $?"
"#,
        ptrace = libc::SYS_ptrace
    );
    let out = DebianImage::get().run(&[], &script);
    assert_eq!(stdout(&out), "strace exit 1\n", "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{}",
        describe(&out)
    );
}

#[test]
fn fifos_flock_and_unix_sockets_work() {
    let out = in_debian(
        r#"
mkfifo /tmp/fifo && stat -c %F /tmp/fifo
(echo through the fifo > /tmp/fifo &) ; cat /tmp/fifo
flock /tmp/lock -c 'echo holding the lock; flock -n /tmp/lock true || echo second lock refused'
flock -n /tmp/lock echo lock free again
python3 - <<'PY'
import os, socket
path = "/tmp/sock"
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
if os.fork() == 0:
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    client.sendall(b"over a unix socket")
    os._exit(0)
conn, _ = server.accept()
print(conn.recv(100).decode())
os.wait()
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
a.send(b"over a socketpair")
print(b.recv(100).decode())
PY
"#,
    );
    assert_eq!(
        out,
        "fifo\nthrough the fifo\nholding the lock\nsecond lock refused\nlock free again\n\
         over a unix socket\nover a socketpair\n"
    );
}

/// A venv (with pip bootstrapped from the wheels python3-venv ships, no network), a
/// local package pip-installed into it (pip stages and moves files between
/// directories), and sqlite in WAL mode (its -wal and -shm files, shared memory by
/// mmap, a second connection reading what the first wrote).
#[test]
fn python_makes_a_venv_installs_into_it_and_uses_sqlite_with_wal() {
    let out = in_debian(
        r#"
set -e
python3 -m venv /tmp/venv
mkdir -p /tmp/pkg/compat_hello
printf 'from setuptools import setup\nsetup(name="compat-hello", version="1.0", packages=["compat_hello"])\n' > /tmp/pkg/setup.py
echo 'GREETING = "hello from the venv"' > /tmp/pkg/compat_hello/__init__.py
/tmp/venv/bin/pip install -q --no-index --no-build-isolation /tmp/pkg 2>/dev/null
cd /
/tmp/venv/bin/python - <<'PY'
import os, sqlite3, sys
import compat_hello
print(compat_hello.GREETING, sys.prefix, sys.prefix != sys.base_prefix)
db = sqlite3.connect("/tmp/w.db")
print(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
db.execute("create table t(x)")
db.executemany("insert into t values (?)", [(i,) for i in range(100)])
db.commit()
other = sqlite3.connect("/tmp/w.db")
print(other.execute("select count(*), sum(x) from t").fetchone())
print(sorted(f for f in os.listdir("/tmp") if f.startswith("w.db")))
PY
"#,
    );
    assert_eq!(
        out,
        "hello from the venv /tmp/venv True\nwal\n(100, 4950)\n\
         ['w.db', 'w.db-shm', 'w.db-wal']\n"
    );
}

/// git writes objects through temp files renamed into `objects/xx/`; gc packs them
/// and prunes the loose ones.
#[test]
fn git_init_commit_and_gc() {
    let out = in_debian(
        r#"
set -e
git config --global user.email tests@localhost
git config --global user.name tests
mkdir /tmp/repo && cd /tmp/repo && git init -q -b main
for i in 1 2 3; do echo $i > f$i; git add f$i; git commit -qm "commit $i"; done
git count-objects -v | grep -E '^count:'
git gc -q
git count-objects -v | grep -E '^(count|in-pack|packs):'
git log --format=%s | tr '\n' ' '; echo
git fsck --no-progress && echo fsck ok
"#,
    );
    assert_eq!(
        out,
        "count: 9\ncount: 0\nin-pack: 9\npacks: 1\ncommit 3 commit 2 commit 1 \nfsck ok\n"
    );
}

/// What ps, top, free, nproc and python read in /proc and /sys is there, while the
/// masked paths stay masked.
#[test]
fn ps_top_free_and_cpu_counts_read_proc_and_sys() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let out = in_debian(
        r#"
sleep 30 & until [ "$(cat /proc/$!/comm)" = sleep ]; do :; done
ps -eo pid=,comm= | awk '$1 == 2 || $1 == 3 {print $1, $2}'
top -bn1 | grep -c '^Tasks:'
free | grep -c '^Mem:'
nproc; grep -c ^processor /proc/cpuinfo
python3 -c 'import os; print(os.cpu_count(), len(os.sched_getaffinity(0)), os.getloadavg()[0] >= 0)'
readlink /proc/self/exe; grep ^NoNewPrivs /proc/self/status
test -d /sys/devices/system/cpu/cpu0 && echo cpu0 in sys
wc -c < /proc/kallsyms; ls /proc/sys/kernel | grep -c ^hostname$
"#,
    );
    assert_eq!(
        out,
        format!(
            "2 sh\n3 sleep\n1\n1\n{cpus}\n{cpus}\n{cpus} {cpus} True\n\
             /usr/bin/readlink\nNoNewPrivs:\t1\ncpu0 in sys\n0\n1\n"
        )
    );
}

/// An image whose /tmp holds its program: mkroot run in a directory under /tmp, as a
/// user would (`cd /tmp/work && mkroot --bins ./hello.sh -o s.tgz && launch s.tgz`).
/// launch mounts nothing over the image's /tmp, and Landlock lets it execute there.
#[test]
fn a_program_under_the_images_tmp_runs() {
    let work = tempfile::Builder::new()
        .prefix("compat-work-")
        .tempdir_in("/tmp")
        .unwrap();
    let script = work.path().join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"hello from $0\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    build(&["--bins", "./hello.sh", "-o", "s.tgz"], work.path());
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let expected = format!("hello from {}\n", script.display());
    let tarball = work.path().join("s.tgz");
    let tarball = tarball.to_str().unwrap();
    // The image's recorded command, then the script named on the command line.
    let out = launch(["--cache-dir", cache_dir, tarball]);
    assert_eq!(stdout(&out), expected, "{}", describe(&out));
    let out = launch([
        "--cache-dir",
        cache_dir,
        tarball,
        "--",
        script.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), expected, "{}", describe(&out));
}

/// Reading a child's memory with process_vm_readv, as profilers (py-spy) and debuggers
/// do: docker's profile allows it with ptrace on kernels >= 4.8, without SYS_PTRACE.
/// strace falls back to PTRACE_PEEKDATA when it is refused; a profiler does not.
#[test]
fn a_program_reads_its_childs_memory_with_process_vm_readv() {
    let out = in_debian(
        r#"
python3 - <<'PY'
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
secret = ctypes.create_string_buffer(b"the child's own bytes")
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(ready_w, b"x")
    time.sleep(30)
    os._exit(0)
os.read(ready_r, 1)
buf = ctypes.create_string_buffer(len(secret.value))
local = IoVec(ctypes.cast(buf, ctypes.c_void_p), len(buf))
remote = IoVec(ctypes.addressof(secret), len(buf))
libc.process_vm_readv.restype = ctypes.c_ssize_t
got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
print(buf.raw.decode() if got > 0 else os.strerror(ctypes.get_errno()))
os.kill(pid, 9)
os.wait()
PY
"#,
    );
    assert_eq!(out, "the child's own bytes\n");
}

//! End to end: `mkroot --trace` watches a probe run once on the host and the image it
//! builds runs a *different* command of the same kind, in mkroot's own chroot check and
//! in the real `launch`. One image per family, reused across its assertions. Run as root
//! (CI does): the probe's sandbox, chroot and launch need it.

use mkroot_e2e::builder::{run_in_image_with_dev, run_mkroot, sha256, unpack};
use mkroot_e2e::launch::{describe, launch};
use std::path::{Path, PathBuf};
use std::process::Output;

/// An image built with `--trace`, as a tarball and unpacked.
struct TracedImage {
    dir: tempfile::TempDir,
    tarball: PathBuf,
    root: PathBuf,
}

impl TracedImage {
    /// Builds `img.tgz` with mkroot `args` in a new directory that `prepare` fills
    /// first (the probes run there), and unpacks it.
    fn build(args: &[&str], prepare: impl FnOnce(&Path)) -> TracedImage {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let tarball = dir.path().join("img.tgz");
        let mut all = vec!["-q"];
        all.extend(args);
        all.extend(["-o", tarball.to_str().unwrap()]);
        let out = run_mkroot(&all, dir.path());
        assert!(out.status.success(), "mkroot {all:?}: {}", describe(&out));
        let root = dir.path().join("root");
        unpack(&tarball, &root);
        TracedImage { dir, tarball, root }
    }

    /// What `argv` prints in the image, run both ways; both must succeed and agree.
    fn stdout_both_ways(&self, argv: &[&str], env: &[(&str, &str)]) -> String {
        let chrooted = run_in_image_with_dev(&self.root, argv, env);
        assert!(
            chrooted.status.success(),
            "chroot {argv:?}: {}",
            describe(&chrooted)
        );
        let mut args: Vec<String> = vec![self.tarball.display().to_string()];
        for (key, value) in env {
            args.extend(["-e".to_string(), format!("{key}={value}")]);
        }
        args.push("--".to_string());
        args.extend(argv.iter().map(|a| a.to_string()));
        let launched = launch(&args);
        assert!(
            launched.status.success(),
            "launch {argv:?}: {}",
            describe(&launched)
        );
        let (chrooted, launched) = (text(&chrooted.stdout), text(&launched.stdout));
        assert_eq!(chrooted, launched, "{argv:?}: chroot and launch differ");
        chrooted
    }

    /// The manifest's reason for the image path `path`.
    fn reason(&self, path: &str) -> Option<String> {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.root.join(".mkroot/manifest.json")).unwrap(),
        )
        .unwrap();
        let files = manifest["files"].as_array().unwrap();
        let entry = files.iter().find(|f| f["path"] == path)?;
        Some(entry["reason"].as_str().unwrap().to_string())
    }

    /// Bytes of the regular files under the image directory `dir`.
    fn bytes_under(&self, dir: &str) -> u64 {
        tree_bytes(&self.root.join(dir.trim_start_matches('/')))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tree_bytes(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

/// The real path of a host program, as the trace records it.
fn real(path: &str) -> String {
    std::fs::canonicalize(path).unwrap().display().to_string()
}

#[test]
fn a_c_compiler_traced_once_compiles_links_with_libm_and_runs_another_program() {
    let image = TracedImage::build(
        &[
            "--bins",
            "sh,gcc",
            "--trace",
            "gcc -O2 -o /tmp/p probe.c -lm && /tmp/p",
        ],
        |dir| {
            std::fs::write(
                dir.join("probe.c"),
                "#include <math.h>\n#include <stdio.h>\nint main(void){printf(\"%.3f\\n\", sqrt(2.0));return 0;}\n",
            )
            .unwrap();
        },
    );
    // cc1, as and ld are reached by exec, crt1.o and libm's files by open: none by
    // DT_NEEDED.
    let cc1 = walk(&image.root)
        .into_iter()
        .find(|p| p.ends_with("cc1"))
        .expect("cc1 in the image");
    let cc1 = format!("/{}", cc1.strip_prefix(&image.root).unwrap().display());
    assert!(
        image.reason(&cc1).unwrap().starts_with("traced by gcc"),
        "{cc1}"
    );
    // Each line an argument of printf '%s\n', so the C text goes in as it is.
    let script = "printf '%s\\n' '#include <math.h>' '#include <stdio.h>' \
        'int main(void){printf(\"%.2f\\n\", cbrt(27.0));return 0;}' > /tmp/t.c \
        && gcc -o /tmp/t /tmp/t.c -lm && /tmp/t";
    assert_eq!(image.stdout_both_ways(&["sh", "-c", script], &[]), "3.00\n");
}

#[test]
fn git_traced_once_makes_commits_and_shows_a_log() {
    let probe = "cd /tmp && git init -q r && cd r && echo a > f && git add f && git -c user.name=t -c user.email=t@e commit -qm one && git log --oneline";
    let image = TracedImage::build(&["--bins", "sh,git", "--trace", probe], |_| {});
    let other = "cd /tmp && git init -q s && cd s && echo b > g && git add g && G='git -c user.name=u -c user.email=u@e' && $G commit -qm two && echo c >> g && $G commit -qam three && git log --format=%s";
    assert_eq!(
        image.stdout_both_ways(&["sh", "-c", other], &[]),
        "three\ntwo\n"
    );
}

#[test]
fn python_traced_once_imports_its_modules_and_trusts_the_system_cas() {
    let python = real("/usr/bin/python3");
    let image = TracedImage::build(
        &[
            "--bins",
            "/usr/bin/python3",
            "--trace",
            "/usr/bin/python3 -c 'import json, sqlite3, hashlib, ssl; ssl.create_default_context()'",
        ],
        |_| {},
    );
    let code = "import json, sqlite3, hashlib, ssl\n\
        db = sqlite3.connect(':memory:')\n\
        db.execute('create table t (v)'); db.execute('insert into t values (?)', (json.dumps([1, 2]),))\n\
        print(json.loads(db.execute('select v from t').fetchone()[0]))\n\
        print(hashlib.sha256(b'mkroot').hexdigest()[:12])\n\
        print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 0)\n";
    let out = image.stdout_both_ways(&[&python, "-c", code], &[]);
    let digest = "55f815591e71"; // sha256("mkroot"), first 12 hex digits
    assert_eq!(out, format!("[1, 2]\n{digest}\nTrue\n"), "{out}");
    // Only what the imports used: a small part of the standard library's tree.
    let stdlib = Path::new("/usr/lib/python3.11");
    if stdlib.is_dir() {
        let traced = image.bytes_under("/usr/lib/python3.11");
        let whole = tree_bytes(stdlib);
        assert!(traced * 5 < whole, "traced {traced} of {whole} bytes");
    }
}

#[test]
fn perl_traced_once_runs_other_code_with_its_core_modules() {
    let image = TracedImage::build(
        &[
            "--bins",
            "perl",
            "--trace",
            "perl -MPOSIX -e 'print floor(2.5)'",
        ],
        |_| {},
    );
    let out = image.stdout_both_ways(
        &[
            "perl",
            "-MPOSIX",
            "-e",
            "print strftime('%Y', gmtime(86400*366)), ' ', ceil(1.2), qq(\\n)",
        ],
        &[],
    );
    assert_eq!(out, "1971 2\n");
}

#[test]
fn a_time_zone_traced_once_gives_the_right_local_time() {
    let image = TracedImage::build(
        &["--bins", "date", "--trace", "TZ=America/New_York date"],
        |_| {},
    );
    // Winter and summer: the zone file, not a fixed offset.
    let tz = [("TZ", "America/New_York")];
    let winter = image.stdout_both_ways(&["date", "-d", "@0", "+%Z %z"], &tz);
    let summer = image.stdout_both_ways(&["date", "-d", "@15552000", "+%Z %z"], &tz);
    assert_eq!(
        (winter.as_str(), summer.as_str()),
        ("EST -0500\n", "EDT -0400\n")
    );
}

#[test]
fn the_jdk_traced_once_runs_another_class() {
    let Ok(javac) = which("javac") else {
        panic!("javac not found; .ci/test-deps installs openjdk-17-jdk-headless");
    };
    let image = TracedImage::build(
        &[
            "--bins",
            "java",
            "--trace",
            "java -cp classes Hello",
            "--add",
            "classes/Other.class:/app/Other.class",
        ],
        |dir| {
            let classes = dir.join("classes");
            std::fs::create_dir(&classes).unwrap();
            std::fs::write(classes.join("Hello.java"), "public class Hello { public static void main(String[] a) { System.out.println(\"hello\"); } }\n").unwrap();
            std::fs::write(classes.join("Other.java"), "public class Other { public static void main(String[] a) { System.out.println(String.join(\",\", java.util.List.of(\"x\", \"y\"))); } }\n").unwrap();
            let out = std::process::Command::new(javac)
                .args(["Hello.java", "Other.java"])
                .current_dir(&classes)
                .output()
                .unwrap();
            assert!(out.status.success(), "javac: {}", describe(&out));
        },
    );
    assert_eq!(
        image.stdout_both_ways(&["java", "-cp", "/app", "Other"], &[]),
        "x,y\n"
    );
}

fn which(program: &str) -> Result<PathBuf, ()> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn programs_run_by_programs_are_traced_tar_gzip_a_pipeline_and_make() {
    let image = TracedImage::build(
        &[
            "--bins",
            "sh,make",
            "--trace",
            "tar czf /tmp/a.tgz Makefile && tar tzf /tmp/a.tgz",
            "--trace",
            "printf 'b\\na\\n' | sort | head -n 1 | tr a-z A-Z",
            "--trace",
            "make -f Makefile X=one",
            "--add",
            "Makefile:/src/Makefile",
        ],
        |dir| {
            std::fs::write(
                dir.join("Makefile"),
                "all:\n\techo built $(X) | tr a-z A-Z\n",
            )
            .unwrap();
        },
    );
    // gzip ran only because tar ran it.
    let gzip = image.reason(&real("/bin/gzip")).expect("gzip in the image");
    assert!(gzip.starts_with("traced by tar czf"), "{gzip}");
    let tar = "cd /tmp && echo hi > f && tar czf f.tgz f && tar xzOf f.tgz f";
    assert_eq!(image.stdout_both_ways(&["sh", "-c", tar], &[]), "hi\n");
    let pipeline = "printf 'z\\ny\\nx\\n' | sort | head -n 2 | tr a-z A-Z";
    assert_eq!(
        image.stdout_both_ways(&["sh", "-c", pipeline], &[]),
        "X\nY\n"
    );
    let make = image.stdout_both_ways(&["make", "-s", "-C", "/src", "X=two"], &[]);
    assert_eq!(make, "BUILT TWO\n");
}

#[test]
fn a_probe_that_writes_under_root_and_tmp_leaves_the_host_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "kept").unwrap();
    let marker = format!("mkroot-trace-marker-{}", std::process::id());
    let probe = format!(
        "echo x > /{marker} && echo y > /tmp/{marker} && echo z >> {v} && rm {v} && cat /{marker}",
        v = victim.display()
    );
    let out = run_mkroot(
        &[
            "-q",
            "--bins",
            "sh",
            "--trace",
            &probe,
            "--dry-run",
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!Path::new(&format!("/{marker}")).exists());
    assert!(!Path::new(&format!("/tmp/{marker}")).exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "kept");
    // What the probe made is not the host's, so not the image's either.
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = plan["files"].as_array().unwrap();
    assert!(files
        .iter()
        .all(|f| !f["path"].as_str().unwrap().contains(&marker)));
    // The control: the same writes outside the sandbox do reach the host.
    let control = std::process::Command::new("sh")
        .args(["-c", &format!("echo z >> {}", victim.display())])
        .status()
        .unwrap();
    assert!(control.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keptz\n");
}

#[test]
fn two_traced_builds_give_identical_bytes() {
    let args = [
        "--bins",
        "sh",
        "--trace",
        "awk 1 /etc/hostname >/dev/null; TZ=Europe/Paris date >/dev/null",
    ];
    let first = TracedImage::build(&args, |_| {});
    let second = TracedImage::build(&args, |_| {});
    assert_eq!(sha256(&first.tarball), sha256(&second.tarball));
    // The awk chain kept whole: each link as a link.
    let awk = std::fs::symlink_metadata(first.root.join("usr/bin/awk")).unwrap();
    assert!(awk.file_type().is_symlink());
    assert!(first
        .reason("/usr/bin/awk")
        .unwrap()
        .starts_with("traced by awk"));
    let _keep = (&first.dir, &second.dir);
}

#[test]
fn excluded_paths_and_host_secrets_stay_out() {
    let probe = "cat /etc/shadow /etc/hostname /etc/os-release >/dev/null";
    let out = run_mkroot(
        &[
            "--bins",
            "sh",
            "--trace",
            probe,
            "--trace-exclude",
            "/etc/host*",
            "--dry-run",
            "--json",
        ],
        Path::new("/"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = (plan["files"].as_array().unwrap().iter())
        .filter(|f| f["reason"].as_str().unwrap().starts_with("traced by"))
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(!paths.contains(&"/etc/shadow"), "{paths:?}");
    assert!(!paths.contains(&"/etc/hostname"), "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("os-release")), "{paths:?}");
}

#[test]
fn a_recipes_probes_run_in_its_directory_with_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.txt"), "from the recipe's directory\n").unwrap();
    std::fs::write(
        dir.path().join("image.toml"),
        "programs = [\"cat\"]\ntrace = [\"cat data.txt\"]\n[tracing]\ntimeout = 30\nexclude = [\"/usr/share/locale/**\"]\n",
    )
    .unwrap();
    // Run from elsewhere: the probe still finds data.txt.
    let out = run_mkroot(
        &[
            "-f",
            dir.path().join("image.toml").to_str().unwrap(),
            "--dry-run",
            "--json",
        ],
        Path::new("/"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let plan = text(&out.stdout);
    let data = std::fs::canonicalize(dir.path().join("data.txt")).unwrap();
    assert!(plan.contains(&format!("\"{}\"", data.display())), "{plan}");
}

/// One line on stderr, a non-zero exit, and no image written.
fn refused(args: &[&str], expected: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("img.tgz");
    let mut all = args.to_vec();
    all.extend(["-o", out_path.to_str().unwrap()]);
    let out = run_mkroot(&all, dir.path());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for words in expected {
        assert!(stderr.contains(words), "{words:?} not in {stderr}");
    }
    assert!(!out_path.exists(), "{args:?} left {}", out_path.display());
    out
}

#[test]
fn bad_probes_and_trace_flags_are_refused_in_one_line() {
    refused(
        &["--bins", "sh", "--trace", "echo oops >&2; exit 3"],
        &[
            "the probe `echo oops >&2; exit 3` exited with status 3",
            "(oops)",
            "--trace-allow-fail",
        ],
    );
    refused(
        &["--bins", "sh", "--trace", "no-such-program-mkroot"],
        &["names a program that does not exist"],
    );
    refused(
        &["--bins", "sh", "--trace", "   "],
        &["--trace: an empty command"],
    );
    refused(
        &["--bins", "sh", "--trace", "true", "--trace-timeout", "soon"],
        &["--trace-timeout \"soon\""],
    );
    refused(
        &["--bins", "sh", "--trace", "true", "--sysroot", "/usr"],
        &["--sysroot"],
    );
    refused(
        &["--bins", "sh", "--trace", "true", "--trace-exclude", "/a/["],
        &["/a/["],
    );
    refused(
        &["--bins", "sh", "--trace", "true", "--trace-net", "wifi"],
        &["wifi"],
    );
}

#[test]
fn a_probe_past_its_time_limit_is_killed_in_one_line() {
    let start = std::time::Instant::now();
    refused(
        &[
            "--bins",
            "sh",
            "--trace",
            "sleep 30",
            "--trace-timeout",
            "1",
        ],
        &["the probe `sleep 30` was killed at its time limit of 1 s"],
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_failing_probe_kept_with_allow_fail_adds_what_it_used_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_mkroot(
        &[
            "--bins",
            "sh",
            "--trace",
            "cat /etc/os-release >/dev/null; exit 4",
            "--trace-allow-fail",
            "--dry-run",
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "warning: the probe `cat /etc/os-release >/dev/null; exit 4` exited with status 4"
        ),
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("os-release"));
}

#[test]
fn an_ordinary_user_traces_in_a_user_namespace_and_the_host_stays_unchanged() {
    // A copy of mkroot that user can reach, and a directory it may write.
    let bin = tempfile::tempdir().unwrap();
    let mkroot = bin.path().join("mkroot");
    std::fs::copy(mkroot_e2e::builder::mkroot(), &mkroot).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for open in [bin.path(), dir.path()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(open, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let marker = format!("/etc/mkroot-rootless-{}", std::process::id());
    let probe = format!("echo x > {marker} && cat {marker} >/dev/null && TZ=Asia/Tokyo date");
    let image = dir.path().join("tz.tgz");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&mkroot)
        .args(["-q", "--bins", "date", "--trace", &probe, "-o"])
        .arg(&image)
        .current_dir(dir.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(out.status.success(), "as nobody: {}", describe(&out));
    assert!(
        !Path::new(&marker).exists(),
        "the probe wrote {marker} on the host"
    );
    let run = launch([
        image.to_str().unwrap(),
        "-e",
        "TZ=Asia/Tokyo",
        "--",
        "date",
        "-d",
        "@0",
        "+%Z",
    ]);
    assert_eq!(text(&run.stdout), "JST\n", "{}", describe(&run));
}

/// The PIDs of processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(marker))
        })
        .collect()
}

fn within(limit: std::time::Duration, done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    done()
}

#[test]
fn sigterm_while_a_probe_runs_ends_mkroot_and_every_probe_process() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("mkroot-term-{}", std::process::id());
    let probe = format!("sleep 300; echo {marker}");
    let mut mkroot = std::process::Command::new(mkroot_e2e::builder::mkroot())
        .args(["--bins", "sh", "--trace", &probe, "-o", "img.tgz"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The probe's shell carries the marker in its command line (mkroot and its
    // supervisor do too).
    let shell_of_probe = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|l| l.starts_with(b"/bin/sh\0-c"))
    };
    let started = within(std::time::Duration::from_secs(20), || {
        processes_with(&marker).iter().any(shell_of_probe)
    });
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(mkroot.id() as libc::pid_t, libc::SIGTERM) };
    let status = mkroot.wait().unwrap();
    assert!(started, "the probe never started");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.code().or(status.signal().map(|s| 128 + s)),
        Some(143)
    );
    assert!(
        within(std::time::Duration::from_secs(5), || processes_with(
            &marker
        )
        .is_empty()),
        "left running: {:?}",
        processes_with(&marker)
    );
    assert!(!dir.path().join("img.tgz").exists());
}

#[test]
fn an_interpreter_without_its_standard_library_is_warned_about_unless_traced_or_added() {
    let warned = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("--dry-run");
        let out = run_mkroot(&all, Path::new("/"));
        assert!(out.status.success(), "{}", describe(&out));
        text(&out.stderr)
            .lines()
            .find(|l| l.contains("has no standard library"))
            .map(str::to_string)
    };
    let line = warned(&["--bins", "/usr/bin/python3"]).expect("a warning");
    let start = "mkroot: warning: /usr/bin/python3 has no standard library";
    assert!(line.starts_with(start), "{line}");
    assert!(
        line.contains("--trace") && line.contains("--add /usr/lib/python3"),
        "{line}"
    );
    assert_eq!(
        warned(&[
            "--bins",
            "/usr/bin/python3",
            "--trace",
            "/usr/bin/python3 -c 1"
        ]),
        None
    );
    assert_eq!(
        warned(&["--bins", "perl", "--trace", "perl -Mstrict -e 1"]),
        None
    );
    assert!(warned(&["--bins", "perl"]).is_some());
}

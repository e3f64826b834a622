//! End to end: the real `mkroot` builds images from this machine's programs, and the
//! programs run in them (new mount and pid namespaces, chroot, /proc mounted inside).
//! Run as root (CI does): chroot and unshare need it.

use mkroot_e2e::builder::{
    build, compile_c, run_in_image, run_mkroot, sha256, stdout_in_image, unpack,
};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The plan `mkroot ARGS --dry-run --json` prints in `cwd`; fails the test with mkroot's
/// stderr unless it succeeds.
fn dry_run_plan(args: &[&str], cwd: &Path) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--dry-run", "--json"]);
    let out = run_mkroot(&all, cwd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Builds the tarball `dir/ARCHIVE` with mkroot `args` (plus `-o`) and unpacks it, as a
/// user would, into `dir/ROOT`; the unpacked root.
fn build_and_unpack(dir: &Path, args: &[&str], archive: &str, root: &str) -> PathBuf {
    let archive = dir.join(archive);
    build(&[args, &["-o", path_str(&archive)]].concat(), dir);
    let root = dir.join(root);
    unpack(&archive, &root);
    root
}

/// The manifest an image directory carries (`.mkroot/manifest.json`).
fn image_manifest(image: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(image.join(".mkroot/manifest.json")).unwrap()).unwrap()
}

#[test]
fn bash_ps_top_id_whoami_run_with_names_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "-q",
        "--bins",
        "bash,ps,top,id,whoami",
        "--user",
        "mkroot-e2e-user",
    ];
    let root = build_and_unpack(dir.path(), &args, "img.tgz", "root");

    let none: &[(&str, &str)] = &[];
    assert_eq!(
        stdout_in_image(&root, &["bash", "-c", "echo ok"], none),
        "ok\n"
    );
    assert_eq!(
        stdout_in_image(&root, &["bash", "-c", "echo ~root"], none),
        "/root\n"
    );
    let id = stdout_in_image(&root, &["id"], none);
    assert!(
        id.starts_with("uid=0(root) gid=0(root)"),
        "id printed {id:?}"
    );
    assert_eq!(stdout_in_image(&root, &["whoami"], none), "root\n");
    let user = stdout_in_image(&root, &["id", "mkroot-e2e-user"], none);
    assert!(
        user.starts_with("uid=1000(mkroot-e2e-user) gid=1000(mkroot-e2e-user)"),
        "{user}"
    );
    let nobody = stdout_in_image(&root, &["id", "-un", "65534"], none);
    assert_eq!(nobody, "nobody\n");
    let ps = stdout_in_image(&root, &["ps", "-eo", "user,pid,comm"], none);
    let own_line = ps.lines().find(|l| l.ends_with(" ps")).unwrap_or_default();
    assert!(own_line.starts_with("root "), "ps printed {ps:?}");
    // With and without a terminal type: top reads terminfo for $TERM when it is set.
    for env in [
        &[][..],
        &[("TERM", "xterm-256color")][..],
        &[("TERM", "linux")][..],
    ] {
        let top = stdout_in_image(&root, &["top", "-b", "-n1"], env);
        assert!(
            top.contains("PID") && top.contains("COMMAND"),
            "top printed {top:?}"
        );
        assert!(
            top.lines()
                .any(|l| l.contains(" root ") && l.ends_with("top")),
            "top printed {top:?}"
        );
    }
}

const THREADS_C: &str = r#"
#include <pthread.h>
#include <stdio.h>

static void *leave_early(void *arg) {
    (void)arg;
    /* pthread_exit unwinds the thread's stack: glibc dlopens libgcc_s.so.1 for it. */
    pthread_exit((void *)42);
    return NULL;
}

int main(void) {
    pthread_t thread;
    void *result = NULL;
    if (pthread_create(&thread, NULL, leave_early, NULL) != 0) return 2;
    if (pthread_join(thread, &result) != 0) return 3;
    printf("thread exited with %ld\n", (long)result);
    return 0;
}
"#;

#[test]
fn a_threaded_program_that_calls_pthread_exit_runs() {
    let dir = tempfile::tempdir().unwrap();
    let program = compile_c(dir.path(), "threads", THREADS_C, &["-pthread"]);
    let root = build_and_unpack(
        dir.path(),
        &["-q", "--bins", path_str(&program)],
        "threads.tar",
        "root",
    );
    let out = stdout_in_image(&root, &[path_str(&program)], &[]);
    assert_eq!(out, "thread exited with 42\n");

    // Without libgcc_s the same program dies: the extra is what makes it work.
    let bare_root = build_and_unpack(
        dir.path(),
        &["-q", "--no-libgcc", "--bins", path_str(&program)],
        "bare.tar",
        "bare",
    );
    let out = run_in_image(&bare_root, &[path_str(&program)], &[]);
    assert!(!out.status.success(), "ran without libgcc_s: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("libgcc_s"));
}

#[test]
fn two_builds_apart_in_time_and_place_give_identical_bytes() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = first.path().join("a.tgz");
    build(
        &["-q", "--bins", "bash,ps,top,id,whoami", "-o", path_str(&a)],
        first.path(),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A different working directory and a relative output name.
    build(
        &["-q", "--bins", "bash,ps,top,id,whoami", "-o", "b.tgz"],
        second.path(),
    );
    let b = second.path().join("b.tgz");
    assert_eq!(sha256(&a), sha256(&b));

    // The .tar output is the same archive, uncompressed.
    let tar = second.path().join("c.tar");
    build(
        &[
            "-q",
            "--bins",
            "bash,ps,top,id,whoami",
            "-o",
            path_str(&tar),
        ],
        first.path(),
    );
    let gunzipped = Command::new("gzip").arg("-dc").arg(&a).output().unwrap();
    assert!(gunzipped.status.success());
    assert_eq!(gunzipped.stdout, std::fs::read(&tar).unwrap());
}

#[test]
fn archive_entries_are_root_owned_sorted_and_stamped_with_epoch_zero() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("img.tar");
    // Not quiet, stderr not a terminal: one summary line, no progress bar drawing.
    let out = run_mkroot(&["--bins", "bash", "-o", path_str(&image)], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("mkroot: wrote ") && !stderr.contains('\r'),
        "{stderr:?}"
    );
    let listing = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&image)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    let mut names = Vec::new();
    for line in text.lines() {
        assert!(line.contains(" 0/0 "), "not root-owned: {line}");
        assert!(line.contains("1970-01-01 00:00:00"), "mtime not 0: {line}");
        let name = line
            .split_whitespace()
            .nth(5)
            .unwrap()
            .trim_end_matches('/');
        names.push(name.to_string());
    }
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    assert_eq!(names, sorted);
    for expected in [
        "bin",
        "lib",
        "lib64",
        "usr/bin/bash",
        "tmp",
        "proc",
        ".mkroot/manifest.json",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(text
        .lines()
        .any(|l| l.starts_with("drwxrwxrwt") && l.ends_with(" tmp/")));
    assert!(text
        .lines()
        .any(|l| l.starts_with("lrwxrwxrwx") && l.contains(" lib -> usr/lib")));
}

#[test]
fn directory_output_keeps_modes_links_and_hardlinks_of_added_trees() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("extra");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/data"), b"payload\n").unwrap();
    std::fs::hard_link(tree.join("sub/data"), tree.join("sub/data-again")).unwrap();
    std::os::unix::fs::symlink("sub/data", tree.join("link")).unwrap();
    // An ELF file in the added tree brings its libraries.
    let tool = compile_c(
        &tree,
        "tool",
        "#include <stdio.h>\nint main(void){puts(\"tool ok\");return 0;}\n",
        &[],
    );
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out_dir = dir.path().join("image/");
    let add = format!("{}:/opt/extra", tree.display());
    build(
        &[
            "-q",
            "--bins",
            "bash",
            "--add",
            &add,
            "-o",
            path_str(&out_dir),
        ],
        dir.path(),
    );

    let data = std::fs::metadata(out_dir.join("opt/extra/sub/data")).unwrap();
    let again = std::fs::metadata(out_dir.join("opt/extra/sub/data-again")).unwrap();
    assert_eq!(
        (data.dev(), data.ino()),
        (again.dev(), again.ino()),
        "hard link not kept"
    );
    assert_eq!(
        std::fs::read_link(out_dir.join("opt/extra/link")).unwrap(),
        Path::new("sub/data")
    );
    let tool_meta = std::fs::metadata(out_dir.join("opt/extra/tool")).unwrap();
    assert_eq!(tool_meta.mode() & 0o7777, 0o4755, "setuid bit lost");
    assert_eq!((tool_meta.uid(), tool_meta.gid()), (0, 0));
    assert_eq!(
        std::fs::read_link(out_dir.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        std::fs::metadata(out_dir.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        stdout_in_image(&out_dir, &["/opt/extra/tool"], &[]),
        "tool ok\n"
    );

    // The manifest lists every file with its sha256 and reason, and the default cmd.
    let manifest = image_manifest(&out_dir);
    assert_eq!(manifest["cmd"], serde_json::json!(["/usr/bin/bash", "-l"]));
    let files = manifest["files"].as_array().unwrap();
    let bash = files.iter().find(|f| f["path"] == "/usr/bin/bash").unwrap();
    assert_eq!(
        bash["sha256"].as_str().unwrap(),
        sha256(Path::new("/usr/bin/bash"))
    );
    assert_eq!(bash["reason"], "program");
    let added = files
        .iter()
        .find(|f| f["path"] == "/opt/extra/sub/data")
        .unwrap();
    assert!(added["reason"].as_str().unwrap().contains("--add"));
}

#[test]
fn dry_run_json_lists_programs_in_load_order_and_files_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dry_run_plan(&["--bins", "bash,top"], dir.path());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "dry run wrote files"
    );
    let programs = plan["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 2);
    assert_eq!(programs[0]["path"], "/usr/bin/bash");
    assert_eq!(programs[0]["interpreter"], "/lib64/ld-linux-x86-64.so.2");
    let names: Vec<&str> = programs[0]["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert!(l["path"].as_str().unwrap().starts_with('/'));
            l["name"].as_str().unwrap()
        })
        .collect();
    // bash: DT_NEEDED libtinfo then libc, breadth-first.
    assert_eq!(names, ["libtinfo.so.6", "libc.so.6"]);
    let top_libs = programs[1]["libraries"].as_array().unwrap();
    assert!(top_libs.iter().any(|l| l["name"] == "libproc2.so.0"));
    let files = plan["files"].as_array().unwrap();
    for file in files {
        assert!(file["path"].as_str().unwrap().starts_with('/'));
        assert!(!file["reason"].as_str().unwrap().is_empty());
        assert!(file.get("source").is_some());
    }
    let bash = files.iter().find(|f| f["path"] == "/usr/bin/bash").unwrap();
    assert_eq!(bash["source"], "/usr/bin/bash");
    assert!(files
        .iter()
        .any(|f| f["path"] == "/etc/passwd" && f["source"].is_null()));
    assert!(files
        .iter()
        .any(|f| f["path"].as_str().unwrap().contains("/terminfo/x/xterm")));

    let explain = run_mkroot(&["--bins", "bash", "--explain"], dir.path());
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.status.success());
    assert!(
        text.contains("libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6"),
        "{text}"
    );
}

/// Runs mkroot expecting failure: a non-zero exit and exactly one line on stderr,
/// starting with `mkroot: `, never a panic. Returns that line.
fn one_line_error(args: &[&str], cwd: &Path) -> String {
    let out = run_mkroot(args, cwd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mkroot {args:?} succeeded");
    assert!(
        !stderr.contains("panicked"),
        "mkroot {args:?} panicked: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "mkroot {args:?} printed {stderr:?}"
    );
    assert!(stderr.starts_with("mkroot: "), "{stderr}");
    stderr
}

/// A 64-byte ELF64 x86-64 header with the given program and section header fields.
fn elf_header(phoff: u64, phnum: u16, shoff: u64, shnum: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    h.resize(16, 0);
    h.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    h.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes()); // entry
    h.extend_from_slice(&phoff.to_le_bytes());
    h.extend_from_slice(&shoff.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // flags
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&56u16.to_le_bytes());
    h.extend_from_slice(&phnum.to_le_bytes());
    h.extend_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(&shnum.to_le_bytes());
    h.extend_from_slice(&(shnum.saturating_sub(1)).to_le_bytes());
    h
}

/// One program header entry.
fn program_header(kind: u32, offset: u64, size: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&kind.to_le_bytes());
    p.extend_from_slice(&4u32.to_le_bytes());
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&offset.to_le_bytes()); // vaddr
    p.extend_from_slice(&offset.to_le_bytes()); // paddr
    p.extend_from_slice(&size.to_le_bytes());
    p.extend_from_slice(&size.to_le_bytes());
    p.extend_from_slice(&8u64.to_le_bytes());
    p
}

fn write_executable(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn bad_input_gets_one_line_errors_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.tgz");
    let out = path_str(&out);

    let line = one_line_error(&["--bins", "no-such-program-mkroot-test", "-o", out], d);
    assert!(line.contains("no-such-program-mkroot-test"), "{line}");
    let line = one_line_error(&["--bins", "/nonexistent/prog", "-o", out], d);
    assert!(line.contains("/nonexistent/prog"), "{line}");

    let data = write_executable(d, "data", b"just some text, no #! and no ELF\n");
    let line = one_line_error(&["--bins", &data, "-o", out], d);
    assert!(line.contains("not an ELF"), "{line}");

    let orphan = write_executable(d, "orphan.sh", b"#!/nonexistent/interpreter\necho\n");
    let line = one_line_error(&["--bins", &orphan, "-o", out], d);
    assert!(
        line.contains("orphan.sh") && line.contains("/nonexistent/interpreter"),
        "{line}"
    );

    let full = std::fs::read("/usr/bin/true").unwrap();
    for (name, len) in [
        ("trunc-ident", 10),
        ("trunc-header", 40),
        ("trunc-body", 300),
    ] {
        let truncated = write_executable(d, name, &full[..len]);
        let line = one_line_error(&["--bins", &truncated, "-o", out], d);
        assert!(line.contains(name), "{line}");
    }

    let mut hostile = Vec::new();
    // Program headers far past the end, with a huge count.
    hostile.push(elf_header(u64::MAX - 100, u16::MAX, u64::MAX / 2, u16::MAX));
    // Program headers overlapping the end of the file.
    hostile.push(elf_header(60, 1000, 0, 0));
    // A PT_DYNAMIC segment that points far outside the file.
    let mut dynamic = elf_header(64, 1, 0, 0);
    dynamic.extend(program_header(2, 1 << 40, 1 << 40));
    hostile.push(dynamic);
    // A PT_INTERP whose path runs past the end.
    let mut interp = elf_header(64, 1, 0, 0);
    interp.extend(program_header(3, 120, 1 << 30));
    interp.extend_from_slice(b"/lib64/ld");
    hostile.push(interp);
    // A PT_DYNAMIC inside the file whose entries point everywhere.
    let mut wild = elf_header(64, 1, 0, 0);
    wild.extend(program_header(2, 120, 64));
    for (tag, value) in [
        (5u64, u64::MAX - 8),
        (10, u64::MAX),
        (1, 0xffff_ffff),
        (0, 0),
    ] {
        wild.extend_from_slice(&tag.to_le_bytes());
        wild.extend_from_slice(&value.to_le_bytes());
    }
    hostile.push(wild);
    for (i, bytes) in hostile.iter().enumerate() {
        let name = format!("hostile-{i}");
        let path = write_executable(d, &name, bytes);
        let line = one_line_error(&["--bins", &path, "-o", out], d);
        assert!(line.contains(&name), "{line}");
    }

    let line = one_line_error(&["--bins", "bash", "--frobnicate", "-o", out], d);
    assert!(line.contains("--frobnicate"), "{line}");
    let line = one_line_error(&["--bins", "bash"], d);
    assert!(line.contains("--output"), "{line}");
    let line = one_line_error(&["--bins", "bash", "-o", "img.zip"], d);
    assert!(line.contains("img.zip"), "{line}");
    let line = one_line_error(&["--bins", "bash", "-o", "/nonexistent-dir/x.tgz"], d);
    assert!(line.contains("/nonexistent-dir/x.tgz"), "{line}");
    let line = one_line_error(&["--bins", "bash", "-o", "/proc/mkroot-test.tar"], d);
    assert!(line.contains("/proc/mkroot-test.tar"), "{line}");
    assert!(!Path::new(out).exists());
}

#[test]
fn a_missing_library_names_program_and_library_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    compile_c(
        d,
        "libgone.so",
        "int gone(void){return 7;}\n",
        &["-shared", "-fPIC"],
    );
    let program = compile_c(
        d,
        "needs-gone",
        "int gone(void);\nint main(void){return gone() == 7 ? 0 : 1;}\n",
        &["-L", path_str(d), "-l:libgone.so"],
    );
    std::fs::remove_file(d.join("libgone.so")).unwrap();
    let out = d.join("out.tar");
    let line = one_line_error(&["--bins", path_str(&program), "-o", path_str(&out)], d);
    assert!(
        line.contains("needs-gone") && line.contains("libgone.so"),
        "{line}"
    );
    assert!(line.contains("--allow-missing"), "{line}");

    let allowed = run_mkroot(
        &[
            "--allow-missing",
            "--bins",
            path_str(&program),
            "-o",
            path_str(&out),
        ],
        d,
    );
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(String::from_utf8_lossy(&allowed.stderr).contains("libgone.so"));
    assert!(out.is_file());
    // The plan names it too, with no path, where the program's libraries are listed.
    let plan = dry_run_plan(&["--allow-missing", "--bins", path_str(&program)], d);
    let libraries = plan["programs"][0]["libraries"].as_array().unwrap();
    let gone = libraries.iter().find(|l| l["name"] == "libgone.so");
    assert_eq!(
        gone.map(|l| &l["path"]),
        Some(&serde_json::Value::Null),
        "{libraries:?}"
    );
}

#[test]
fn the_json_plan_carries_sizes_that_add_up_to_the_written_image() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dry_run_plan(&["--bins", "bash"], dir.path());
    let files = plan["files"].as_array().unwrap();
    let total: u64 = files.iter().map(|f| f["size"].as_u64().unwrap()).sum();
    let summary = plan["summary"].as_array().unwrap();
    let by_reason: u64 = summary.iter().map(|c| c["bytes"].as_u64().unwrap()).sum();
    assert_eq!(total, by_reason);
    // Largest first.
    let bytes: Vec<u64> = summary
        .iter()
        .map(|c| c["bytes"].as_u64().unwrap())
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
    let out = dir.path().join("img.tgz");
    let written = run_mkroot(&["--bins", "bash", "-o", path_str(&out)], dir.path());
    let stderr = String::from_utf8_lossy(&written.stderr);
    // The manifest is the one file the plan does not list.
    let counted: u64 = stderr
        .split(" bytes of files")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        counted >= total && counted - total < 64 * 1024,
        "{counted} vs {total}"
    );
    let explained = run_mkroot(&["--bins", "bash", "--explain", "--dry-run"], dir.path());
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(text.contains("by reason, largest first:"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("libraries")),
        "{text}"
    );
}

#[test]
fn scripts_bring_their_interpreters_env_included() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let script = write_executable(
        d,
        "hello.sh",
        b"#!/usr/bin/env bash\necho \"hello from $BASH_VERSION\"\n",
    );
    let image = d.join("img/");
    build(
        &[
            "-q",
            "--bins",
            &script,
            "--cmd",
            &format!("{script} --flag"),
            "-o",
            path_str(&image),
        ],
        d,
    );
    let out = stdout_in_image(&image, &[&script], &[]);
    assert!(out.starts_with("hello from 5"), "{out}");
    let manifest = image_manifest(&image);
    assert_eq!(manifest["cmd"], serde_json::json!([script, "--flag"]));
}

/// Every file of a `--dry-run --json` plan that is copied from somewhere comes from
/// under `root`.
#[track_caller]
fn assert_sources_inside(plan: &serde_json::Value, root: &Path) {
    let root = path_str(root).trim_end_matches('/');
    for source in plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["source"].as_str())
    {
        assert!(source.starts_with(root), "{source} outside {root}");
    }
}

#[test]
fn a_sysroot_is_resolved_on_its_own_terms() {
    // An image is itself a root without a loader cache: resolving against it must find
    // the same files there, through its default directories.
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot/");
    build(
        &["-q", "--bins", "bash,ps", "-o", path_str(&sysroot)],
        dir.path(),
    );
    let plan = dry_run_plan(
        &["--sysroot", path_str(&sysroot), "--bins", "bash,ps"],
        dir.path(),
    );
    assert_sources_inside(&plan, &sysroot);
    let libs = plan["programs"][1]["libraries"].as_array().unwrap();
    assert!(libs.iter().any(|l| l["name"] == "libsystemd.so.0"));

    let root = build_and_unpack(
        dir.path(),
        &["-q", "--sysroot", path_str(&sysroot), "--bins", "bash,ps"],
        "again.tgz",
        "again",
    );
    assert_eq!(
        sha256(&root.join("usr/bin/bash")),
        sha256(Path::new("/usr/bin/bash"))
    );
    assert_eq!(
        stdout_in_image(&root, &["bash", "-c", "echo ok"], &[]),
        "ok\n"
    );
}

#[test]
fn a_sysroots_absolute_symlinks_are_followed_inside_it_not_on_the_host() {
    // Debian's alternatives: /usr/bin/awk -> /etc/alternatives/awk -> the chosen awk, all
    // absolute. In a sysroot they lead to the sysroot's files: here its awk is a script
    // while the host's /etc/alternatives/awk is mawk, and its `tool` is one the host
    // does not have at all.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = d.join("base/");
    build(&["-q", "--bins", "bash", "-o", path_str(&base)], d);
    let alternatives = base.join("etc/alternatives");
    std::fs::create_dir_all(&alternatives).unwrap();
    for (name, says) in [("awk", "the sysroot's awk"), ("tool", "the sysroot's tool")] {
        let script = format!("#!/bin/bash\necho \"{says}\"\n");
        write_executable(
            &base.join("usr/bin"),
            &format!("{name}-real"),
            script.as_bytes(),
        );
        symlink(format!("/usr/bin/{name}-real"), alternatives.join(name)).unwrap();
        symlink(
            format!("/etc/alternatives/{name}"),
            base.join(format!("usr/bin/{name}")),
        )
        .unwrap();
    }
    // A script whose interpreter is reached through those links.
    write_executable(&base.join("usr/bin"), "report", b"#!/usr/bin/awk -f\n");

    let args = [
        "-q",
        "--sysroot",
        path_str(&base),
        "--bins",
        "awk,tool,report",
    ];
    assert_sources_inside(&dry_run_plan(&args[1..], d), &base);
    let image = d.join("image/");
    build(&[&args[..], &["-o", path_str(&image)]].concat(), d);
    assert_eq!(
        stdout_in_image(&image, &["awk"], &[]),
        "the sysroot's awk\n"
    );
    assert_eq!(
        stdout_in_image(&image, &["tool"], &[]),
        "the sysroot's tool\n"
    );
    assert_eq!(
        stdout_in_image(&image, &["report"], &[]),
        "the sysroot's awk\n"
    );
}

#[test]
fn a_program_found_outside_the_images_path_is_warned_about() {
    // A pyenv shim or ~/.cargo/bin: found through this shell's PATH, in a directory the
    // image's PATH lacks, so its name alone runs nothing inside. Named by bare name on the
    // command line, or by a `#!/usr/bin/env NAME` script: both are warned about.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tools = d.join("tools");
    std::fs::create_dir(&tools).unwrap();
    for (name, text) in [
        ("mytool", "#!/bin/sh\necho tool\n"),
        ("myscript", "#!/usr/bin/env mytool\n"),
    ] {
        write_executable(&tools, name, text.as_bytes());
    }
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    let mkroot_with_path = |args: &[&str]| {
        Command::new(mkroot_e2e::builder::mkroot())
            .args(args)
            .current_dir(d)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = mkroot_with_path(&["--bins", "mytool,myscript,sh", "-o", "x.tgz"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    for name in ["mytool", "myscript"] {
        let found = format!("run it as {}/{name},", tools.display());
        assert!(warnings.iter().any(|w| w.contains(&found)), "{stderr}");
    }
    // sh is found in /usr/bin or /bin, on the image's PATH: no warning for it.
    assert!(
        !warnings.iter().any(|w| w.contains("sh was found")),
        "{stderr}"
    );
    // -q: quiet.
    let quiet = mkroot_with_path(&["-q", "--bins", "mytool", "-o", "y.tgz"]);
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
}

#[test]
fn libraries_found_only_through_the_loader_cache_get_an_image_cache() {
    // A root whose ld.so.conf adds /opt/extra/lib: a program there needs the cache.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = d.join("base/");
    build(&["-q", "--bins", "bash", "-o", path_str(&base)], d);
    let lib_dir = base.join("opt/extra/lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    compile_c(
        &lib_dir,
        "libextra.so",
        "int extra(void){return 5;}\n",
        &["-shared", "-fPIC", "-Wl,-soname,libextra.so"],
    );
    let program = compile_c(
        d,
        "useextra",
        "#include <stdio.h>\nint extra(void);\nint main(void){printf(\"extra %d\\n\", extra());return 0;}\n",
        &["-L", path_str(&lib_dir), "-lextra"],
    );
    std::fs::copy(&program, base.join("usr/bin/useextra")).unwrap();
    std::fs::write(base.join("etc/ld.so.conf"), "/opt/extra/lib\n").unwrap();
    let ldconfig = Command::new("ldconfig")
        .arg("-r")
        .arg(&base)
        .status()
        .unwrap();
    assert!(ldconfig.success());

    let image = d.join("image/");
    let args = [
        "-q",
        "--sysroot",
        path_str(&base),
        "--bins",
        "/usr/bin/useextra",
    ];
    build(&[&args[..], &["-o", path_str(&image)]].concat(), d);
    assert!(
        image.join("etc/ld.so.cache").is_file(),
        "no loader cache in the image"
    );
    assert_eq!(
        stdout_in_image(&image, &["/usr/bin/useextra"], &[]),
        "extra 5\n"
    );
    // The cache is what makes it work.
    std::fs::remove_file(image.join("etc/ld.so.cache")).unwrap();
    assert!(!run_in_image(&image, &["/usr/bin/useextra"], &[])
        .status
        .success());

    // Libraries in default directories need no cache.
    let plain = d.join("plain/");
    build(&["-q", "--bins", "bash", "-o", path_str(&plain)], d);
    assert!(!plain.join("etc/ld.so.cache").exists());
}

#[test]
fn nss_modules_named_by_nsswitch_conf_come_with_their_dependencies() {
    // A root whose nsswitch.conf asks for the `compat` service: libc dlopens
    // libnss_compat.so.2 for every user lookup, so the image needs it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = d.join("base/");
    let module = "/lib/x86_64-linux-gnu/libnss_compat.so.2";
    build(
        &["-q", "--bins", "id", "--add", module, "-o", path_str(&base)],
        d,
    );
    std::fs::write(
        base.join("etc/nsswitch.conf"),
        "passwd: compat systemd\ngroup: compat\nhosts: files dns\n",
    )
    .unwrap();

    let plan = dry_run_plan(&["--sysroot", path_str(&base), "--bins", "id"], d);
    let files = plan["files"].as_array().unwrap();
    let compat = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("/libnss_compat.so.2"))
        .expect("libnss_compat.so.2 in the plan");
    assert!(
        compat["reason"].as_str().unwrap().contains("NSS module"),
        "{compat}"
    );

    let image = d.join("image/");
    build(
        &[
            "-q",
            "--sysroot",
            path_str(&base),
            "--bins",
            "id",
            "-o",
            path_str(&image),
        ],
        d,
    );
    let conf = std::fs::read_to_string(image.join("etc/nsswitch.conf")).unwrap();
    assert!(
        conf.contains("passwd:") && conf.contains("compat") && !conf.contains("systemd"),
        "{conf}"
    );
    assert_eq!(stdout_in_image(&image, &["id", "-un"], &[]), "root\n");
    // The module is what answers: without it the name is not found.
    std::fs::remove_file(image.join(compat["path"].as_str().unwrap().trim_start_matches('/')))
        .unwrap();
    assert!(!run_in_image(&image, &["id", "-un"], &[]).status.success());

    let bare = d.join("bare/");
    build(
        &["-q", "--no-nss", "--bins", "id", "-o", path_str(&bare)],
        d,
    );
    assert!(!bare.join("etc/nsswitch.conf").exists() && !bare.join("etc/passwd").exists());
}

const ICONV_C: &str = r#"
#include <iconv.h>
#include <stdio.h>
#include <string.h>

/* Converts "héllo" from UTF-8 to argv[1]; prints how many bytes that took. */
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    iconv_t cd = iconv_open(argv[1], "UTF-8");
    if (cd == (iconv_t)-1) { perror("iconv_open"); return 1; }
    char in[] = "h\xc3\xa9llo", out[64];
    char *inp = in, *outp = out;
    size_t inleft = strlen(in), outleft = sizeof out;
    if (iconv(cd, &inp, &inleft, &outp, &outleft) == (size_t)-1) { perror("iconv"); return 1; }
    printf("%zu\n", sizeof out - outleft);
    return 0;
}
"#;

#[test]
fn programs_using_iconv_get_gconv_modules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let program = compile_c(d, "conv", ICONV_C, &[]);
    let run = |flags: &[&str], charset: &str| {
        let image = d.join(format!("img{}-{charset}/", flags.join("")));
        build(
            &[
                &["-q", "--bins", path_str(&program)],
                flags,
                &["-o", path_str(&image)],
            ]
            .concat(),
            d,
        );
        run_in_image(&image, &[path_str(&program), charset], &[])
    };
    // Detected: the Unicode modules. UTF-16 with a BOM: 2 + 5 * 2 bytes.
    let utf16 = run(&[], "UTF-16");
    assert!(utf16.status.success(), "{utf16:?}");
    assert_eq!(String::from_utf8_lossy(&utf16.stdout), "12\n");
    assert!(!run(&[], "ISO-8859-2").status.success());
    // --gconv: every module.
    let latin2 = run(&["--gconv"], "ISO-8859-2");
    assert!(latin2.status.success(), "{latin2:?}");
    assert_eq!(String::from_utf8_lossy(&latin2.stdout), "5\n");
    // --no-gconv: none; what glibc converts itself still works.
    assert!(!run(&["--no-gconv"], "UTF-16").status.success());
    assert!(run(&["--no-gconv"], "UTF-8").status.success());
}

/// Image paths are UTF-8 (tar names here, JSON in the manifest): an added file whose name,
/// or a symlink whose target, is not is refused by name rather than renamed on the way in.
#[test]
fn names_that_are_not_utf8_are_refused_not_mangled() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let temp = tempfile::tempdir().unwrap();
    /// Puts a file that is not UTF-8 where it matters into the tree.
    type Make = fn(&Path);
    let cases: [(&str, Make); 2] = [
        ("name", |tree| {
            std::fs::write(tree.join(OsStr::from_bytes(b"caf\xe9")), "x").unwrap()
        }),
        ("target", |tree| {
            std::os::unix::fs::symlink(OsStr::from_bytes(b"x\xff"), tree.join("link")).unwrap()
        }),
    ];
    for (what, make) in cases {
        let tree = temp.path().join(what);
        std::fs::create_dir(&tree).unwrap();
        make(&tree);
        let add = format!("{what}:/added");
        let err = one_line_error(
            &["-q", "--bins", "true", "--add", &add, "-o", "out.tgz"],
            temp.path(),
        );
        assert!(err.contains("is not UTF-8"), "{what}: {err}");
        assert!(err.contains(path_str(&tree)), "{what}: {err}");
        assert!(!temp.path().join("out.tgz").exists(), "{what}");
    }
}

/// curl in an image, against an HTTPS server (openssl s_server, self-signed) on the
/// container's own loopback: what curl says, and its exit status.
fn curl_against_a_self_signed_server(extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let image = dir.path().join("curl.tgz");
    let mut args = vec![
        "-q",
        "--bins",
        "sh,sleep,curl,openssl",
        "--add",
        "k.pem:/srv/k.pem",
    ];
    args.extend(["--add", "c.pem:/srv/c.pem", "-o", path_str(&image)]);
    args.extend(extra);
    build(&args, dir.path());
    let script = "(openssl s_server -accept 4433 -cert /srv/c.pem -key /srv/k.pem -quiet \
        </dev/null >/dev/null 2>&1 &) && sleep 1 && curl -sS https://127.0.0.1:4433/";
    let out = mkroot_e2e::launch::launch([path_str(&image), "--", "sh", "-c", script]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_program_linking_tls_gets_the_system_ca_bundle_and_verifies_with_it() {
    // With the bundle, curl verifies the server against it: a self-signed one fails
    // verification (60), after the handshake.
    let (status, stderr) = curl_against_a_self_signed_server(&[]);
    assert_eq!(status, Some(60), "{stderr}");
    assert!(stderr.contains("self-signed certificate"), "{stderr}");
    // The control: without it curl cannot even load a CA file (77).
    let (status, stderr) = curl_against_a_self_signed_server(&["--no-ca-certs"]);
    assert_eq!(status, Some(77), "{stderr}");
}

#[test]
fn the_ca_bundle_goes_only_to_images_of_programs_that_link_tls() {
    let dir = tempfile::tempdir().unwrap();
    let has_bundle = |args: &[&str]| {
        let plan = dry_run_plan(args, dir.path());
        (plan["files"].as_array().unwrap().iter())
            .any(|f| f["path"] == "/etc/ssl/certs/ca-certificates.crt")
    };
    assert!(has_bundle(&["--bins", "curl"]));
    assert!(!has_bundle(&["--bins", "curl", "--no-ca-certs"]));
    assert!(!has_bundle(&["--bins", "ls"]));
}

#[test]
fn an_output_in_a_missing_directory_names_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["x.tgz", "x.oci.tar"] {
        let out = d.join("no/such/dir").join(name);
        let line = one_line_error(&["--bins", "true", "-o", path_str(&out)], d);
        let missing = d.join("no/such/dir");
        assert!(
            line.contains(&format!(
                "the directory {} does not exist",
                missing.display()
            )),
            "{line}"
        );
        assert!(line.contains("mkdir -p"), "{line}");
        assert!(!d.join("no").exists(), "nothing is made");
    }
}

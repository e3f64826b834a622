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

/// `mkroot -f RECIPE --check IMAGE` in `dir`.
fn check(dir: &Path, recipe: &str, image: &str) -> Output {
    run_mkroot(&["-f", recipe, "--check", image], dir)
}

/// The one line `--check` prints for an image that differs (exit 1), which must name
/// each of `named`.
#[track_caller]
fn differs_in_one_line(out: &Output, named: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", stderr_of(out));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for name in named {
        assert!(stdout.contains(name), "{name:?} not in: {stdout}");
    }
}

/// Packs the directory `tree` into a gzip'd tarball with the system's tar, as a user
/// repacking an image would.
fn repack(tree: &Path, archive: &Path) {
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(archive)
        .arg("-C")
        .arg(tree)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success());
}

/// The image's manifest with the sha256 it records for `path` set to `sha256`: a
/// tamperer who keeps the claims in step with the files.
fn restate_manifest(tree: &Path, path: &str, sha256: &str) {
    let manifest_path = tree.join(".mkroot/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for file in manifest["files"].as_array_mut().unwrap() {
        if file["path"] == path {
            file["sha256"] = sha256.into();
        }
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

#[test]
fn check_judges_what_an_image_holds_not_what_it_claims() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    copy_recipes(dir);
    build(&["-f", "greeting.toml", "-q"], dir);
    let tree = dir.join("unpacked");
    mkroot_e2e::builder::unpack(&dir.join("greeting.tgz"), &tree);
    // Repacked as it was, the image still matches.
    repack(&tree, &dir.join("same.tgz"));
    let out = check(dir, "greeting.toml", "same.tgz");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    // Other bytes, the manifest left as it was...
    let greeting = tree.join("etc/greeting");
    std::fs::write(&greeting, "a tampered greeting\n").unwrap();
    repack(&tree, &dir.join("tampered.tgz"));
    differs_in_one_line(
        &check(dir, "greeting.toml", "tampered.tgz"),
        &["/etc/greeting", "content differs", "greeting.txt"],
    );
    // ...or made to say so.
    let sha = mkroot_e2e::builder::sha256(&greeting);
    restate_manifest(&tree, "/etc/greeting", &sha);
    repack(&tree, &dir.join("restated.tgz"));
    differs_in_one_line(
        &check(dir, "greeting.toml", "restated.tgz"),
        &["/etc/greeting", "content differs", "greeting.txt"],
    );
    // The same tree as a directory image.
    differs_in_one_line(
        &check(dir, "greeting.toml", "unpacked"),
        &["/etc/greeting", "content differs"],
    );

    // A symlink to a host file in its place, the manifest untouched.
    std::fs::remove_file(&greeting).unwrap();
    mkroot_e2e::builder::unpack(&dir.join("greeting.tgz"), &dir.join("fresh"));
    std::fs::copy(
        dir.join("fresh/.mkroot/manifest.json"),
        tree.join(".mkroot/manifest.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/shadow", &greeting).unwrap();
    repack(&tree, &dir.join("relinked.tgz"));
    differs_in_one_line(
        &check(dir, "greeting.toml", "relinked.tgz"),
        &["/etc/greeting", "a symlink"],
    );

    // The right bytes with a setuid bit.
    std::fs::remove_file(&greeting).unwrap();
    std::fs::copy(dir.join("greeting.txt"), &greeting).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&greeting, std::fs::Permissions::from_mode(0o4755)).unwrap();
    repack(&tree, &dir.join("setuid.tgz"));
    differs_in_one_line(
        &check(dir, "greeting.toml", "setuid.tgz"),
        &["/etc/greeting", "mode 4755"],
    );
}

/// `greeting.tgz` with a file of the user's as a first `.mkroot/manifest.json`.
fn shadowed_manifest(image: &Path, fake: &[u8]) -> Vec<u8> {
    let plain = mkroot_e2e::oci_build::gunzip_if_gzip(&std::fs::read(image).unwrap());
    let mut builder = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(&plain[..]);
    let mut first = true;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut header = entry.header().clone();
        if path == Path::new(".mkroot/manifest.json") && first {
            first = false;
            let mut fake_header = header.clone();
            fake_header.set_size(fake.len() as u64);
            fake_header.set_cksum();
            builder.append(&fake_header, fake).unwrap();
        }
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_users_file_cannot_stand_in_for_the_manifest() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    copy_recipes(dir);
    let fake = br#"{"version":1,"cmd":["/bin/sh","-c","echo the user's"],"env":[],"files":[]}"#;
    std::fs::write(dir.join("fake.json"), fake).unwrap();
    std::fs::create_dir_all(dir.join("tree/.mkroot")).unwrap();
    std::fs::write(dir.join("tree/.mkroot/manifest.json"), fake).unwrap();
    for add in [
        "fake.json:/.mkroot/manifest.json",
        "fake.json:/.mkroot",
        "fake.json:/.mkroot/x/../manifest.json",
        "tree:/",
    ] {
        let out = run_mkroot(&["--bins", "sh", "--add", add, "-o", "out.tgz"], dir);
        fails_with_one_line(&out, 1, &["/.mkroot", "mkroot's own"]);
        assert!(!dir.join("out.tgz").exists(), "{add}");
    }

    // An image with two manifests, the user's first: --check refuses to judge it, and
    // launch refuses to run it.
    build(&["-f", "greeting.toml", "-q"], dir);
    let shadowed = dir.join("shadowed.tar");
    std::fs::write(
        &shadowed,
        shadowed_manifest(&dir.join("greeting.tgz"), fake),
    )
    .unwrap();
    let out = check(dir, "greeting.toml", "shadowed.tar");
    fails_with_one_line(
        &out,
        2,
        &["shadowed.tar", "two entries for /.mkroot/manifest.json"],
    );
    let cache = tempfile::tempdir().unwrap();
    let out =
        mkroot_e2e::launch::launch(["--cache-dir", path_str(cache.path()), path_str(&shadowed)]);
    let stderr = stderr_of(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("the user's"));
    assert!(stderr.contains(".mkroot/manifest.json"), "{stderr}");
    assert!(stderr.contains("second entry"), "{stderr}");
}

#[test]
fn a_recipe_writes_only_under_its_own_directory_and_says_where_files_came_from() {
    let temp = tempfile::tempdir().unwrap();
    let top = temp.path();
    let dir = top.join("repo/recipes");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(top, dir.join("up")).unwrap();
    let escape = top.join("x.tgz");
    let absolute = escape.to_str().unwrap().to_string();
    for (output, says) in [
        ("../../x.tgz", "`..`"),
        (absolute.as_str(), "absolute"),
        ("up/x.tgz", "symlink"),
    ] {
        let recipe = format!("programs = [\"sh\"]\n[output]\npath = {output:?}\n");
        std::fs::write(dir.join("image.toml"), recipe).unwrap();
        let out = run_mkroot(&["-q", "-f", "image.toml"], &dir);
        fails_with_one_line(&out, 1, &["image.toml", "output.path", says]);
        assert!(
            !escape.exists(),
            "{output}: written outside the recipe's directory"
        );
        // The command line may name any place.
        let given = top.join("given.tgz");
        build(&["-q", "-f", "image.toml", "-o", path_str(&given)], &dir);
        assert!(given.exists());
        std::fs::remove_file(given).unwrap();
    }
    // Inside its directory, relative to the recipe, not to where mkroot runs.
    std::fs::write(
        dir.join("image.toml"),
        "programs = [\"sh\"]\n[output]\npath = \"out/\"\n",
    )
    .unwrap();
    build(&["-q", "-f", "repo/recipes/image.toml"], top);
    assert!(dir.join("out/.mkroot/manifest.json").is_file());

    // A recipe with a sysroot that adds a host file from outside it: warned about, and
    // the manifest and --explain say where it came from.
    sysroot(&dir);
    std::fs::write(top.join("secret"), "host only\n").unwrap();
    let recipe = format!(
        "programs = [\"sh\"]\nsysroot = \"sysroot\"\n[[files]]\nhost = {:?}\nimage = \"/s\"\n[[files]]\nhost = \"sysroot/etc/hosts\"\nimage = \"/h\"\n",
        path_str(&top.join("secret"))
    );
    std::fs::write(dir.join("sys.toml"), recipe).unwrap();
    let out = run_mkroot(&["-f", "sys.toml", "--dry-run", "--explain"], &dir);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains(path_str(&top.join("secret"))),
        "{stderr}"
    );
    assert!(warnings[0].contains("outside its sysroot"), "{stderr}");
    let explained = String::from_utf8_lossy(&out.stdout);
    let line = explained.lines().find(|l| l.contains("secret")).unwrap();
    assert!(
        line.contains("outside the recipe's directory, not from its sysroot"),
        "{line}"
    );
    let line = explained.lines().find(|l| l.contains("etc/hosts")).unwrap();
    assert!(line.contains("in the recipe's directory"), "{line}");
    assert!(!line.contains("sysroot]"), "{line}");
}

/// A copy at `out` of the one-layer OCI layout `layout` (as mkroot writes it) with the
/// plain tar `upper` laid over its layer: the blob, its diff_id in a new config, and a
/// new manifest the index names.
fn with_upper_layer(layout: &Path, upper: &[u8], out: &Path) {
    use mkroot_e2e::oci::sha256_hex;
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(layout)
        .arg(out)
        .status()
        .expect("run cp");
    assert!(status.success());
    let blobs = out.join("blobs/sha256");
    let blob =
        |digest: &serde_json::Value| blobs.join(&digest.as_str().unwrap()["sha256:".len()..]);
    let read = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let put = |bytes: &[u8]| -> serde_json::Value {
        std::fs::write(blobs.join(sha256_hex(bytes)), bytes).unwrap();
        serde_json::json!(format!("sha256:{}", sha256_hex(bytes)))
    };
    let mut index = read(out.join("index.json"));
    let mut manifest = read(blob(&index["manifests"][0]["digest"]));
    let mut config = read(blob(&manifest["config"]["digest"]));
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(format!("sha256:{}", sha256_hex(upper))));
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config);
    manifest["config"]["size"] = config.len().into();
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": put(upper),
            "size": upper.len(),
        }));
    let manifest = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = put(&manifest);
    index["manifests"][0]["size"] = manifest.len().into();
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn check_judges_an_oci_image_by_all_its_layers_whiteouts_included() {
    use mkroot_e2e::oci::LayerTar;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    copy_recipes(dir);
    build(
        &[
            "-f",
            "greeting.toml",
            "-q",
            "--format",
            "oci",
            "-o",
            "layout/",
        ],
        dir,
    );
    let out = check(dir, "greeting.toml", "layout");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let greeting = std::fs::read_to_string(dir.join("greeting.txt")).unwrap();
    let layers = "changed: the image's layers (the recipe builds one)";
    let from_host = format!("(host file {})", path_str(&dir.join("greeting.txt")));
    let cases: [(&str, Vec<u8>, Vec<String>); 3] = [
        (
            "whited-out",
            LayerTar::new()
                .dir("etc/")
                .file("etc/.wh.greeting", "")
                .finish(),
            vec![layers.into(), format!("added: /etc/greeting {from_host}")],
        ),
        (
            "replaced",
            LayerTar::new()
                .file("etc/greeting", "a greeting from the layer above\n")
                .finish(),
            vec![
                layers.into(),
                format!("changed: /etc/greeting: content differs from what the recipe builds {from_host}"),
            ],
        ),
        // The same bytes laid over them: only the number of layers differs.
        (
            "same",
            LayerTar::new().file("etc/greeting", &greeting).finish(),
            vec![layers.into()],
        ),
    ];
    for (name, upper, expected) in cases {
        with_upper_layer(&dir.join("layout"), &upper, &dir.join(name));
        let out = check(dir, "greeting.toml", name);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {stdout}{}",
            stderr_of(&out)
        );
        assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{name}");
    }
    // An opaque /etc over the image: what the bottom layer put there is gone, but for
    // what the upper layer brings.
    let upper = LayerTar::new()
        .dir("etc/")
        .file("etc/.wh..wh..opq", "")
        .file("etc/greeting", &greeting)
        .finish();
    with_upper_layer(&dir.join("layout"), &upper, &dir.join("opaque"));
    let out = check(dir, "greeting.toml", "opaque");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], layers, "{stdout}");
    assert!(lines.len() > 2, "{stdout}");
    for line in &lines[1..] {
        assert!(line.starts_with("added: /etc/"), "{stdout}");
        assert!(!line.contains("greeting"), "{stdout}");
    }
}

//! End-to-end tests of `mkroot --format oci`: the layout is self-consistent and
//! reproducible, and the tools of the container world (skopeo, umoci, podman) take it.

use mkroot_e2e::oci_build::{
    assert_success, gunzip_if_gzip, member_names, member_of, mkroot_at, oci_digest, require_tool,
    run_tool, tar_member,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 2023-11-14T22:13:20Z.
const EPOCH: u64 = 1_700_000_000;

/// The flags every test image is built with: settings that land in the image config.
fn image_flags(output: &str) -> Vec<String> {
    [
        "--bins",
        "sh,cat",
        "--format",
        "oci",
        "--tag",
        "mkroot-test/oci:1",
        "--env",
        "GREETING=hi",
        "--workdir",
        "/etc",
        "--entrypoint",
        "/bin/sh -c",
        "--cmd",
        "'echo $GREETING'",
        "--user",
        "app",
        "--run-as",
        "app",
        "--no-terminfo",
        "-q",
        "-o",
        output,
    ]
    .map(String::from)
    .to_vec()
}

fn build_oci(dir: &Path, output: &str) -> PathBuf {
    let flags = image_flags(output);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_success(&mkroot_at(&args, dir, EPOCH), "mkroot --format oci");
    dir.join(output)
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// The hex of a `sha256:<hex>` digest.
fn hex(digest: &Value) -> String {
    digest
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .expect("a sha256 digest")
        .to_string()
}

#[test]
fn oci_archives_are_reproducible_and_self_consistent() {
    let temp = tempfile::tempdir().unwrap();
    let (one, two) = (temp.path().join("one"), temp.path().join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let first = build_oci(&one, "img.oci.tar");
    let second = build_oci(&two, "again.oci.tar");
    let bytes = std::fs::read(&first).unwrap();
    assert!(
        bytes == std::fs::read(&second).unwrap(),
        "two builds differ"
    );

    // Every blob is named by its own digest.
    let names = member_names(&bytes);
    for name in names
        .iter()
        .filter(|n| n.starts_with("blobs/sha256/") && !n.ends_with('/'))
    {
        let blob = member_of(&bytes, name).unwrap();
        assert_eq!(
            oci_digest(&blob),
            format!("sha256:{}", &name[13..]),
            "{name}"
        );
    }
    for required in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(
            names.iter().any(|n| n == required),
            "no {required} in {names:?}"
        );
    }

    // index -> manifest -> config and layer.
    let index = json(&member_of(&bytes, "index.json").unwrap());
    assert_eq!(index["schemaVersion"], 2);
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "mkroot-test/oci:1"
    );
    let manifest_bytes =
        member_of(&bytes, &format!("blobs/sha256/{}", hex(&entry["digest"]))).unwrap();
    assert_eq!(entry["size"], manifest_bytes.len());
    let manifest = json(&manifest_bytes);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config = json(
        &member_of(
            &bytes,
            &format!("blobs/sha256/{}", hex(&manifest["config"]["digest"])),
        )
        .unwrap(),
    );
    let layer = member_of(
        &bytes,
        &format!("blobs/sha256/{}", hex(&manifest["layers"][0]["digest"])),
    )
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        oci_digest(&gunzip_if_gzip(&layer))
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["os"], "linux");
    assert!(config["architecture"]
        .as_str()
        .is_some_and(|a| !a.is_empty()));
    assert_eq!(config["history"][0]["created"], "2023-11-14T22:13:20Z");
    let run = &config["config"];
    assert_eq!(run["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(run["Cmd"], serde_json::json!(["echo $GREETING"]));
    assert_eq!(run["WorkingDir"], "/etc");
    assert_eq!(run["User"], "app");
    let env: Vec<&str> = run["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(env.contains(&"GREETING=hi"), "{env:?}");

    // The layer is mkroot's image: its manifest records the whole command.
    let inner = json(&member_of(&layer, ".mkroot/manifest.json").expect("manifest in the layer"));
    assert_eq!(
        inner["cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo $GREETING"])
    );
    assert!(member_of(&layer, "etc/passwd")
        .map(|p| String::from_utf8_lossy(&p).contains("app:"))
        .unwrap_or(false));

    // docker's manifest.json points at the same blobs, under the tag.
    let docker = json(&member_of(&bytes, "manifest.json").unwrap());
    assert_eq!(
        docker[0]["RepoTags"],
        serde_json::json!(["mkroot-test/oci:1"])
    );
    assert_eq!(
        docker[0]["Config"],
        format!("blobs/sha256/{}", hex(&manifest["config"]["digest"]))
    );
    assert_eq!(
        docker[0]["Layers"][0],
        format!("blobs/sha256/{}", hex(&manifest["layers"][0]["digest"]))
    );

    // The outer tar keeps the archive writer's stamps.
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().unwrap() {
        let header = entry.unwrap().header().clone();
        assert_eq!(header.mtime().unwrap(), EPOCH);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        assert_eq!(header.username().unwrap(), Some(""));
    }

    // The layer is exactly the root filesystem tar mkroot writes without --format oci.
    let flags = image_flags("plain.tar");
    let mut plain_args: Vec<&str> = Vec::new();
    let mut skip_value = false;
    for flag in &flags {
        if skip_value {
            skip_value = false;
        } else if ["--format", "--tag", "--workdir", "--run-as"].contains(&flag.as_str()) {
            skip_value = true;
        } else {
            plain_args.push(flag);
        }
    }
    assert_success(&mkroot_at(&plain_args, &one, EPOCH), "mkroot -o plain.tar");
    assert!(
        gunzip_if_gzip(&layer) == std::fs::read(one.join("plain.tar")).unwrap(),
        "the layer is not the rootfs tar"
    );
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(config["architecture"], host_arch);

    // A different epoch changes only what depends on it; the layer's file list stays.
    let three = temp.path().join("three");
    std::fs::create_dir_all(&three).unwrap();
    let flags = image_flags("late.oci.tar");
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_success(&mkroot_at(&args, &three, EPOCH + 1), "mkroot, later epoch");
    assert!(std::fs::read(three.join("late.oci.tar")).unwrap() != bytes);
}

#[test]
fn a_layout_directory_holds_the_same_files_as_the_archive() {
    let temp = tempfile::tempdir().unwrap();
    let archive = build_oci(temp.path(), "img.oci.tar");
    let layout = build_oci(temp.path(), "layout/");
    let bytes = std::fs::read(&archive).unwrap();
    let mut files = 0;
    for name in member_names(&bytes).iter().filter(|n| !n.ends_with('/')) {
        let on_disk = std::fs::read(layout.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            on_disk == member_of(&bytes, name).unwrap(),
            "{name} differs"
        );
        files += 1;
    }
    assert_eq!(
        files, 7,
        "3 blobs, oci-layout, index.json, manifest.json, repositories"
    );
    // No scratch directory is left beside the outputs.
    let mut left: Vec<String> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["img.oci.tar", "layout"]);
}

#[test]
fn bad_oci_requests_get_one_line_errors() {
    let temp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--bins", "sh", "--format", "oci", "-o", "img.tgz"],
            "img.tgz",
        ),
        (
            &[
                "--bins", "sh", "--format", "oci", "--tag", "Bad Name", "-o", "x.tar",
            ],
            "Bad Name",
        ),
        (
            &["--bins", "sh", "--tag", "ok:1", "-o", "x.tgz"],
            "--format oci",
        ),
        (
            &["--bins", "sh", "--env", "NOVALUE", "-o", "x.oci.tar"],
            "NOVALUE",
        ),
        (
            &["--bins", "sh", "--workdir", "/srv", "-o", "x.tar"],
            "--workdir",
        ),
    ];
    for (args, named) in cases {
        let out = mkroot_at(args, temp.path(), EPOCH);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    // Nothing half-written is left behind.
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
}

/// What `skopeo inspect ARGS` prints, as JSON; skopeo's temp files go to `tmpdir`.
fn skopeo_inspect(tmpdir: &Path, args: &[&str]) -> Value {
    let out = run_tool(
        Command::new("skopeo")
            .arg("--tmpdir")
            .arg(tmpdir)
            .arg("inspect")
            .args(args),
    );
    json(&out.stdout)
}

#[test]
fn skopeo_reads_the_oci_archive_and_the_docker_archive() {
    if !require_tool("skopeo", "skopeo") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let archive = build_oci(temp.path(), "img.oci.tar");
    let manifest_digest = {
        let index = json(&tar_member(&archive, "index.json").unwrap());
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let oci = skopeo_inspect(
        temp.path(),
        &[&format!("oci-archive:{}", archive.display())],
    );
    assert_eq!(oci["Digest"], manifest_digest.as_str());
    assert_eq!(oci["Os"], "linux");
    assert_eq!(oci["Layers"].as_array().map(Vec::len), Some(1));
    assert!(oci["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hi"));
    // Through docker's manifest.json (what `docker load` reads), picked by its tag: the
    // same config, and the layer named by its diff_id as docker names layers.
    let by_tag = format!("docker-archive:{}:mkroot-test/oci:1", archive.display());
    let config = skopeo_inspect(temp.path(), &["--config", &by_tag]);
    assert_eq!(config["config"]["WorkingDir"], "/etc");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    let docker = skopeo_inspect(temp.path(), &[&by_tag]);
    assert_eq!(docker["Layers"][0], config["rootfs"]["diff_ids"][0]);
}

#[test]
fn umoci_unpacks_the_layout_into_a_bundle() {
    if !require_tool("umoci", "umoci") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let layout = build_oci(temp.path(), "layout/");
    let bundle = temp.path().join("bundle");
    run_tool(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:mkroot-test/oci:1", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    let sh = std::fs::canonicalize(rootfs.join("bin/sh")).unwrap();
    assert!(sh.starts_with(&rootfs), "{}", sh.display());
    let host_cat = std::fs::read(which("cat")).unwrap();
    assert!(std::fs::read(rootfs.join("usr/bin/cat")).unwrap() == host_cat);
    assert!(rootfs.join(".mkroot/manifest.json").is_file());
    // umoci turns the image config into the runtime spec.
    let spec = json(&std::fs::read(bundle.join("config.json")).unwrap());
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "echo $GREETING"])
    );
    assert_eq!(spec["process"]["cwd"], "/etc");
}

#[test]
fn podman_loads_the_archive() {
    if !require_tool("podman", "podman") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let archive = build_oci(temp.path(), "img.oci.tar");
    let config_digest = {
        let docker = json(&tar_member(&archive, "manifest.json").unwrap());
        docker[0]["Config"].as_str().unwrap()[13..].to_string()
    };
    // podman's own storage in the test's directory: nothing shared with other tests or
    // the host's image store.
    let podman = || {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(temp.path().join("storage"))
            .arg("--runroot")
            .arg(temp.path().join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .arg("--tmpdir")
            .arg(temp.path().join("libpod"))
            .arg("--network-config-dir")
            .arg(temp.path().join("networks"))
            .arg("--volumepath")
            .arg(temp.path().join("volumes"))
            .env("TMPDIR", temp.path())
            .env("XDG_RUNTIME_DIR", temp.path().join("xdg"));
        command
    };
    let loaded = run_tool(podman().arg("load").arg("-i").arg(&archive));
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(said.contains("mkroot-test/oci:1"), "{said}");
    let inspect = run_tool(podman().args(["image", "inspect", "mkroot-test/oci:1"]));
    let image = &json(&inspect.stdout)[0];
    assert_eq!(image["Id"], config_digest.as_str());
    assert_eq!(image["Config"]["WorkingDir"], "/etc");
    assert_eq!(image["Config"]["User"], "app");
}

fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}

/// A build killed while it writes the layer leaves nothing beside the output: the layer's
/// scratch file has no name, so the kernel frees it with the process.
#[test]
fn a_build_killed_while_writing_the_layer_leaves_nothing_behind() {
    let temp = tempfile::tempdir().unwrap();
    // 48 MiB that do not compress: the layer takes long enough to be caught mid-write.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..48 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::create_dir(temp.path().join("payload")).unwrap();
    std::fs::write(temp.path().join("payload/noise"), noise).unwrap();
    let mut build = Command::new(mkroot_e2e::builder::mkroot())
        .args(["-q", "--bins", "true", "--add", "payload:/payload"])
        .args(["--format", "oci", "-o", "img.oci.tar"])
        .current_dir(temp.path())
        .spawn()
        .unwrap();
    // The scratch file is open once /proc shows a deleted file among mkroot's fds.
    let fds = PathBuf::from(format!("/proc/{}/fd", build.id()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let scratch_open = loop {
        let open_deleted = std::fs::read_dir(&fds).into_iter().flatten().any(|fd| {
            fd.ok()
                .and_then(|fd| std::fs::read_link(fd.path()).ok())
                .is_some_and(|target| target.to_string_lossy().ends_with("(deleted)"))
        });
        if open_deleted || std::time::Instant::now() > deadline {
            break open_deleted;
        }
        if build.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    build.kill().unwrap();
    build.wait().unwrap();
    assert!(scratch_open, "mkroot never opened its scratch layer");
    let left: Vec<String> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["payload"], "left beside the output: {left:?}");
}

//! `launch` runs images other tools made: a multi-layer docker-archive with whiteouts,
//! the same image as an OCI layout and an oci-archive (sharing the cached layers), the
//! config's defaults, and corrupt or unsupported images refused in one line.

use std::path::Path;

use mkroot_e2e::launch::{describe, launch, stdout, BusyboxImage, TestUser};
use mkroot_e2e::oci::{Image, Layer, LayerTar};

/// Three layers over a busybox base: files removed by whiteouts, a directory made opaque,
/// a removed directory brought back, a file replaced, a symlink replaced by a directory.
fn layered_image(base: &BusyboxImage, run_config: serde_json::Value) -> Image {
    let bottom = LayerTar::new()
        .tree(&base.root())
        .symlink("bin/find", "busybox")
        .symlink("bin/sort", "busybox")
        .dir("data")
        .file("data/keep", "v1")
        .file("data/drop", "x")
        .dir("data/sub")
        .file("data/sub/old", "x")
        .dir("opq")
        .file("opq/a", "x")
        .dir("opq/sub")
        .file("opq/sub/b", "x")
        .dir("gone")
        .file("gone/x", "x")
        .symlink("link", "/data")
        .finish();
    let middle = LayerTar::new()
        .dir("data")
        .file("data/.wh.drop", "")
        .file("data/.wh.sub", "")
        .file("data/added", "new")
        .file(".wh.gone", "")
        .dir("opq")
        .file("opq/.wh..wh..opq", "")
        .file("opq/new", "n")
        .finish();
    let top = LayerTar::new()
        .dir("gone")
        .file("gone/back", "b")
        .file("data/keep", "v2")
        .dir("link")
        .file("link/inside", "i")
        .finish();
    Image::new(
        vec![Layer::gzip(bottom), Layer::plain(middle), Layer::gzip(top)],
        run_config,
    )
}

const EXPECTED_FILES: &str = "\
/data
/data/added
/data/keep
/gone
/gone/back
/link
/link/inside
/opq
/opq/new
";

const LIST: &str = "find /data /gone /opq /link | sort; cat /data/keep; echo";

fn run(image: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--cache-dir".as_ref(), cache.as_os_str(), image.as_os_str()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    launch(all)
}

#[test]
fn a_multi_layer_docker_archive_shows_exactly_the_right_files() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    layered_image(&base, serde_json::json!({})).write_docker_archive(&archive);
    let out = run(
        &archive,
        &dir.path().join("cache"),
        &["--", "sh", "-c", LIST],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), format!("{EXPECTED_FILES}v2\n"));
    // No whiteout file anywhere in the image.
    let out = run(
        &archive,
        &dir.path().join("cache"),
        &["--", "sh", "-c", "find / -xdev -name '.wh.*' | wc -l"],
    );
    assert_eq!(stdout(&out).trim(), "0", "{}", describe(&out));
}

#[test]
fn an_oci_layout_and_an_oci_archive_of_it_share_the_cached_layers() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let image = layered_image(&base, serde_json::json!({}));
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout);
    let archive = dir.path().join("image.oci.tar");
    image.write_oci_archive(&archive);
    let docker = dir.path().join("image.docker.tar");
    image.write_docker_archive(&docker);
    for path in [&layout, &archive, &docker] {
        let out = run(path, &cache, &["--", "sh", "-c", LIST]);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert_eq!(stdout(&out), format!("{EXPECTED_FILES}v2\n"), "{path:?}");
    }
    // Three layers unpacked once; the layout and its archive are one image (one manifest
    // digest), the docker-archive another (named by its config digest).
    let count = |sub: &str| std::fs::read_dir(cache.join(sub)).unwrap().count();
    assert_eq!(count("oci-layers"), 3);
    assert_eq!(count("images"), 2);

    // `cache ls` lists both images; prune removes them and the layer trees.
    let cache_arg = cache.to_str().unwrap();
    let listed = launch(["--cache-dir", cache_arg, "cache", "ls"]);
    assert_eq!(stdout(&listed).lines().count(), 3, "{}", describe(&listed));
    let pruned = launch(["--cache-dir", cache_arg, "cache", "prune"]);
    assert!(pruned.status.success(), "{}", describe(&pruned));
    assert_eq!((count("images"), count("oci-layers")), (0, 0));
}

#[test]
fn the_configs_entrypoint_cmd_env_workdir_and_user_are_the_defaults() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let archive = dir.path().join("image.tar");
    let config = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo default $GREETING; pwd; id -u; id -g"],
        "Env": ["PATH=/bin", "GREETING=hello"],
        "WorkingDir": "/data",
        "User": "1000:1001",
    });
    layered_image(&base, config).write_oci_archive(&archive);

    let out = run(&archive, &cache, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "default hello\n/data\n1000\n1001\n");

    // `-- CMD` replaces Cmd, after the Entrypoint; -e, -w, -u win over the config.
    let out = run(
        &archive,
        &cache,
        &[
            "-e",
            "GREETING=hi",
            "-w",
            "/opq",
            "-u",
            "7:8",
            "--",
            "echo mine $GREETING; pwd; id -u",
        ],
    );
    assert_eq!(stdout(&out), "mine hi\n/opq\n7\n", "{}", describe(&out));

    // --entrypoint replaces the Entrypoint and drops the Cmd.
    let out = run(
        &archive,
        &cache,
        &["--entrypoint", "/bin/echo", "--", "plain"],
    );
    assert_eq!(stdout(&out), "plain\n", "{}", describe(&out));
}

#[test]
fn a_user_name_is_looked_up_in_the_images_passwd() {
    let base = BusyboxImage::new();
    std::fs::write(
        base.root().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:4242:4343::/:/bin/sh\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let config = serde_json::json!({"User": "app", "Cmd": ["/bin/sh", "-c", "id -u; id -g"]});
    layered_image(&base, config).write_docker_archive(&archive);
    let out = run(&archive, &dir.path().join("cache"), &[]);
    assert_eq!(stdout(&out), "4242\n4343\n", "{}", describe(&out));
}

/// Launching fails with exit status 125 and one line on stderr containing `needle`.
fn assert_refused(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{}", describe(out));
    assert_eq!(stderr.lines().count(), 1, "{}", describe(out));
    assert!(stderr.contains(needle), "{}", describe(out));
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_cached() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let image = layered_image(&base, serde_json::json!({}));
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout);
    // Flip a byte in the last layer's blob (a plain-tar layer would do too).
    let blob = layout.join(format!(
        "blobs/sha256/{}",
        mkroot_e2e::oci::sha256_hex(&image.layers[1].blob)
    ));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();
    let out = run(&layout, &cache, &["--", "true"]);
    assert_refused(&out, "does not match its digest");
    assert_eq!(std::fs::read_dir(cache.join("images")).unwrap().count(), 0);

    // A docker-archive whose config names a diff_id its layer does not have.
    let mut wrong = layered_image(&base, serde_json::json!({}));
    wrong.layers[2].tar = LayerTar::new().file("other", "x").finish();
    let archive = dir.path().join("wrong.tar");
    wrong.write_docker_archive(&archive);
    let out = run(&archive, &cache, &["--", "true"]);
    assert_refused(&out, "diff_id");
}

#[test]
fn a_zstd_layer_is_refused_in_one_line() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    let mut image = layered_image(&base, serde_json::json!({}));
    image.claimed_media_type = Some("application/vnd.oci.image.layer.v1.tar+zstd".into());
    let archive = dir.path().join("image.oci.tar");
    image.write_oci_archive(&archive);
    let out = run(&archive, &dir.path().join("cache"), &["--", "true"]);
    assert_refused(&out, "zstd");
}

#[test]
fn a_plain_rootfs_tarball_named_like_an_archive_still_runs() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    // A rootfs tar (not gzip) that says nothing about OCI.
    let rootfs = dir.path().join("image.oci.tar");
    std::fs::write(&rootfs, LayerTar::new().tree(&base.root()).finish()).unwrap();
    let out = run(
        &rootfs,
        &dir.path().join("cache"),
        &["--", "echo", "rootfs"],
    );
    assert_eq!(stdout(&out), "rootfs\n", "{}", describe(&out));
}

#[test]
fn concurrent_first_launches_of_images_sharing_layers_all_succeed() {
    let base = BusyboxImage::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let image = layered_image(&base, serde_json::json!({}));
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout);
    let docker = dir.path().join("image.docker.tar");
    image.write_docker_archive(&docker);
    let outputs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..6)
            .map(|i| {
                let path = if i % 2 == 0 { &layout } else { &docker };
                let cache = &cache;
                scope.spawn(move || run(path, cache, &["--", "sh", "-c", LIST]))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for out in &outputs {
        assert_eq!(
            stdout(out),
            format!("{EXPECTED_FILES}v2\n"),
            "{}",
            describe(out)
        );
    }
    let count = |sub: &str| std::fs::read_dir(cache.join(sub)).unwrap().count();
    assert_eq!(count("oci-layers"), 3);
    assert_eq!(count("images"), 2);
    assert_eq!(count("tmp"), 0, "no unpack left behind");
}

#[test]
fn rootless_runs_a_multi_layer_image_from_its_own_cache() {
    let user = TestUser::create("oci");
    let base = BusyboxImage::new();
    let archive = base.dir.path().join("image.docker.tar");
    layered_image(&base, serde_json::json!({"Cmd": ["sh", "-c", LIST]}))
        .write_docker_archive(&archive);
    base.give_to(&user);
    let out = user.launch(&[archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), format!("{EXPECTED_FILES}v2\n"));
}

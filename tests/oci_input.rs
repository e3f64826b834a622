//! `launch` runs images other tools made: a multi-layer docker-archive with whiteouts,
//! the same image as an OCI layout and an oci-archive (sharing the cached layers), the
//! config's defaults, and corrupt or unsupported images refused in one line.

use std::path::{Path, PathBuf};
use std::process::Output;

use mkroot_e2e::launch::{assert_succeeded, describe, launch, stdout, BusyboxImage, TestUser};
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

/// The layered image over a busybox base, and a temp dir for the files it is written to
/// and for the launch cache of the test.
struct LayeredImageOnDisk {
    base: BusyboxImage,
    image: Image,
    dir: tempfile::TempDir,
}

impl LayeredImageOnDisk {
    /// Over a fresh busybox base, with an empty run config.
    fn new() -> LayeredImageOnDisk {
        LayeredImageOnDisk::over(BusyboxImage::new(), serde_json::json!({}))
    }

    fn over(base: BusyboxImage, run_config: serde_json::Value) -> LayeredImageOnDisk {
        let image = layered_image(&base, run_config);
        let dir = tempfile::tempdir().unwrap();
        LayeredImageOnDisk { base, image, dir }
    }

    /// The launch cache the test's launches share.
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The image written as an OCI layout directory.
    fn oci_layout(&self) -> PathBuf {
        let layout = self.dir.path().join("layout");
        self.image.write_oci_layout(&layout);
        layout
    }

    /// The image written as an oci-archive.
    fn oci_archive(&self) -> PathBuf {
        let archive = self.dir.path().join("image.oci.tar");
        self.image.write_oci_archive(&archive);
        archive
    }

    /// The image written as a docker-archive.
    fn docker_archive(&self) -> PathBuf {
        let archive = self.dir.path().join("image.docker.tar");
        self.image.write_docker_archive(&archive);
        archive
    }
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

fn run(image: &Path, cache: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--cache-dir".as_ref(), cache.as_os_str(), image.as_os_str()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    launch(all)
}

/// `out` is a launch of [`LIST`] that succeeded and saw exactly the files the layers
/// leave; `image` names what was launched in the failure message.
#[track_caller]
fn assert_lists_the_layered_files(out: &Output, image: &Path) {
    assert_eq!(out.status.code(), Some(0), "{image:?}: {}", describe(out));
    assert_eq!(
        stdout(out),
        format!("{EXPECTED_FILES}v2\n"),
        "{image:?}: {}",
        describe(out)
    );
}

/// How many entries the launch cache holds in its `sub` directory.
fn cache_entries(cache: &Path, sub: &str) -> usize {
    std::fs::read_dir(cache.join(sub)).unwrap().count()
}

#[test]
fn a_multi_layer_docker_archive_shows_exactly_the_right_files() {
    let written = LayeredImageOnDisk::new();
    let archive = written.docker_archive();
    let cache = written.cache();
    let out = run(&archive, &cache, &["--", "sh", "-c", LIST]);
    assert_lists_the_layered_files(&out, &archive);
    // No whiteout file anywhere in the image.
    let out = run(
        &archive,
        &cache,
        &["--", "sh", "-c", "find / -xdev -name '.wh.*' | wc -l"],
    );
    assert_eq!(stdout(&out).trim(), "0", "{}", describe(&out));
}

#[test]
fn an_oci_layout_and_an_oci_archive_of_it_share_the_cached_layers() {
    let written = LayeredImageOnDisk::new();
    let cache = written.cache();
    let layout = written.oci_layout();
    let archive = written.oci_archive();
    let docker = written.docker_archive();
    for path in [&layout, &archive, &docker] {
        let out = run(path, &cache, &["--", "sh", "-c", LIST]);
        assert_lists_the_layered_files(&out, path);
    }
    // Three layers unpacked once; the layout and its archive are one image (one manifest
    // digest), the docker-archive another (named by its config digest).
    let count = |sub: &str| cache_entries(&cache, sub);
    assert_eq!(count("oci-layers"), 3);
    assert_eq!(count("images"), 2);

    // `cache ls` lists both images; prune removes them and the layer trees.
    let cache_arg = cache.to_str().unwrap();
    let listed = launch(["--cache-dir", cache_arg, "cache", "ls"]);
    // The header, a row per image, the total.
    assert_eq!(stdout(&listed).lines().count(), 4, "{}", describe(&listed));
    assert!(
        stdout(&listed).contains("total: 2 image(s)"),
        "{}",
        describe(&listed)
    );
    let pruned = launch(["--cache-dir", cache_arg, "cache", "prune"]);
    assert_succeeded(&pruned);
    assert_eq!((count("images"), count("oci-layers")), (0, 0));
}

#[test]
fn the_configs_entrypoint_cmd_env_workdir_and_user_are_the_defaults() {
    let config = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo default $GREETING; pwd; id -u; id -g"],
        "Env": ["PATH=/bin", "GREETING=hello"],
        "WorkingDir": "/data",
        "User": "1000:1001",
    });
    let written = LayeredImageOnDisk::over(BusyboxImage::new(), config);
    let archive = written.oci_archive();
    let cache = written.cache();

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
    let config = serde_json::json!({"User": "app", "Cmd": ["/bin/sh", "-c", "id -u; id -g"]});
    let written = LayeredImageOnDisk::over(base, config);
    let out = run(&written.docker_archive(), &written.cache(), &[]);
    assert_eq!(stdout(&out), "4242\n4343\n", "{}", describe(&out));
}

/// Launching fails with exit status 125 and one line on stderr containing `needle`.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{}", describe(out));
    assert_eq!(stderr.lines().count(), 1, "{}", describe(out));
    assert!(stderr.contains(needle), "{}", describe(out));
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_cached() {
    let written = LayeredImageOnDisk::new();
    let cache = written.cache();
    let layout = written.oci_layout();
    // Flip a byte in the last layer's blob (a plain-tar layer would do too).
    let blob = layout.join(format!(
        "blobs/sha256/{}",
        mkroot_e2e::oci::sha256_hex(&written.image.layers[1].blob)
    ));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();
    let out = run(&layout, &cache, &["--", "true"]);
    assert_refused(&out, "does not match its digest");
    // No image entry (images/ is made by the first install, so it may not be there).
    let images = std::fs::read_dir(cache.join("images"));
    assert_eq!(images.map_or(0, |entries| entries.count()), 0);

    // A docker-archive whose config names a diff_id its layer does not have.
    let mut wrong = layered_image(&written.base, serde_json::json!({}));
    wrong.layers[2].tar = LayerTar::new().file("other", "x").finish();
    let archive = written.dir.path().join("wrong.tar");
    wrong.write_docker_archive(&archive);
    let out = run(&archive, &cache, &["--", "true"]);
    assert_refused(&out, "diff_id");
}

#[test]
fn a_zstd_layer_is_refused_in_one_line() {
    let mut written = LayeredImageOnDisk::new();
    written.image.claimed_media_type = Some("application/vnd.oci.image.layer.v1.tar+zstd".into());
    let out = run(&written.oci_archive(), &written.cache(), &["--", "true"]);
    assert_refused(&out, "zstd");
}

#[test]
fn an_xz_layer_in_a_docker_archive_is_refused_naming_the_layer() {
    // docker archives carry no media type: the layer's own magic number is all there is.
    let mut written = LayeredImageOnDisk::new();
    let layer = &mut written.image.layers[1];
    layer.blob = [&b"\xfd7zXZ\x00"[..], &layer.tar].concat();
    let diff_id = layer.diff_id();
    let out = run(&written.docker_archive(), &written.cache(), &["--", "true"]);
    assert_refused(&out, "xz-compressed");
    assert_refused(&out, &diff_id);
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
    let written = LayeredImageOnDisk::new();
    let cache = written.cache();
    let layout = written.oci_layout();
    let docker = written.docker_archive();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
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
    let count = |sub: &str| cache_entries(&cache, sub);
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
    assert_lists_the_layered_files(&out, &archive);
}

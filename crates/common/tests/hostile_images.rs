//! Hostile tarballs against `unpack`: each must unpack inside its root or be refused with an
//! error, and nothing next to the root (a sentinel directory, a "host" file) may change.
//!
//! The archives are built byte by byte with the `tar` crate's header type, since its
//! `Builder` refuses to write most of these names.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mkroot_common::unpack::{unpack, UnpackError, UnpackOptions, UnpackReport};
use tar::{EntryType, Header};

/// A raw tar stream under construction.
#[derive(Default)]
struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    fn header(name: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
        let mut header = Header::new_gnu();
        assert!(name.len() <= 100, "use long_name for long names");
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn push(&mut self, mut header: Header, data: &[u8]) -> &mut Self {
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.file_mode(name, data, 0o644)
    }

    fn file_mode(&mut self, name: &[u8], data: &[u8], mode: u32) -> &mut Self {
        let header = Self::header(name, EntryType::Regular, data.len() as u64, mode);
        self.push(header, data)
    }

    fn dir(&mut self, name: &[u8], mode: u32) -> &mut Self {
        let header = Self::header(name, EntryType::Directory, 0, mode);
        self.push(header, &[])
    }

    fn link(&mut self, kind: EntryType, name: &[u8], target: &[u8]) -> &mut Self {
        let mut header = Self::header(name, kind, 0, 0o777);
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target);
        self.push(header, &[])
    }

    fn device(&mut self, kind: EntryType, name: &[u8], major: u32, minor: u32) -> &mut Self {
        let mut header = Self::header(name, kind, 0, 0o666);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.push(header, &[])
    }

    /// A GNU long name header (`L`) followed by a regular file.
    fn long_name_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let mut long = name.to_vec();
        long.push(0);
        let header = Self::header(
            b"././@LongLink",
            EntryType::GNULongName,
            long.len() as u64,
            0,
        );
        self.push(header, &long);
        self.file(b"placeholder", data)
    }

    /// A PAX extended header with `path` followed by a regular file.
    fn pax_path_file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let record = pax_record(b"path", name);
        let header = Self::header(b"PaxHeaders/x", EntryType::XHeader, record.len() as u64, 0);
        self.push(header, &record);
        self.file(b"placeholder", data)
    }

    fn finish(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.bytes)
    }
}

/// `"<len> key=value\n"`, where len counts the whole record including its own digits.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut record = format!("{len} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A temp dir holding the unpack target and its neighbours: an empty sentinel directory
/// and a host file, which must look the same after every attack.
struct Scene {
    dir: tempfile::TempDir,
}

const HOST_CONTENT: &[u8] = b"host data, not to be touched\n";

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("target")).unwrap();
        fs::create_dir(dir.path().join("sentinel")).unwrap();
        fs::create_dir(dir.path().join("host")).unwrap();
        fs::write(dir.path().join("host/file"), HOST_CONTENT).unwrap();
        Scene { dir }
    }

    fn target(&self) -> PathBuf {
        self.dir.path().join("target")
    }

    /// The host directory as an absolute name without the leading `/`, for archive names.
    fn host_abs(&self) -> Vec<u8> {
        self.dir.path().join("host").as_os_str().as_bytes().to_vec()
    }

    fn unpack(&self, archive: &[u8]) -> Result<UnpackReport, UnpackError> {
        self.unpack_with(archive, &UnpackOptions::default())
    }

    fn unpack_with(
        &self,
        archive: &[u8],
        options: &UnpackOptions,
    ) -> Result<UnpackReport, UnpackError> {
        let result = unpack(Cursor::new(archive), &self.target(), options);
        self.assert_host_untouched();
        result
    }

    /// Runs the same archive through the openat walk too (fresh target), as on old kernels.
    fn unpack_both_ways(&self, archive: &[u8]) -> Vec<Result<UnpackReport, UnpackError>> {
        let first = self.unpack(archive);
        mkroot_common::unpack::remove_tree(&self.target()).unwrap();
        fs::create_dir(self.target()).unwrap();
        let options = UnpackOptions {
            use_openat2: false,
            ..UnpackOptions::default()
        };
        let second = self.unpack_with(archive, &options);
        vec![first, second]
    }

    fn assert_host_untouched(&self) {
        let mut names: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["host", "sentinel", "target"],
            "something was created next to the root"
        );
        assert_eq!(
            fs::read_dir(self.dir.path().join("sentinel"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            fs::read_dir(self.dir.path().join("host")).unwrap().count(),
            1
        );
        assert_eq!(
            fs::read(self.dir.path().join("host/file")).unwrap(),
            HOST_CONTENT
        );
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.target().join(name)).unwrap()
    }
}

#[test]
fn dotdot_names_are_kept_inside_the_root() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .file(b"../escaped", b"1")
        .file(b"a/../../../sentinel/escaped", b"2")
        .file(b"../host/file", b"3")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        assert_eq!(scene.read("escaped"), b"1");
        assert_eq!(scene.read("sentinel/escaped"), b"2");
        assert_eq!(scene.read("host/file"), b"3");
    }
}

#[test]
fn absolute_names_are_rooted_in_the_image() {
    let scene = Scene::new();
    let mut name = scene.host_abs();
    name.extend_from_slice(b"/file");
    let archive = RawTar::default().file(&name, b"pwned").finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        let inside = scene
            .target()
            .join(Path::new(std::ffi::OsStr::from_bytes(&name[1..])));
        assert_eq!(fs::read(inside).unwrap(), b"pwned");
    }
}

#[test]
fn a_symlink_to_slash_is_followed_only_inside_the_root() {
    let scene = Scene::new();
    let mut through = b"evil".to_vec();
    through.extend_from_slice(&scene.host_abs());
    through.extend_from_slice(b"/file");
    let host_link_target = scene.host_abs();
    let archive = RawTar::default()
        .link(EntryType::Symlink, b"evil", b"/")
        .file(&through, b"pwned")
        .link(EntryType::Symlink, b"hostdir", &host_link_target)
        .file(b"hostdir/file", b"pwned too")
        .file(b"evil/etc/written-through-root-link", b"x")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        // Both landed in the image's own tree, at the host path *inside* the root.
        let host_inside = scene.target().join(Path::new(std::ffi::OsStr::from_bytes(
            &scene.host_abs()[1..],
        )));
        assert_eq!(fs::read(host_inside.join("file")).unwrap(), b"pwned too");
        assert_eq!(scene.read("etc/written-through-root-link"), b"x");
        assert!(!Path::new("/etc/written-through-root-link").exists());
    }
}

#[test]
fn a_symlink_up_and_out_is_clamped_at_the_root() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .link(EntryType::Symlink, b"up", b"../..")
        .file(b"up/sentinel/pwned", b"1")
        .dir(b"d", 0o755)
        .link(EntryType::Symlink, b"d/up2", b"../../../..")
        .file(b"d/up2/host/file", b"2")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        assert_eq!(scene.read("sentinel/pwned"), b"1");
        assert_eq!(scene.read("host/file"), b"2");
    }
}

#[test]
fn a_file_entry_replaces_a_symlink_instead_of_writing_through_it() {
    let scene = Scene::new();
    let mut host_file = scene.host_abs();
    host_file.extend_from_slice(b"/file");
    let archive = RawTar::default()
        .link(EntryType::Symlink, b"victim", &host_file)
        .file(b"victim", b"replaced")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        let meta = fs::symlink_metadata(scene.target().join("victim")).unwrap();
        assert!(meta.is_file());
        assert_eq!(scene.read("victim"), b"replaced");
    }
}

#[test]
fn a_hard_link_to_a_host_file_is_refused() {
    let scene = Scene::new();
    let mut host_file = scene.host_abs();
    host_file.extend_from_slice(b"/file");
    for target in [
        &b"/etc/passwd"[..],
        b"../../../../../etc/passwd",
        &host_file,
    ] {
        let archive = RawTar::default()
            .link(EntryType::Link, b"stolen", target)
            .file(b"stolen", b"overwrite through the link")
            .finish();
        let scene = Scene::new();
        for result in scene.unpack_both_ways(&archive) {
            let err = result.unwrap_err();
            assert!(matches!(err, UnpackError::BadEntry { .. }), "{err}");
            assert!(err.to_string().contains("not an earlier entry"), "{err}");
            assert!(!scene.target().join("stolen").exists());
        }
    }
    // The host file in the scene stands for /etc/passwd, whose content other tests on the
    // machine may change (useradd) while this one runs.
    scene.assert_host_untouched();
}

#[test]
fn hard_links_to_earlier_entries_share_the_inode() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .file(b"bin/busybox", b"applet")
        .link(EntryType::Link, b"bin/sh", b"bin/busybox")
        .link(EntryType::Link, b"/bin/ls", b"/bin/busybox")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        let ino = |n: &str| fs::metadata(scene.target().join(n)).unwrap().ino();
        assert_eq!(ino("bin/sh"), ino("bin/busybox"));
        assert_eq!(ino("bin/ls"), ino("bin/busybox"));
    }
}

#[test]
fn device_nodes_and_fifos_are_skipped_and_counted() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .dir(b"dev", 0o755)
        .device(EntryType::Char, b"dev/mem", 1, 1)
        .device(EntryType::Block, b"dev/vda", 254, 0)
        .device(EntryType::Fifo, b"dev/initctl", 0, 0)
        .finish();
    let report = scene.unpack(&archive).unwrap();
    assert_eq!((report.skipped_devices, report.skipped_fifos), (2, 1));
    assert_eq!(fs::read_dir(scene.target().join("dev")).unwrap().count(), 0);
}

#[test]
fn setuid_and_setgid_bits_are_stripped_unless_kept() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .file_mode(b"usr/bin/su", b"#!", 0o4755)
        .file_mode(b"usr/bin/wall", b"#!", 0o2755)
        .dir(b"tmp", 0o1777)
        .finish();
    let report = scene.unpack(&archive).unwrap();
    assert_eq!(report.stripped_setid, 2);
    let mode = |n: &str| {
        fs::symlink_metadata(scene.target().join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/su"), 0o755);
    assert_eq!(mode("usr/bin/wall"), 0o755);
    assert_eq!(mode("tmp"), 0o1777, "sticky directories keep their bit");

    let kept = Scene::new();
    let options = UnpackOptions {
        keep_setid: true,
        ..UnpackOptions::default()
    };
    let report = kept.unpack_with(&archive, &options).unwrap();
    assert_eq!(report.stripped_setid, 0);
    let mode = fs::metadata(kept.target().join("usr/bin/su"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
}

#[test]
fn duplicate_entries_last_one_wins() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .file(b"a", b"first")
        .file(b"a", b"second")
        .dir(b"d", 0o755)
        .file(b"d/child", b"c")
        .file(b"d", b"a file now")
        .file(b"x", b"a file first")
        .dir(b"x", 0o700)
        .link(EntryType::Symlink, b"s", b"/etc")
        .dir(b"s", 0o755)
        .file(b"s/inside", b"i")
        .dir(b"keep", 0o700)
        .dir(b"keep", 0o750)
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        assert_eq!(scene.read("a"), b"second");
        assert_eq!(scene.read("d"), b"a file now");
        assert!(fs::symlink_metadata(scene.target().join("x"))
            .unwrap()
            .is_dir());
        assert!(fs::symlink_metadata(scene.target().join("s"))
            .unwrap()
            .is_dir());
        assert_eq!(scene.read("s/inside"), b"i");
        let keep = fs::metadata(scene.target().join("keep")).unwrap();
        assert_eq!(keep.permissions().mode() & 0o7777, 0o750);
    }
}

#[test]
fn a_second_manifest_or_a_manifest_directory_that_is_no_directory_is_refused() {
    let scene = Scene::new();
    let shadowed = RawTar::default()
        .dir(b".mkroot", 0o755)
        .file(b".mkroot/manifest.json", b"{\"the user's\": 1}")
        .file(b"./.mkroot//manifest.json", b"{\"mkroot's\": 1}")
        .finish();
    let relinked = RawTar::default()
        .file(b".mkroot/manifest.json", b"{}")
        .link(EntryType::Symlink, b".mkroot", b"elsewhere")
        .file(b"elsewhere/manifest.json", b"{}")
        .finish();
    for (archive, says) in [
        (shadowed, "a second entry for"),
        (relinked, "not a directory"),
    ] {
        for result in scene.unpack_both_ways(&archive) {
            let error = result.unwrap_err().to_string();
            assert!(error.contains(".mkroot"), "{error}");
            assert!(error.contains(says), "{error}");
            assert!(!error.contains('\n'), "{error}");
            mkroot_common::unpack::remove_tree(&scene.target()).unwrap();
            fs::create_dir(scene.target()).unwrap();
        }
    }
    // One manifest, as mkroot writes it, is fine.
    let one = RawTar::default()
        .dir(b".mkroot/", 0o755)
        .file(b".mkroot/manifest.json", b"{}")
        .finish();
    scene.unpack(&one).unwrap();
}

#[test]
fn an_entry_under_a_directory_a_file_replaced_fails_whatever_the_files_size() {
    // dir p, file p (replacing it), then p/q: applied in order, p/q has a file for a
    // parent. A small p goes to the writer threads, a large one is written in place;
    // both must end the same way, not with p/q written into the old directory and then
    // lost when p replaces it.
    let large = vec![b'x'; 2 << 20];
    for data in [&b"small"[..], &large[..]] {
        let scene = Scene::new();
        let archive = RawTar::default()
            .dir(b"p", 0o755)
            .file(b"p", data)
            .file(b"p/q", b"under a file")
            .finish();
        for result in scene.unpack_both_ways(&archive) {
            let err = result.expect_err("p/q under the file p");
            let message = err.to_string();
            assert!(message.contains("p/q"), "{message}");
            assert!(message.contains("Not a directory"), "{message}");
            assert_eq!(scene.read("p"), data);
        }
    }
}

#[test]
fn a_hard_link_into_a_directory_a_file_replaced_is_refused() {
    // dir p, p/x, file p (replacing the directory and p/x), then a hard link to p/x: in
    // order, p/x is gone by then, whether p went to the writer threads or not.
    let large = vec![b'x'; 2 << 20];
    for data in [&b"small"[..], &large[..]] {
        let scene = Scene::new();
        let archive = RawTar::default()
            .dir(b"p", 0o755)
            .file(b"p/x", b"in the directory")
            .file(b"p", data)
            .link(EntryType::Link, b"l", b"p/x")
            .finish();
        for result in scene.unpack_both_ways(&archive) {
            let message = result.expect_err("a link to p/x").to_string();
            assert!(message.contains("not an earlier entry"), "{message}");
            assert_eq!(scene.read("p"), data);
        }
    }
}

#[test]
fn non_utf8_and_very_long_names_are_unpacked() {
    let scene = Scene::new();
    let long_component = vec![b'n'; 200];
    let mut gnu_long = b"deep/".to_vec();
    for _ in 0..30 {
        gnu_long.extend_from_slice(&long_component);
        gnu_long.push(b'/');
    }
    gnu_long.extend_from_slice(b"leaf");
    let mut pax_long = b"pax/".to_vec();
    pax_long.extend_from_slice(&long_component);
    pax_long.extend_from_slice(b"/\xff\xfeleaf");
    let archive = RawTar::default()
        .file(b"caf\xe9/\xff\xfe", b"latin1")
        .long_name_file(&gnu_long, b"gnu")
        .pax_path_file(&pax_long, b"pax")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        let path = |name: &[u8]| {
            scene
                .target()
                .join(Path::new(std::ffi::OsStr::from_bytes(name)))
        };
        assert_eq!(fs::read(path(b"caf\xe9/\xff\xfe")).unwrap(), b"latin1");
        assert_eq!(fs::read(path(&pax_long)).unwrap(), b"pax");
        // Longer than PATH_MAX as one path: read it back one directory at a time.
        assert!(gnu_long.len() > 4096);
        let mut dir = fs::File::open(path(b"deep")).unwrap();
        let mut names: Vec<&[u8]> = gnu_long.split(|&b| b == b'/').skip(1).collect();
        let leaf = names.pop().unwrap();
        for name in names {
            let next = format!(
                "/proc/self/fd/{}/{}",
                std::os::fd::AsRawFd::as_raw_fd(&dir),
                std::str::from_utf8(name).unwrap()
            );
            dir = fs::File::open(next).unwrap();
        }
        let leaf_path = format!(
            "/proc/self/fd/{}/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            std::str::from_utf8(leaf).unwrap()
        );
        assert_eq!(fs::read(leaf_path).unwrap(), b"gnu");
    }
}

#[test]
fn a_huge_gnu_long_name_is_refused_before_it_is_read() {
    let scene = Scene::new();
    let mut raw = RawTar::default();
    let header = RawTar::header(b"././@LongLink", EntryType::GNULongName, 1 << 40, 0);
    raw.push(header, &[]);
    let err = scene.unpack(&raw.finish()).unwrap_err();
    assert!(matches!(err, UnpackError::BadEntry { .. }), "{err}");
}

fn sample_archive() -> Vec<u8> {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    RawTar::default()
        .dir(b"etc", 0o755)
        .file(b"etc/hostname", b"image\n")
        .file(b"big", &big)
        .file(b"z", b"last")
        .finish()
}

#[test]
fn truncated_gzip_is_refused() {
    let full = gzip(&sample_archive());
    for cut in [full.len() / 2, full.len() - 4, full.len() - 1, 20] {
        let scene = Scene::new();
        let err = scene.unpack(&full[..cut]).unwrap_err();
        assert!(
            matches!(err, UnpackError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
    Scene::new().unpack(&full).unwrap();
}

#[test]
fn corrupt_gzip_is_refused() {
    let mut bad = gzip(&sample_archive());
    let at = bad.len() - 6;
    bad[at] ^= 0xff; // inside the CRC32 trailer
    let err = Scene::new().unpack(&bad).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
}

#[test]
fn truncated_tar_is_refused() {
    let full = sample_archive();
    // Inside a file's data, and exactly at a header boundary (no end-of-archive marker).
    let boundary = full.len() - 1024 - 1024;
    for cut in [100_000, boundary] {
        let err = Scene::new().unpack(&full[..cut]).unwrap_err();
        assert!(
            matches!(err, UnpackError::Corrupt { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn a_gzip_bomb_is_stopped_by_the_size_limit_at_once() {
    // One header claiming a 1 TiB file, followed by gzip members of zeros: a few hundred
    // KiB on disk that would expand without end.
    let mut raw = RawTar::default();
    let header = RawTar::header(b"bomb", EntryType::Regular, 1 << 40, 0o644);
    raw.push(header, &[]);
    let mut bomb = gzip(&raw.bytes);
    let zeros = gzip(&vec![0u8; 16 << 20]);
    for _ in 0..64 {
        bomb.extend_from_slice(&zeros); // 1 GiB expanded
    }
    let scene = Scene::new();
    let start = Instant::now();
    let err = scene.unpack(&bomb).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("--max-image-size"));

    // Honest headers, small limit: the data of many files adds up past it.
    let mut raw = RawTar::default();
    let chunk = vec![0u8; 1 << 20];
    for i in 0..20 {
        raw.file(format!("f{i}").as_bytes(), &chunk);
    }
    let options = UnpackOptions {
        max_bytes: 8 << 20,
        ..UnpackOptions::default()
    };
    let err = Scene::new()
        .unpack_with(&gzip(&raw.finish()), &options)
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::TooLarge { limit } if limit == 8 << 20),
        "{err}"
    );
}

#[test]
fn zeros_after_the_end_marker_are_not_inflated_without_end() {
    let mut bomb = gzip(&RawTar::default().file(b"ok", b"1").finish());
    let zeros = gzip(&vec![0u8; 16 << 20]);
    for _ in 0..64 {
        bomb.extend_from_slice(&zeros);
    }
    let start = Instant::now();
    let err = Scene::new().unpack(&bomb).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
    // Stopped by the 16 MiB cap on what follows the end marker, not by running out of input.
    assert!(err.to_string().contains("16 MiB of data after"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn too_many_entries_are_refused() {
    let mut raw = RawTar::default();
    for i in 0..50 {
        raw.file(format!("f{i}").as_bytes(), b"");
    }
    let options = UnpackOptions {
        max_entries: 20,
        ..UnpackOptions::default()
    };
    let err = Scene::new()
        .unpack_with(&raw.finish(), &options)
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::TooManyEntries { limit: 20 }),
        "{err}"
    );
}

#[test]
fn what_is_not_a_tarball_gets_a_one_line_error() {
    let cases: [(&[u8], &str); 5] = [
        (b"", "empty"),
        (b"\x28\xb5\x2f\xfd rest of a zstd frame", "zstd"),
        (&[0x42; 3000], "not a tar archive"),
        (b"#!/bin/sh\necho hi\n", "not a tar archive"),
        (b"root:x:0:0:root:/root:/bin/bash\n", "not a tar archive"),
    ];
    for (bytes, expected) in cases {
        let err = Scene::new().unpack(bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // What the file holds is not quoted back (it could be anything, secrets too).
        assert!(!err.contains("root:x") && !err.contains("echo hi"), "{err}");
    }
}

#[test]
fn modes_times_and_read_only_directories_come_out_right() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .dir(b"ro", 0o555)
        .file_mode(b"ro/file", b"inside a read-only dir", 0o640)
        .link(EntryType::Symlink, b"ro/link", b"file")
        .dir(b"locked", 0o000)
        .file(b"locked/inside", b"unreadable dir, still removable")
        .finish();
    scene.unpack(&archive).unwrap();
    let meta = |n: &str| fs::symlink_metadata(scene.target().join(n)).unwrap();
    assert_eq!(meta("ro").permissions().mode() & 0o7777, 0o555);
    assert_eq!(meta("locked").permissions().mode() & 0o7777, 0o000);
    assert_eq!(meta("ro/file").permissions().mode() & 0o7777, 0o640);
    for name in ["ro", "ro/file", "ro/link"] {
        assert_eq!(meta(name).mtime(), 1_600_000_000, "{name}");
    }
    assert_eq!(
        fs::read_link(scene.target().join("ro/link")).unwrap(),
        Path::new("file")
    );
    // The tree can be removed again, read-only directory and all.
    mkroot_common::unpack::remove_tree(&scene.target()).unwrap();
    assert!(!scene.target().exists());
    fs::create_dir(scene.target()).unwrap();
}

#[test]
fn owners_are_kept_when_root() {
    if unsafe { libc::geteuid() } != 0 {
        return; // only root can give files away; covered by CI, which runs as root
    }
    let scene = Scene::new();
    let mut raw = RawTar::default();
    let mut header = RawTar::header(b"owned", EntryType::Regular, 0, 0o644);
    header.set_uid(1234);
    header.set_gid(4321);
    raw.push(header, &[]);
    scene.unpack(&raw.finish()).unwrap();
    let meta = fs::metadata(scene.target().join("owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
}

#[test]
fn the_target_must_be_an_empty_directory() {
    let scene = Scene::new();
    fs::write(scene.target().join("already"), b"").unwrap();
    let archive = RawTar::default().file(b"f", b"").finish();
    let err = unpack(
        Cursor::new(archive),
        &scene.target(),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::TargetNotEmpty { .. }), "{err}");
}

#[test]
fn magic_and_looping_symlinks_stay_inside_or_fail() {
    let scene = Scene::new();
    let archive = RawTar::default()
        .link(EntryType::Symlink, b"procroot", b"/proc/self/root")
        .file(b"procroot/etc/escaped", b"inside")
        .link(EntryType::Symlink, b"fdroot", b"/proc/self/fd/3")
        .file(b"fdroot/escaped", b"inside too")
        .finish();
    for result in scene.unpack_both_ways(&archive) {
        result.unwrap();
        // Resolved in the image, where /proc is just a directory the archive made.
        assert_eq!(scene.read("proc/self/root/etc/escaped"), b"inside");
        assert_eq!(scene.read("proc/self/fd/3/escaped"), b"inside too");
    }

    let looping = RawTar::default()
        .link(EntryType::Symlink, b"a", b"b")
        .link(EntryType::Symlink, b"b", b"a")
        .file(b"a/x", b"nowhere")
        .finish();
    let scene = Scene::new();
    for result in scene.unpack_both_ways(&looping) {
        let err = result.unwrap_err();
        assert!(matches!(err, UnpackError::Write { .. }), "{err}");
        assert!(err.to_string().contains("\"a/x\""), "{err}");
    }
}

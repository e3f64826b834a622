//! The image cache against real files, threads and processes: one entry per digest however
//! many launches race for it, no re-hash on a cached launch, a fresh hash when the file
//! changes, and nothing half-written left visible after a crash.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use mkroot_common::digest::sha256_file;
use mkroot_launcher::cache::{CacheError, ImageCache};

/// Env var that turns `child_process_get_or_unpack` into a child of the concurrency tests.
const CHILD_ENV: &str = "MKROOT_CACHE_TEST_CHILD";

/// `one.tgz` and `two.tgz` in `dir`, different images.
fn two_images(dir: &Path) -> (PathBuf, PathBuf) {
    let (one, two) = (dir.join("one.tgz"), dir.join("two.tgz"));
    write_image(&one, "one");
    write_image(&two, "two");
    (one, two)
}

/// A gzip tarball with a few files, their content varied by `seed`.
fn write_image(path: &Path, seed: &str) {
    let file = fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(1_600_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data).unwrap();
    };
    add("etc/hostname", format!("{seed}\n").as_bytes(), 0o644);
    add("bin/tool", &vec![7u8; 100_000], 0o755);
    add("seed", seed.as_bytes(), 0o644);
    tar.into_inner().unwrap().finish().unwrap();
}

/// A plain tarball of `megabytes` MiB of poorly compressible data in 1 MiB files: slow
/// enough to unpack that a test can kill the unpacker midway.
fn write_big_image(path: &Path, megabytes: usize) {
    let mut tar = tar::Builder::new(std::io::BufWriter::new(fs::File::create(path).unwrap()));
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for word in chunk.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    for i in 0..megabytes {
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let mut header = tar::Header::new_gnu();
        header.set_size(chunk.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("data/{i:04}"), &chunk[..])
            .unwrap();
    }
    tar.into_inner().unwrap().flush().unwrap();
}

/// The names in `dir`, sorted; none when it does not exist (the cache makes its
/// subdirectories only when it first writes into them).
fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        assert!(!dir.exists(), "{} unreadable", dir.display());
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Backdates a directory so the sweep's grace period does not protect it.
fn backdate(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::open(dir).unwrap().set_modified(old).unwrap();
}

#[test]
fn ten_threads_racing_for_one_image_leave_one_entry() {
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("img.tgz");
    write_image(&image, "threads");
    let cache_dir = scratch.path().join("cache");
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (barrier, image, cache_dir) = (barrier.clone(), image.clone(), cache_dir.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let cache = ImageCache::open(&cache_dir).unwrap();
                cache.get_or_unpack(&image).unwrap()
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let expected = sha256_file(&image).unwrap();
    for result in &results {
        assert_eq!(result.digest.as_deref(), Some(expected.as_str()));
        assert_eq!(result.root, results[0].root);
    }
    assert_eq!(fs::read(results[0].root.join("seed")).unwrap(), b"threads");
    let cache = ImageCache::open(&cache_dir).unwrap();
    assert_eq!(cache.list().unwrap().len(), 1);
    assert_eq!(names_in(&cache_dir.join("images")), [expected]);
    assert!(names_in(&cache_dir.join("tmp")).is_empty());
}

#[test]
fn ten_processes_racing_for_one_image_leave_one_entry() {
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("img.tgz");
    write_image(&image, "processes");
    let cache_dir = scratch.path().join("cache");
    let children: Vec<_> = (0..10)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_process_get_or_unpack", "--nocapture"])
                .env(
                    CHILD_ENV,
                    format!("{}\n{}", cache_dir.display(), image.display()),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let expected = sha256_file(&image).unwrap();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains(&format!("DIGEST={expected}")), "{stdout}");
    }
    assert_eq!(names_in(&cache_dir.join("images")), [expected]);
    assert!(names_in(&cache_dir.join("tmp")).is_empty());
}

/// In a child of the test above (the env var set): one get_or_unpack, digest on stdout.
/// Run directly, it checks that a fresh cache hands out the file's sha256.
#[test]
fn child_process_get_or_unpack() {
    // Run directly, the scratch dir is removed on drop, also when an assert fails.
    let mut scratch = None;
    let (cache_dir, image) = match std::env::var(CHILD_ENV) {
        Ok(spec) => {
            let (cache, image) = spec.split_once('\n').unwrap();
            (PathBuf::from(cache), PathBuf::from(image))
        }
        Err(_) => {
            let dir = scratch.insert(tempfile::tempdir().unwrap());
            let image = dir.path().join("img.tgz");
            write_image(&image, "direct");
            (dir.path().join("cache"), image)
        }
    };
    let cache = ImageCache::open(&cache_dir).unwrap();
    let got = cache.get_or_unpack(&image).unwrap();
    let digest = got.digest.unwrap();
    assert_eq!(digest, sha256_file(&image).unwrap());
    println!("DIGEST={digest}");
    drop(scratch);
}

#[test]
fn a_cached_launch_trusts_the_stat_index_instead_of_hashing() {
    let scratch = tempfile::tempdir().unwrap();
    let (one, two) = two_images(scratch.path());
    let cache = ImageCache::open(&scratch.path().join("cache")).unwrap();
    let first = cache.get_or_unpack(&one).unwrap();
    let second = cache.get_or_unpack(&two).unwrap();
    assert_ne!(first.digest, second.digest);
    // Point one.tgz's index entry at two's digest: a launch that hashed would notice.
    let index = cache.dir().join("index");
    for name in names_in(&index) {
        let link = index.join(&name);
        if fs::read_link(&link).unwrap().to_str() == first.digest.as_deref() {
            fs::remove_file(&link).unwrap();
            std::os::unix::fs::symlink(second.digest.as_deref().unwrap(), &link).unwrap();
        }
    }
    assert_eq!(cache.get_or_unpack(&one).unwrap().digest, second.digest);
}

#[test]
fn a_changed_image_file_is_hashed_again() {
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("img.tgz");
    write_image(&image, "before");
    let cache = ImageCache::open(&scratch.path().join("cache")).unwrap();
    let before = cache.get_or_unpack(&image).unwrap();
    assert_eq!(cache.get_or_unpack(&image).unwrap(), before);

    // Same size, new content, rewritten in place (same inode).
    write_image(&image, "after!");
    let after = cache.get_or_unpack(&image).unwrap();
    assert_ne!(after.digest, before.digest);
    assert_eq!(
        after.digest.as_deref(),
        Some(sha256_file(&image).unwrap().as_str())
    );
    assert_eq!(fs::read(after.root.join("seed")).unwrap(), b"after!");
    assert_eq!(cache.list().unwrap().len(), 2);

    // Same content written again: new stat, same digest, no new entry.
    let bytes = fs::read(&image).unwrap();
    fs::write(&image, &bytes).unwrap();
    assert_eq!(cache.get_or_unpack(&image).unwrap(), after);
    assert_eq!(cache.list().unwrap().len(), 2);
}

#[test]
fn a_directory_image_is_used_in_place() {
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("rootfs");
    fs::create_dir(&tree).unwrap();
    let cache = ImageCache::open(&scratch.path().join("cache")).unwrap();
    let got = cache.get_or_unpack(&tree).unwrap();
    assert_eq!(got.digest, None);
    assert_eq!(got.root, fs::canonicalize(&tree).unwrap());
    assert!(cache.list().unwrap().is_empty());
}

#[test]
fn a_corrupt_image_leaves_nothing_behind() {
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("img.tgz");
    write_image(&image, "corrupt");
    let bytes = fs::read(&image).unwrap();
    fs::write(&image, &bytes[..bytes.len() / 2]).unwrap();
    let cache_dir = scratch.path().join("cache");
    let cache = ImageCache::open(&cache_dir).unwrap();
    let err = cache.get_or_unpack(&image).unwrap_err();
    assert!(matches!(err, CacheError::Unpack { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("img.tgz") && message.contains("truncated"),
        "{message}"
    );
    assert!(names_in(&cache_dir.join("images")).is_empty());
    assert!(names_in(&cache_dir.join("tmp")).is_empty());

    let missing = cache
        .get_or_unpack(&scratch.path().join("nope.tgz"))
        .unwrap_err();
    assert!(missing.to_string().contains("nope.tgz"), "{missing}");
}

#[test]
fn prune_and_remove_spare_images_in_use() {
    let scratch = tempfile::tempdir().unwrap();
    let (one, two) = two_images(scratch.path());
    let cache_dir = scratch.path().join("cache");
    let running = ImageCache::open(&cache_dir).unwrap();
    let held = running.get_or_unpack(&one).unwrap();
    let admin = ImageCache::open(&cache_dir).unwrap();
    let idle = {
        let other = ImageCache::open(&cache_dir).unwrap();
        other.get_or_unpack(&two).unwrap()
    };

    let listed = admin.list().unwrap();
    assert_eq!(listed.len(), 2);
    let held_digest = held.digest.clone().unwrap();
    for entry in &listed {
        assert_eq!(entry.in_use, entry.digest == held_digest, "{entry}");
        assert!(entry.size > 100_000);
    }
    let err = admin.remove(&held_digest[..12]).unwrap_err();
    assert!(matches!(err, CacheError::InUse(_)), "{err}");

    let report = admin.prune().unwrap();
    assert_eq!(report.removed, [idle.digest.clone().unwrap()]);
    assert_eq!(report.in_use, 1);
    assert!(
        held.root.join("seed").exists(),
        "an image in use must survive prune"
    );
    assert!(!idle.root.exists());

    drop(running);
    assert_eq!(admin.remove(&held_digest[..12]).unwrap(), held_digest);
    assert!(admin.list().unwrap().is_empty());
    assert!(matches!(
        admin.remove("abcdef").unwrap_err(),
        CacheError::NotCached(_)
    ));
    assert!(names_in(&cache_dir.join("tmp")).is_empty());
    admin.prune().unwrap();
    assert!(
        names_in(&cache_dir.join("index")).is_empty(),
        "dangling index entries go"
    );
    assert!(
        names_in(&cache_dir.join("locks")).is_empty(),
        "idle lock files go"
    );
}

#[test]
fn leftovers_of_crashed_runs_are_swept_and_live_ones_kept() {
    let scratch = tempfile::tempdir().unwrap();
    let cache_dir = scratch.path().join("cache");
    let cache = ImageCache::open(&cache_dir).unwrap();
    // An unpack that died halfway: a tree nobody holds a lock on.
    let dead = cache_dir.join("tmp/unpack-12345-dead-0");
    fs::create_dir_all(dead.join("root/usr/bin")).unwrap();
    fs::write(dead.join("root/usr/bin/half"), b"half").unwrap();
    fs::set_permissions(dead.join("root/usr"), fs::Permissions::from_mode(0o555)).unwrap();
    backdate(&dead);
    // An unpack still running: its owner (this process) holds the dir's lock.
    let live = cache_dir.join("tmp/unpack-12345-live-0");
    fs::create_dir(&live).unwrap();
    let live_lock = fs::File::open(&live).unwrap();
    mkroot_launcher::file_lock::lock(&live_lock, libc::LOCK_EX).unwrap();
    backdate(&live);
    // A fresh, unlocked dir: its owner may be about to lock it, so the sweep waits.
    let fresh = cache_dir.join("tmp/unpack-12345-fresh-0");
    fs::create_dir(&fresh).unwrap();

    assert_eq!(cache.sweep_stale().unwrap(), 1);
    assert!(!dead.exists());
    assert!(live.exists() && fresh.exists());
}

#[test]
fn an_unpack_killed_midway_leaves_no_entry() {
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("big.tar");
    write_big_image(&image, 64);
    let cache_dir = scratch.path().join("cache");
    ImageCache::open(&cache_dir).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_get_or_unpack", "--nocapture"])
        .env(
            CHILD_ENV,
            format!("{}\n{}", cache_dir.display(), image.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once its unpack has written some files.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // tmp/ itself is made by the child's first install.
        let started = fs::read_dir(cache_dir.join("tmp"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .any(|e| e.path().join("root/data/0002").exists());
        if started {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the child never started unpacking"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let cache = ImageCache::open(&cache_dir).unwrap();
    assert!(
        cache.list().unwrap().is_empty(),
        "no half-written entry is visible"
    );
    assert!(names_in(&cache_dir.join("images")).is_empty());
    for name in names_in(&cache_dir.join("tmp")) {
        backdate(&cache_dir.join("tmp").join(name));
    }
    assert_eq!(cache.sweep_stale().unwrap(), 1);
    assert!(names_in(&cache_dir.join("tmp")).is_empty());
    // The next launch unpacks it whole.
    let got = cache.get_or_unpack(&image).unwrap();
    assert_eq!(names_in(&got.root.join("data")).len(), 64);
}

/// Env var that runs `rootless_child` as the unprivileged half of the test below.
const ROOTLESS_ENV: &str = "MKROOT_CACHE_TEST_ROOTLESS";

/// What a user without root gets: no chown attempts, read-only and mode-0 directories that
/// unpack and are removed again, setuid bits stripped, and a working cache in their dir.
/// As root (CI), the test binary is copied out and rerun as `nobody` in a dir it owns.
#[test]
fn rootless_unpack_and_cache() {
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        match std::env::var_os(ROOTLESS_ENV) {
            Some(dir) => rootless_child(Path::new(&dir), true),
            None => rootless_child(tempfile::tempdir().unwrap().path(), false),
        }
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(scratch.path(), Some(nobody), Some(nobody)).unwrap();
    // The test binary may sit where nobody cannot reach it: run a copy.
    let exe = scratch.path().join("test-binary");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new(&exe)
        .args(["--exact", "rootless_unpack_and_cache", "--nocapture"])
        .env(ROOTLESS_ENV, scratch.path())
        .env("HOME", scratch.path())
        .env_remove("XDG_CACHE_HOME")
        .current_dir(scratch.path())
        .uid(nobody)
        .gid(nobody)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ROOTLESS OK"));
}

/// The unprivileged half, in `dir` (owned by the caller); `default_home` when HOME points
/// at `dir`, so the default cache dir is checked too.
fn rootless_child(dir: &Path, default_home: bool) {
    let image = dir.join("img.tgz");
    let file = fs::File::create(&image).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(1234); // not ours: must not be chowned to
        header.set_gid(1234);
        header.set_entry_type(kind);
        tar.append_data(&mut header, name, data).unwrap();
    };
    add("ro", tar::EntryType::Directory, 0o555, b"");
    add(
        "ro/file",
        tar::EntryType::Regular,
        0o644,
        b"in a read-only dir",
    );
    add("locked", tar::EntryType::Directory, 0o000, b"");
    add(
        "locked/file",
        tar::EntryType::Regular,
        0o600,
        b"in a mode-0 dir",
    );
    add("usr/bin/su", tar::EntryType::Regular, 0o4755, b"setuid");
    tar.into_inner().unwrap().finish().unwrap();

    let cache_dir = if default_home {
        let cache_dir = ImageCache::default_dir();
        assert_eq!(cache_dir, dir.join(".cache/mkroot-launch"));
        cache_dir
    } else {
        dir.join("cache")
    };
    let cache = ImageCache::open(&cache_dir).unwrap();
    let got = cache.get_or_unpack(&image).unwrap();
    let mode = |name: &str| {
        fs::symlink_metadata(got.root.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("locked"), 0o000);
    assert_eq!(mode("usr/bin/su"), 0o755);
    assert_eq!(
        fs::read(got.root.join("ro/file")).unwrap(),
        b"in a read-only dir"
    );
    let dir_mode = fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    drop(cache);
    let cache = ImageCache::open(&cache_dir).unwrap();
    assert_eq!(cache.prune().unwrap().removed.len(), 1);
    assert!(names_in(&cache_dir.join("images")).is_empty());
    println!("ROOTLESS OK");
}

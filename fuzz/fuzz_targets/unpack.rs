//! The image unpacker on arbitrary bytes (tar, gzip or neither): it may refuse them, but it
//! must not panic, hang, or put anything outside its root.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mkroot_common::unpack::{remove_tree, unpack, UnpackOptions};

fuzz_target!(|data: &[u8]| {
    // tmpfs when there is one: thousands of runs a second create and remove files.
    let base = if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let scratch = tempfile::tempdir_in(base).expect("scratch dir");
    let target = scratch.path().join("root");
    let sentinel = scratch.path().join("sentinel");
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(&sentinel).unwrap();
    let options = UnpackOptions {
        max_bytes: 4 << 20,
        max_entries: 10_000,
        ..UnpackOptions::default()
    };
    let _ = unpack(data, &target, &options);
    // Nothing next to the root, nothing in the sentinel.
    let mut names: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["root", "sentinel"]);
    assert_eq!(std::fs::read_dir(&sentinel).unwrap().count(), 0);
    remove_tree(&target).expect("the unpacked tree can be removed");
});

//! The cache with OCI images: layers shared by diff_id between images, the size limit
//! counted over all of an image's layers, and the config kept beside the tree.

use std::fs;
use std::path::Path;

use mkroot_common::unpack::{UnpackError, UnpackOptions};
use mkroot_launcher::cache::{CacheError, ImageCache};
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A plain tar with one file of `size` bytes at `name`.
fn layer(name: &str, size: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, &vec![b'x'; size][..])
        .unwrap();
    tar.into_inner().unwrap()
}

/// A docker-archive at `path` of `layers` (plain tars), with `Cmd` in its config.
fn docker_archive(path: &Path, layers: &[Vec<u8>], cmd: &str) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256_hex(&config));
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("{i}/layer.tar"))
        .collect();
    let manifest =
        serde_json::to_vec(&serde_json::json!([{"Config": config_name, "Layers": names}])).unwrap();
    let mut tar = tar::Builder::new(fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, data).unwrap();
    };
    add("manifest.json", &manifest);
    add(&config_name, &config);
    for (name, data) in names.iter().zip(layers) {
        add(name, data);
    }
    tar.finish().unwrap();
}

#[test]
fn images_sharing_a_layer_share_its_tree_and_keep_their_own_config() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(&dir.path().join("cache")).unwrap();
    let base = layer("base", 1000);
    let (one, two) = (dir.path().join("one.tar"), dir.path().join("two.tar"));
    docker_archive(&one, &[base.clone(), layer("one", 10)], "/one");
    docker_archive(&two, &[base, layer("two", 10)], "/two");
    let first = cache.get_or_unpack(&one).unwrap();
    let second = cache.get_or_unpack(&two).unwrap();
    assert_ne!(first.digest, second.digest);
    assert_eq!(first.run_defaults.unwrap().cmd, ["/one"]);
    assert_eq!(second.run_defaults.unwrap().cmd, ["/two"]);
    assert!(first.root.join("one").is_file() && !first.root.join("two").exists());
    // Three layer trees for four layers; the shared file is one inode in both images.
    let layers = fs::read_dir(dir.path().join("cache/oci-layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 3);
    use std::os::unix::fs::MetadataExt;
    let inode = |root: &Path| fs::metadata(root.join("base")).unwrap().ino();
    assert_eq!(inode(&first.root), inode(&second.root));
    // The stat index finds it again, config and all.
    assert_eq!(
        cache.get_or_unpack(&one).unwrap().run_defaults.unwrap().cmd,
        ["/one"]
    );
}

#[test]
fn a_cache_made_before_oci_images_takes_them() {
    // An older cache had images, index, locks, tmp and layers, no oci-layers: as many
    // subdirectories, so their count says nothing about which ones are there.
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    for sub in ["images", "index", "locks", "tmp", "layers"] {
        fs::create_dir_all(cache_dir.join(sub)).unwrap();
    }
    let cache = ImageCache::open(&cache_dir).unwrap();
    let image = dir.path().join("image.tar");
    docker_archive(&image, &[layer("file", 10)], "/run");
    let cached = cache.get_or_unpack(&image).unwrap();
    assert!(cached.root.join("file").is_file());
    assert_eq!(cache.list().unwrap().len(), 1);
}

#[test]
fn the_size_limit_counts_all_layers_of_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut cache = ImageCache::open(&dir.path().join("cache")).unwrap();
    cache.set_unpack_options(UnpackOptions {
        max_bytes: 1000,
        ..UnpackOptions::default()
    });
    let image = dir.path().join("image.tar");
    // Each layer fits the limit; together they do not.
    docker_archive(&image, &[layer("a", 600), layer("b", 600)], "/a");
    match cache.get_or_unpack(&image) {
        Err(CacheError::Unpack {
            source: UnpackError::TooLarge { limit },
            ..
        }) => assert_eq!(limit, 1000),
        other => panic!("expected the size limit, got {other:?}"),
    }
    // No image entry (images/ is made by the first install, so it may not be there).
    let images = fs::read_dir(dir.path().join("cache/images"));
    assert_eq!(images.map_or(0, |entries| entries.count()), 0);
}

//! Support for the OCI input tests: images written by hand (tar crate, sha256 of every
//! blob), in the three containers `launch` reads: a docker-archive, an OCI layout
//! directory and an oci-archive. Nothing here comes from the code under test.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One layer's tar, built entry by entry.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerTar {
    pub fn new() -> LayerTar {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        LayerTar { builder }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    pub fn dir(mut self, path: &str) -> LayerTar {
        let mut header = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut header, path, std::io::empty())
            .expect("tar dir");
        self
    }

    pub fn file(mut self, path: &str, content: &str) -> LayerTar {
        let mut header = Self::header(tar::EntryType::Regular, 0o644, content.len() as u64);
        self.builder
            .append_data(&mut header, path, content.as_bytes())
            .expect("tar file");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> LayerTar {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut header, path, target)
            .expect("tar symlink");
        self
    }

    /// Everything under the host directory `root`, symlinks kept as symlinks.
    pub fn tree(mut self, root: &Path) -> LayerTar {
        self.builder.append_dir_all(".", root).expect("tar tree");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("tar finish")
    }
}

/// A layer as stored: the uncompressed tar (its sha256 is the diff_id) and the blob.
pub struct Layer {
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
    pub gzip: bool,
}

impl Layer {
    pub fn plain(tar: Vec<u8>) -> Layer {
        Layer {
            blob: tar.clone(),
            tar,
            gzip: false,
        }
    }

    pub fn gzip(tar: Vec<u8>) -> Layer {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&tar).expect("gzip");
        Layer {
            blob: encoder.finish().expect("gzip"),
            tar,
            gzip: true,
        }
    }

    pub fn diff_id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.tar))
    }

    fn media_type(&self) -> &'static str {
        if self.gzip {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        }
    }
}

/// An image: layers bottom first, and the `config` part of the image config.
pub struct Image {
    pub layers: Vec<Layer>,
    pub run_config: serde_json::Value,
    /// Media type to claim for every layer instead of the real one (to test refusals).
    pub claimed_media_type: Option<String>,
}

impl Image {
    pub fn new(layers: Vec<Layer>, run_config: serde_json::Value) -> Image {
        Image {
            layers,
            run_config,
            claimed_media_type: None,
        }
    }

    /// The config blob (diff_ids from the layers).
    pub fn config_json(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(Layer::diff_id).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": self.run_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("config json")
    }

    /// docker's layout: manifest.json, `<config digest>.json`, `<n>/layer.tar`.
    pub fn write_docker_archive(&self, path: &Path) {
        let config = self.config_json();
        let config_name = format!("{}.json", sha256_hex(&config));
        let layer_names: Vec<String> = (0..self.layers.len())
            .map(|i| format!("layer{i}/layer.tar"))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["oci-input-test:latest"],
            "Layers": layer_names,
        }]))
        .unwrap();
        let mut files: Vec<(String, Vec<u8>)> =
            vec![("manifest.json".into(), manifest), (config_name, config)];
        for (name, layer) in layer_names.into_iter().zip(&self.layers) {
            files.push((name, layer.blob.clone()));
        }
        write_tar(path, &files);
    }

    /// The OCI layout's files: `oci-layout`, `index.json`, `blobs/sha256/*`.
    pub fn oci_layout_files(&self) -> Vec<(String, Vec<u8>)> {
        let config = self.config_json();
        let blob = |bytes: &[u8]| format!("blobs/sha256/{}", sha256_hex(bytes));
        let descriptor = |media_type: &str, bytes: &[u8]| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": format!("sha256:{}", sha256_hex(bytes)),
                "size": bytes.len(),
            })
        };
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| {
                let media_type = self.claimed_media_type.as_deref().unwrap_or(l.media_type());
                descriptor(media_type, &l.blob)
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": layers,
        }))
        .unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [descriptor("application/vnd.oci.image.manifest.v1+json", &manifest)],
        }))
        .unwrap();
        let mut files = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), index),
            (blob(&manifest), manifest),
            (blob(&config), config),
        ];
        for layer in &self.layers {
            files.push((blob(&layer.blob), layer.blob.clone()));
        }
        files
    }

    pub fn write_oci_layout(&self, dir: &Path) {
        for (name, bytes) in self.oci_layout_files() {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }

    pub fn write_oci_archive(&self, path: &Path) {
        write_tar(path, &self.oci_layout_files());
    }
}

/// A plain tar of `files` (name, content), parent dirs implied.
fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("create archive");
    let mut builder = tar::Builder::new(file);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, name, &bytes[..])
            .expect("append");
    }
    builder.finish().expect("finish archive");
}

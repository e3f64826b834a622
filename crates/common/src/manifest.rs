//! The image manifest: the default command and every file in the image, with its
//! sha256 and the reason it is there. Stored inside the image at [`MANIFEST_PATH`].

use serde::{Deserialize, Serialize};

use crate::run_defaults::RunDefaults;

/// Where the manifest lives inside an image (relative to the image root).
pub const MANIFEST_PATH: &str = ".mkroot/manifest.json";

/// Version of the manifest layout; bumped on incompatible changes.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    pub version: u32,
    /// The image's default command (argv), run when `launch` is given none.
    pub cmd: Vec<String>,
    /// Environment for the default command, as `KEY=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Every regular file, symlink and directory in the image, sorted by path.
    pub files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path inside the image, absolute (`/usr/bin/bash`).
    pub path: String,
    /// sha256 of the contents, for regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Why the file is in the image (`program`, `needed by /usr/bin/bash`, `nss module`, ...).
    pub reason: String,
}

impl ImageManifest {
    /// Canonical JSON bytes: fields in declaration order, entries as given (callers sort),
    /// pretty-printed with a trailing newline, so equal manifests give equal bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serialises");
        out.push(b'\n');
        out
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The PATH a command gets when neither the image nor the user sets one (POSIX `getconf
/// PATH` on Debian, plus the sbin directories): the builder looks programs up along it
/// and writes it into an image's environment, the launcher gives it to a command.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a manifest says about running the image: its command (one argv, no entrypoint)
/// and environment. Read without building the file list (thousands of entries in a large
/// image): all `launch` needs when it starts.
pub fn run_defaults_from_json(bytes: &[u8]) -> Result<RunDefaults, serde_json::Error> {
    #[derive(Deserialize)]
    struct Command {
        cmd: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
    }
    let Command { cmd, env } = serde_json::from_slice(bytes)?;
    Ok(RunDefaults {
        cmd,
        env,
        ..RunDefaults::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_reads_without_the_file_list() {
        let json = br#"{"version":1,"cmd":["/bin/sh","-c","echo hi"],"env":["A=1"],"files":[{"path":"/x","kind":"file","mode":420,"sha256":"00","reason":"r"}]}"#;
        let defaults = run_defaults_from_json(json).unwrap();
        assert_eq!(defaults.cmd, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(defaults.env, ["A=1"]);
        assert!(defaults.entrypoint.is_empty());
        assert!(run_defaults_from_json(br#"{"version":1}"#).is_err());
    }

    #[test]
    fn manifests_round_trip_through_canonical_json() {
        let manifest = ImageManifest {
            version: MANIFEST_VERSION,
            cmd: vec!["/usr/bin/bash".into(), "-l".into()],
            env: vec!["PATH=/usr/bin".into()],
            files: vec![
                ManifestEntry {
                    path: "/lib".into(),
                    sha256: None,
                    link: Some("usr/lib".into()),
                    reason: "merged-/usr link".into(),
                },
                ManifestEntry {
                    path: "/usr/bin/bash".into(),
                    sha256: Some("ab".repeat(32)),
                    link: None,
                    reason: "program".into(),
                },
            ],
        };
        let bytes = manifest.to_json_bytes();
        assert!(bytes.ends_with(b"}\n"));
        assert_eq!(ImageManifest::from_json_bytes(&bytes).unwrap(), manifest);
        assert_eq!(bytes, manifest.clone().to_json_bytes());
        // Absent optional fields are left out, not written as null.
        assert!(!String::from_utf8(bytes).unwrap().contains("null"));
    }
}

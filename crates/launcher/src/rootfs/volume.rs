//! `-v HOST:CONTAINER[:ro]`: a host path bind-mounted into the container, checked when
//! the flag is read.
use std::path::PathBuf;

use super::MountPoint;
use crate::error::LaunchError;

/// A bind mount from the host: `-v HOST:CONTAINER[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
    /// What the mount point is made as: a directory for a directory, a file for
    /// anything else. Decided once, when the flag is read, so the mount point made in
    /// the container and the bind mounted on it always agree.
    pub mount_point: MountPoint,
}

impl std::str::FromStr for Volume {
    type Err = LaunchError;

    fn from_str(spec: &str) -> Result<Volume, LaunchError> {
        let invalid = |why: &str| {
            LaunchError::Invalid(format!(
                "--volume {spec}: {why}; give HOST:CONTAINER or HOST:CONTAINER:ro"
            ))
        };
        let mut parts = spec.split(':');
        let (host, container) = match (parts.next(), parts.next()) {
            (Some(h), Some(c)) if !h.is_empty() && !c.is_empty() => (h, c),
            _ => return Err(invalid("needs a host and a container path")),
        };
        let read_only = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => return Err(invalid(&format!("unknown mode `{other}`"))),
        };
        if parts.next().is_some() {
            return Err(invalid("too many `:`"));
        }
        if !container.starts_with('/') {
            return Err(invalid("the container path must be absolute"));
        }
        let host = std::fs::canonicalize(host)
            .map_err(|e| LaunchError::Invalid(format!("--volume {spec}: host path {host}: {e}")))?;
        let mount_point = if host.is_dir() {
            MountPoint::Dir
        } else {
            MountPoint::File
        };
        Ok(Volume {
            host,
            container: container.to_string(),
            read_only,
            mount_point,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_modes_parse() {
        let v: Volume = "/tmp:/data:ro".parse().unwrap();
        assert!(v.read_only);
        assert_eq!(v.container, "/data");
        let v: Volume = "/tmp:/data".parse().unwrap();
        assert!(!v.read_only);
        assert!("/tmp:data".parse::<Volume>().is_err());
        assert!("/tmp:/data:rx".parse::<Volume>().is_err());
        assert!("/does/not/exist:/data".parse::<Volume>().is_err());
    }
}

//! How much of the host's memory the container's tmpfs mounts may hold.
//!
//! Everything a container writes lands in memory: the writable layer is a tmpfs, and so
//! are `/dev/shm` and each `--tmpfs`. A tmpfs mounted without `size=` may grow to half
//! the host's RAM, each of them, and its pages are shared memory that no process's RSS
//! shows, so the OOM killer would pick host processes first. Every one gets a bound
//! here: the writable layer `--memory` when given (the container cannot hold more
//! anyway) and a quarter of RAM otherwise, `/dev/shm` 64 MiB (docker's default), and a
//! `--tmpfs` the writable layer's bound unless it says `size=`.

use std::ffi::CString;
use std::fmt;
use std::str::FromStr;

use mkroot_common::size::{human_bytes, parse_size};

/// docker's `/dev/shm` size: enough for the shared memory programs use in practice
/// (browsers and databases ask for more, with `--shm-size`).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// The smallest tmpfs bound accepted: the writable layer holds the per-launch /etc
/// files, and a tmpfs smaller than a few pages is a typo.
const MIN_SIZE: u64 = 1 << 20;

/// The bounds of the container's own tmpfs mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageSizes {
    /// The writable layer over the image: what the container may write anywhere not
    /// covered by a volume or another tmpfs.
    pub writable_layer: u64,
    /// `/dev/shm`.
    pub shm: u64,
}

impl StorageSizes {
    /// The sizes for a launch: the flags' values, or the defaults the module explains.
    pub fn new(
        writable_layer: Option<u64>,
        shm: Option<u64>,
        memory_limit: Option<u64>,
    ) -> StorageSizes {
        StorageSizes {
            writable_layer: writable_layer
                .or(memory_limit)
                .unwrap_or_else(|| host_memory() / 4),
            shm: shm.unwrap_or(DEFAULT_SHM_SIZE),
        }
    }
}

/// The host's RAM, from sysinfo(2): one system call on every launch's way, where
/// /proc/meminfo would be a file to open and parse.
fn host_memory() -> u64 {
    // SAFETY: sysinfo fills the struct it is given.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 4 << 30;
    }
    info.totalram * u64::from(info.mem_unit)
}

/// A size flag's value (`--storage-opt size=`, `--shm-size`, `--tmpfs ...:size=`).
pub fn parse_tmpfs_size(flag: &str, text: &str) -> Result<u64, String> {
    parse_size(text)
        .ok()
        .filter(|&bytes| bytes >= MIN_SIZE)
        .ok_or_else(|| {
            // `--shm-size 1k`, but `--storage-opt size=1k`.
            let gap = if flag.ends_with('=') { "" } else { " " };
            format!("{flag}{gap}{text}: give a size of at least 1M, e.g. 64M or 2G")
        })
}

/// `--storage-opt size=SIZE` (docker's spelling); the only option there is.
pub fn parse_storage_opt(text: &str) -> Result<u64, String> {
    match text.split_once('=') {
        Some(("size", size)) => parse_tmpfs_size("--storage-opt size=", size),
        _ => Err(format!(
            "--storage-opt {text}: the only option is size=SIZE (the writable layer's bound, e.g. size=2G)"
        )),
    }
}

/// `--tmpfs PATH[:OPTIONS]`, docker's syntax: OPTIONS is a comma-separated list of
/// `size=SIZE`, `mode=OCTAL`, `ro`/`rw`, `exec`/`noexec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    /// The absolute path inside the container.
    pub path: String,
    /// `None`: the writable layer's bound.
    pub size: Option<u64>,
    pub mode: u32,
    pub read_only: bool,
    pub exec: bool,
}

impl FromStr for TmpfsMount {
    type Err = String;

    fn from_str(text: &str) -> Result<TmpfsMount, String> {
        let (path, options) = text.split_once(':').unwrap_or((text, ""));
        if !path.starts_with('/') {
            return Err(format!(
                "--tmpfs {text}: give an absolute path inside the container, e.g. /scratch:size=64M"
            ));
        }
        let mut mount = TmpfsMount {
            path: path.to_string(),
            size: None,
            mode: 0o1777,
            read_only: false,
            exec: true,
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("size", size)) => {
                    mount.size = Some(parse_tmpfs_size(&format!("--tmpfs {path}:size="), size)?)
                }
                Some(("mode", mode)) => {
                    mount.mode = u32::from_str_radix(mode, 8)
                        .ok()
                        .filter(|&m| m <= 0o7777)
                        .ok_or_else(|| {
                            format!("--tmpfs {text}: mode={mode} is not an octal mode such as 1777")
                        })?
                }
                None if option == "ro" => mount.read_only = true,
                None if option == "rw" => mount.read_only = false,
                None if option == "exec" => mount.exec = true,
                None if option == "noexec" => mount.exec = false,
                // Always so: no device or set-user-ID file in a scratch mount.
                None if option == "nosuid" || option == "nodev" => {}
                _ => {
                    return Err(format!(
                        "--tmpfs {text}: unknown option {option:?} (use size=, mode=, ro, rw, exec, noexec)"
                    ))
                }
            }
        }
        Ok(mount)
    }
}

impl fmt::Display for TmpfsMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(size) = self.size {
            write!(f, " ({})", human_bytes(size))?;
        }
        Ok(())
    }
}

/// The mount data of a tmpfs of `size` bytes with root directory mode `mode`.
pub fn tmpfs_data(size: u64, mode: u32) -> CString {
    CString::new(format!("mode={mode:o},size={size}")).expect("no NUL in digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_takes_dockers_options() {
        let mount: TmpfsMount = "/scratch:size=64M,mode=755,ro,noexec".parse().unwrap();
        assert_eq!(
            mount,
            TmpfsMount {
                path: "/scratch".into(),
                size: Some(64 << 20),
                mode: 0o755,
                read_only: true,
                exec: false,
            }
        );
        let plain: TmpfsMount = "/scratch".parse().unwrap();
        assert_eq!(
            (plain.size, plain.mode, plain.read_only),
            (None, 0o1777, false)
        );
    }

    #[test]
    fn bad_tmpfs_values_name_what_is_wrong() {
        for (text, says) in [
            ("scratch", "absolute path"),
            ("/s:size=lots", "size of at least 1M"),
            ("/s:size=10k", "size of at least 1M"),
            ("/s:mode=999", "octal mode"),
            ("/s:uid=5", "unknown option \"uid=5\""),
        ] {
            let err = text.parse::<TmpfsMount>().unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_writable_layer_is_bounded_by_memory_or_a_quarter_of_ram() {
        let limited = StorageSizes::new(None, None, Some(64 << 20));
        assert_eq!(limited.writable_layer, 64 << 20);
        assert_eq!(limited.shm, DEFAULT_SHM_SIZE);
        let unlimited = StorageSizes::new(None, None, None);
        assert_eq!(unlimited.writable_layer, host_memory() / 4);
        let asked = StorageSizes::new(Some(1 << 30), Some(1 << 27), Some(64 << 20));
        assert_eq!((asked.writable_layer, asked.shm), (1 << 30, 1 << 27));
    }

    #[test]
    fn storage_opt_takes_only_size() {
        assert_eq!(parse_storage_opt("size=2G"), Ok(2 << 30));
        assert!(parse_storage_opt("dm.basesize=2G")
            .unwrap_err()
            .contains("only option is size="));
    }

    #[test]
    fn mount_data_gives_mode_in_octal() {
        assert_eq!(
            tmpfs_data(1 << 20, 0o1777).to_str().unwrap(),
            "mode=1777,size=1048576"
        );
    }
}

//! The one description of a container: what the user asked for on the command line,
//! completed with what the image records (its default command and environment).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use mkroot_common::run_defaults::RunDefaults;

use crate::cgroup::ResourceLimits;
use crate::error::LaunchError;
use crate::network::address_lease::Subnet;
use crate::network::ports::PublishedPort;
use crate::network::{NetworkMode, NetworkSpec};
use crate::process::{Command, User, DEFAULT_PATH};
use crate::rootfs::Volume;
use crate::run_defaults::{self, CommandOverride};
use crate::security::{SecurityOptions, SecurityPolicy};
use crate::storage::{StorageSizes, TmpfsMount};
use crate::userns::IdMapping;

/// What the user asked for (the parsed command line).
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    pub image: PathBuf,
    /// The cache directory; `None` for the default one.
    pub cache_dir: Option<PathBuf>,
    /// The command after `--`; empty for the image's default.
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image config's Entrypoint ("" clears it).
    pub entrypoint: Option<String>,
    pub hostname: Option<String>,
    /// `-e KEY=VALUE`, or `-e KEY` to pass the launcher's own value on.
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<User>,
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<TmpfsMount>,
    /// `--storage-opt size=`: the writable layer's bound.
    pub writable_layer_size: Option<u64>,
    /// `--shm-size`.
    pub shm_size: Option<u64>,
    pub read_only: bool,
    /// `-t`: a pty even when stdin is not a terminal.
    pub tty: bool,
    /// `--userns`: a user namespace even when run as root.
    pub userns: bool,
    pub security: SecurityOptions,
    pub limits: ResourceLimits,
    /// `--max-image-size`: the cap on an image's unpacked bytes.
    pub max_image_size: Option<u64>,
    /// `--net`, `--subnet` and `-p`.
    pub net: NetworkMode,
    pub subnet: Option<Subnet>,
    pub publish: Vec<PublishedPort>,
}

/// A container ready to be started.
#[derive(Debug)]
pub struct ContainerSpec {
    /// The read-only image tree (an O_PATH fd), the overlay's lower layer.
    pub image: OwnedFd,
    pub hostname: String,
    pub command: Command,
    pub volumes: Vec<Volume>,
    /// Each with its size decided.
    pub tmpfs: Vec<TmpfsMount>,
    pub storage: StorageSizes,
    pub read_only: bool,
    pub tty: bool,
    /// The user namespace's maps; `None` for no user namespace (root without --userns).
    pub id_mapping: Option<IdMapping>,
    pub security: SecurityPolicy,
    pub limits: ResourceLimits,
    pub network: NetworkSpec,
}

impl ContainerSpec {
    /// `image` is the image tree, opened by [`crate::image_tree::open`]; `defaults` what the
    /// image says to run (the command line overrides it).
    pub fn new(
        options: &LaunchOptions,
        image: OwnedFd,
        defaults: &RunDefaults,
    ) -> Result<ContainerSpec, LaunchError> {
        let argv = run_defaults::argv(
            defaults,
            CommandOverride {
                entrypoint: options.entrypoint.as_deref(),
                command: &options.command,
            },
        );
        let user = match (options.user, &defaults.user) {
            (Some(user), _) => Some(user),
            (None, Some(name)) => Some(run_defaults::user(&image, name)?),
            (None, None) => None,
        };
        let tty = options.tty || std::io::IsTerminal::is_terminal(&std::io::stdin());
        let hostname = match &options.hostname {
            Some(name) => check_hostname(name)?,
            None => random_hostname()?,
        };
        let storage = StorageSizes::new(
            options.writable_layer_size,
            options.shm_size,
            options.limits.memory_bytes,
        );
        let tmpfs = options
            .tmpfs
            .iter()
            .map(|mount| TmpfsMount {
                size: mount.size.or(Some(storage.writable_layer)),
                ..mount.clone()
            })
            .collect();
        let workdir = (options.workdir.clone().or(defaults.working_dir.clone()))
            .unwrap_or_else(|| "/".to_string());
        if !workdir.starts_with('/') {
            return Err(LaunchError::Invalid(format!(
                "--workdir {workdir}: give an absolute path inside the container"
            )));
        }
        let options = &LaunchOptions {
            user,
            ..options.clone()
        };
        // The image's environment applies whatever the command (docker's rule for Env).
        let env = environment(options, &hostname, tty, &defaults.env)?;
        let root = nix::unistd::getuid().is_root();
        let id_mapping = if !root {
            Some(IdMapping::caller_as_root())
        } else if options.userns {
            Some(IdMapping::subordinate_range()?)
        } else {
            None
        };
        let network = NetworkSpec::new(
            options.net.clone(),
            options.subnet,
            options.publish.clone(),
            root,
        )?;
        Ok(ContainerSpec {
            image,
            hostname,
            command: Command {
                argv,
                env,
                workdir,
                user,
            },
            volumes: options.volumes.clone(),
            tmpfs,
            storage,
            read_only: options.read_only,
            tty,
            id_mapping,
            security: options.security.policy()?,
            limits: options.limits,
            network,
        })
    }
}

/// The command's environment, later entries winning: defaults, the image's, the
/// `--env-file`s in order, then `-e`. Only the user's own `KEY` entries (in `-e` and
/// `--env-file`) take the caller's value: an image's entry without `=` is ignored, or
/// an image could read whatever secret the caller's environment holds.
fn environment(
    options: &LaunchOptions,
    hostname: &str,
    tty: bool,
    image_env: &[String],
) -> Result<Vec<String>, LaunchError> {
    let home = match options.user {
        Some(user) if user.uid != 0 => "/",
        _ => "/root",
    };
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
        format!("HOME={home}"),
    ];
    if tty {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".to_string());
        env.push(format!("TERM={term}"));
    }
    for entry in image_env {
        if let Some((key, _)) = entry.split_once('=').filter(|(key, _)| !key.is_empty()) {
            set_variable(&mut env, key, entry);
        }
    }
    let mut given = Vec::new();
    for file in &options.env_files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            LaunchError::Invalid(format!(
                "--env-file {}: {e}; give a readable file of KEY=VALUE lines",
                file.display()
            ))
        })?;
        given.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    given.extend(options.env.iter().cloned());
    for entry in given {
        let entry = match entry.split_once('=') {
            Some(("", _)) => {
                return Err(LaunchError::Invalid(format!(
                    "--env {entry}: give KEY=VALUE or KEY"
                )))
            }
            Some(_) => entry,
            // `-e KEY`: the launcher's own value, or nothing when it has none.
            None => match std::env::var(&entry) {
                Ok(value) => format!("{entry}={value}"),
                Err(_) => continue,
            },
        };
        let key = &entry[..entry.find('=').expect("has =")];
        set_variable(&mut env, key, &entry);
    }
    Ok(env)
}

/// Sets `KEY=VALUE` (`entry`) in `env`, replacing an earlier value of `key`.
fn set_variable(env: &mut Vec<String>, key: &str, entry: &str) {
    env.retain(|e| e.split_once('=').is_none_or(|(k, _)| k != key));
    env.push(entry.to_string());
}

fn check_hostname(name: &str) -> Result<String, LaunchError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(name.to_string())
    } else {
        Err(LaunchError::Invalid(format!(
            "--hostname {name}: give 1-64 letters, digits, `-` or `.`"
        )))
    }
}

/// Twelve hex digits, like docker's container ids.
fn random_hostname() -> Result<String, LaunchError> {
    hostname_from(random_bytes())
}

/// Six bytes from the kernel's random pool (getrandom blocks only until the pool is
/// first seeded, at boot).
fn random_bytes() -> std::io::Result<[u8; 6]> {
    let mut bytes = [0u8; 6];
    // SAFETY: the kernel writes at most `bytes.len()` bytes into the buffer.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    match got {
        n if n == bytes.len() as isize => Ok(bytes),
        n if n < 0 => Err(std::io::Error::last_os_error()),
        _ => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
    }
}

/// The hostname from `random`; a failed draw is an error, not a name of zeros that
/// every container would share.
fn hostname_from(random: std::io::Result<[u8; 6]>) -> Result<String, LaunchError> {
    let bytes = random.map_err(|e| {
        LaunchError::Invalid(format!(
            "cannot draw a random hostname: {e}; give --hostname NAME"
        ))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_environment_entries_win() {
        let options = LaunchOptions {
            env: vec!["A=2".into(), "PATH=/x".into()],
            ..LaunchOptions::default()
        };
        let env = environment(&options, "h", false, &["A=1".to_string()]).unwrap();
        assert!(env.contains(&"A=2".to_string()));
        assert!(!env.contains(&"A=1".to_string()));
        assert!(env.contains(&"PATH=/x".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn only_the_users_own_entries_take_the_callers_value() {
        std::env::set_var("MKROOT_TEST_CALLERS_SECRET", "hunter2");
        let image_env = ["MKROOT_TEST_CALLERS_SECRET".to_string(), "=x".to_string()];
        let env = environment(&LaunchOptions::default(), "h", false, &image_env).unwrap();
        assert!(!env.iter().any(|e| e.contains("hunter2")), "{env:?}");
        assert!(!env.iter().any(|e| e.starts_with('=')), "{env:?}");
        let options = LaunchOptions {
            env: vec!["MKROOT_TEST_CALLERS_SECRET".into()],
            ..LaunchOptions::default()
        };
        let env = environment(&options, "h", false, &image_env).unwrap();
        assert!(env.contains(&"MKROOT_TEST_CALLERS_SECRET=hunter2".to_string()));
    }

    #[test]
    fn hostnames_are_checked() {
        assert!(check_hostname("box-1.example").is_ok());
        assert!(check_hostname("bad name").is_err());
        let name = random_hostname().unwrap();
        assert_eq!(name.len(), 12);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_failed_random_draw_is_an_error_not_a_hostname_of_zeros() {
        let failed = Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
        let error = hostname_from(failed).unwrap_err().to_string();
        assert!(error.contains("--hostname"), "{error}");
        assert_eq!(hostname_from(Ok([0xab; 6])).unwrap(), "abababababab");
    }
}

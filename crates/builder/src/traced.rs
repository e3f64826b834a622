//! What `--trace` adds to the plan: each probe run once on the host ([`crate::trace`]),
//! and the files it used handed to the plan as [`Addition`]s with the reason
//! `traced by CMD`.
//!
//! A trace adds; it never replaces. What the plan has from the loader's rules, the
//! programs and the extras stays as planned, and a file mkroot makes itself
//! (`/etc/passwd`, the loader cache) takes the place of the host's copy a probe read
//! (see [`AdditionKind::Traced`](crate::addition::AdditionKind::Traced)). Some host files never go in, whatever a probe read:
//! [`LEFT_OUT`].

use crate::addition::Addition;
use crate::request::TraceRequest;
use crate::trace::{self, Probe, TraceError, TraceRecord};

/// Host paths no trace adds. The host's secrets and identity (password hashes, SSH
/// host keys, the machine id) and the caller's own dotfiles (`~/.gitconfig`, `~/.ssh`,
/// caches) are the host's, not the program's; the loader cache is the plan's to make.
pub const LEFT_OUT: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh/ssh_host_*",
    "/etc/machine-id",
    "/etc/ld.so.cache",
    "/root/.*",
    "/root/.*/**",
    "/home/*/.*",
    "/home/*/.*/**",
];

/// One probe, run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedProbe {
    pub command: String,
    pub record: TraceRecord,
    /// Set when the probe exited non-zero and `--trace-allow-fail` kept it.
    pub failure: Option<ProbeFailure>,
}

/// A failed probe kept by `--trace-allow-fail`, for the warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub command: String,
    pub status: i32,
    /// The last line it wrote to its standard error, if any.
    pub last_words: Option<String>,
}

/// Runs each probe of `request` in turn, with the image's environment (`env`,
/// `KEY=VALUE`) over the probe's defaults.
pub fn run(request: &TraceRequest, env: &[String]) -> Result<Vec<TracedProbe>, TraceError> {
    request
        .probes
        .iter()
        .map(|command| run_one(request, env, command))
        .collect()
}

fn run_one(
    request: &TraceRequest,
    env: &[String],
    command: &str,
) -> Result<TracedProbe, TraceError> {
    let probe = Probe {
        command: command.to_string(),
        cwd: request.cwd.clone(),
        timeout: request.timeout,
        net: request.net,
        env: env
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        exclude: LEFT_OUT
            .iter()
            .map(|glob| glob.to_string())
            .chain(request.exclude.iter().cloned())
            .collect(),
    };
    match trace::trace(&probe) {
        Ok(record) => Ok(TracedProbe {
            command: probe.command,
            record,
            failure: None,
        }),
        Err(TraceError::ProbeFailed {
            status,
            stderr,
            record,
            ..
        }) if request.allow_fail => Ok(TracedProbe {
            command: probe.command,
            record: *record,
            failure: Some(ProbeFailure {
                command: command.to_string(),
                status,
                last_words: trace::last_words(&stderr),
            }),
        }),
        Err(error) => Err(error),
    }
}

/// What one probe used, as additions at the same paths as on the host: the directories
/// it named, the symlinks it passed through (kept as symlinks, so chains stay whole),
/// the files it read, and the programs it ran (resolved as `--bins` programs are).
pub fn additions(probe: &TracedProbe) -> Vec<Addition> {
    let reason = format!("traced by {}", probe.command);
    let record = &probe.record;
    let dirs = record.dirs.iter().map(|dir| (dir, false));
    let links = record.symlinks.keys().map(|link| (link, false));
    let files = (record.files.iter()).map(|file| (file, record.executed.contains(file)));
    dirs.chain(links)
        .chain(files)
        .map(|(path, executed)| Addition::traced(path, executed, reason.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addition::AdditionKind;
    use std::path::{Path, PathBuf};

    #[test]
    fn a_record_becomes_additions_with_its_probe_as_the_reason() {
        let probe = TracedProbe {
            command: "awk 1 /etc/hostname".to_string(),
            record: TraceRecord {
                files: [PathBuf::from("/usr/bin/mawk"), "/etc/hostname".into()].into(),
                executed: [PathBuf::from("/usr/bin/mawk")].into(),
                symlinks: [(
                    PathBuf::from("/usr/bin/awk"),
                    "/etc/alternatives/awk".into(),
                )]
                .into(),
                dirs: [PathBuf::from("/etc")].into(),
                exit_status: 0,
            },
            failure: None,
        };
        let additions = additions(&probe);
        let find = |path: &str| {
            additions
                .iter()
                .find(|a| a.path == Path::new(path))
                .unwrap_or_else(|| panic!("{path} in {additions:#?}"))
        };
        assert_eq!(
            find("/usr/bin/mawk").kind,
            AdditionKind::Traced { executed: true }
        );
        assert_eq!(
            find("/etc/hostname").kind,
            AdditionKind::Traced { executed: false }
        );
        assert_eq!(find("/usr/bin/awk").reason, "traced by awk 1 /etc/hostname");
        assert_eq!(additions.len(), 4);
    }

    #[test]
    fn host_secrets_and_dotfiles_are_left_out() {
        let exclusions = trace::record::Exclusions::new(
            &LEFT_OUT.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        for secret in [
            "/etc/shadow",
            "/etc/ssh/ssh_host_ed25519_key",
            "/root/.gitconfig",
            "/root/.ssh/id_ed25519",
            "/home/ann/.cache/pip/x",
        ] {
            assert!(exclusions.excludes(Path::new(secret)), "{secret}");
        }
        for kept in ["/etc/passwd", "/home/ann/project/main.c", "/root"] {
            assert!(!exclusions.excludes(Path::new(kept)), "{kept}");
        }
    }
}

//! The command line over an image's run defaults, as docker combines them: the command
//! after `--` replaces Cmd and keeps Entrypoint; `--entrypoint` replaces Entrypoint and
//! drops Cmd; Env, WorkingDir and User apply unless `-e`, `-w`, `-u` say otherwise. A
//! mkroot manifest's command is all Cmd, so the command after `--` replaces all of it.

use std::os::fd::OwnedFd;

use mkroot_common::run_defaults::RunDefaults;

use crate::error::LaunchError;
use crate::image_tree;
use crate::process::User;

/// What the command line says to run: `--entrypoint` (`""` clears the image's) and the
/// command after `--` (empty for the image's).
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandOverride<'a> {
    pub entrypoint: Option<&'a str>,
    pub command: &'a [String],
}

/// The command to run: Entrypoint followed by Cmd, each from the command line when it
/// gives one; `/bin/sh` when neither gives anything.
pub fn argv(defaults: &RunDefaults, given: CommandOverride) -> Vec<String> {
    let entrypoint = match given.entrypoint {
        Some("") => Vec::new(),
        Some(program) => vec![program.to_string()],
        None => defaults.entrypoint.clone(),
    };
    let cmd = if !given.command.is_empty() {
        given.command.to_vec()
    } else if given.entrypoint.is_some() {
        Vec::new()
    } else {
        defaults.cmd.clone()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return vec!["/bin/sh".to_string()];
    }
    argv
}

/// The config's User (`uid`, `uid:gid`, `name`, `name:group`, ...) as numbers, names looked
/// up in the image's own /etc/passwd and /etc/group. Without a group, the user's primary
/// group from /etc/passwd, else 0 (as runc does).
pub fn user(tree: &OwnedFd, spec: &str) -> Result<User, LaunchError> {
    let invalid = |why: &str| {
        LaunchError::Invalid(format!(
            "the image's config User {spec:?}: {why}; give -u UID[:GID] to override it"
        ))
    };
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let passwd = database(tree, "/etc/passwd");
    let entry = |name: &str, table: &[Vec<String>]| {
        table
            .iter()
            .find(|fields| fields.first().is_some_and(|n| n == name))
            .cloned()
    };
    let by_uid = |uid: u32| {
        passwd
            .iter()
            .find(|f| f.get(2).and_then(|v| v.parse().ok()) == Some(uid))
            .cloned()
    };
    let (uid, record) = match user.parse::<u32>() {
        Ok(uid) => (uid, by_uid(uid)),
        Err(_) => {
            let record = entry(user, &passwd)
                .ok_or_else(|| invalid("no such user in the image's /etc/passwd"))?;
            let uid = record
                .get(2)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| invalid("its /etc/passwd entry has no uid"))?;
            (uid, Some(record))
        }
    };
    let gid = match group {
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entry(group, &database(tree, "/etc/group"))
                .and_then(|f| f.get(2).and_then(|v| v.parse().ok()))
                .ok_or_else(|| invalid("no such group in the image's /etc/group"))?,
        },
        None => record
            .and_then(|f| f.get(3).and_then(|v| v.parse().ok()))
            .unwrap_or(0),
    };
    Ok(User { uid, gid })
}

/// The `:`-separated lines of a passwd-style file in the image (none if it is missing).
fn database(tree: &OwnedFd, path: &str) -> Vec<Vec<String>> {
    let text = image_tree::read_file(tree, path)
        .ok()
        .flatten()
        .unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> RunDefaults {
        RunDefaults {
            entrypoint: vec!["/bin/entry".into()],
            cmd: vec!["default".into()],
            ..RunDefaults::default()
        }
    }

    #[test]
    fn the_command_line_replaces_cmd_and_keeps_the_entrypoint() {
        let mine = ["mine".to_string()];
        let given = CommandOverride {
            command: &mine,
            ..CommandOverride::default()
        };
        assert_eq!(argv(&defaults(), given), ["/bin/entry", "mine"]);
        assert_eq!(
            argv(&defaults(), CommandOverride::default()),
            ["/bin/entry", "default"]
        );
    }

    #[test]
    fn an_entrypoint_override_drops_the_images_cmd() {
        let given = CommandOverride {
            entrypoint: Some("/bin/other"),
            ..CommandOverride::default()
        };
        assert_eq!(argv(&defaults(), given), ["/bin/other"]);
        let shell = ["/bin/sh".to_string()];
        let cleared = CommandOverride {
            entrypoint: Some(""),
            command: &shell,
        };
        assert_eq!(argv(&defaults(), cleared), ["/bin/sh"]);
    }

    #[test]
    fn a_manifests_command_is_replaced_whole_and_nothing_runs_a_shell() {
        let manifest = RunDefaults {
            cmd: vec!["/usr/bin/bash".into(), "-l".into()],
            ..RunDefaults::default()
        };
        let ps = ["ps".to_string(), "aux".to_string()];
        let given = CommandOverride {
            command: &ps,
            ..CommandOverride::default()
        };
        assert_eq!(argv(&manifest, given), ["ps", "aux"]);
        assert_eq!(
            argv(&RunDefaults::default(), CommandOverride::default()),
            ["/bin/sh"]
        );
    }
}

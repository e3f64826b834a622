//! The command line over an OCI image config's defaults, as docker combines them: the
//! command after `--` replaces Cmd and keeps Entrypoint; `--entrypoint` replaces
//! Entrypoint and drops Cmd; Env, WorkingDir and User apply unless `-e`, `-w`, `-u` say
//! otherwise.

use std::os::fd::OwnedFd;

use mkroot_common::oci::read::RunDefaults;

use crate::error::LaunchError;
use crate::process::User;
use crate::spec::{read_in_image, LaunchOptions};

/// The command to run: Entrypoint followed by Cmd, each from the command line when it
/// gives one. Empty when neither gives anything (the caller picks a fallback).
pub fn argv(options: &LaunchOptions, defaults: &RunDefaults) -> Vec<String> {
    let entrypoint = match &options.entrypoint {
        Some(program) if program.is_empty() => Vec::new(),
        Some(program) => vec![program.clone()],
        None => defaults.entrypoint.clone(),
    };
    let cmd = if !options.command.is_empty() {
        options.command.clone()
    } else if options.entrypoint.is_some() {
        Vec::new()
    } else {
        defaults.cmd.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
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
    let text = read_in_image(tree, path).ok().flatten().unwrap_or_default();
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
        let options = LaunchOptions {
            command: vec!["mine".into()],
            ..LaunchOptions::default()
        };
        assert_eq!(argv(&options, &defaults()), ["/bin/entry", "mine"]);
        assert_eq!(
            argv(&LaunchOptions::default(), &defaults()),
            ["/bin/entry", "default"]
        );
    }

    #[test]
    fn an_entrypoint_override_drops_the_images_cmd() {
        let options = LaunchOptions {
            entrypoint: Some("/bin/other".into()),
            ..LaunchOptions::default()
        };
        assert_eq!(argv(&options, &defaults()), ["/bin/other"]);
        let cleared = LaunchOptions {
            entrypoint: Some(String::new()),
            command: vec!["/bin/sh".into()],
            ..LaunchOptions::default()
        };
        assert_eq!(argv(&cleared, &defaults()), ["/bin/sh"]);
    }
}

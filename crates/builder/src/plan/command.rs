//! What the image runs and with which environment, settled once from the request.
use crate::request::BuildRequest;
use std::path::Path;

/// Shells that get `-l` when they are the default command: a login shell reads the
/// profile a user expects.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"];

/// The image's command. OCI splits it in two: `Entrypoint` (fixed) and `Cmd` (the
/// default arguments, replaced by the user's). mkroot's own manifest, which `launch`
/// reads, records one argv: the two joined ([`ImageCommand::argv`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCommand {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl ImageCommand {
    /// Without an entrypoint, the requested command or else the first program's; with
    /// one, the requested command only (the first program's default would make no sense
    /// as arguments).
    pub(super) fn settle(request: &BuildRequest, first_program: &Path) -> ImageCommand {
        if request.entrypoint.is_empty() {
            let cmd = match &request.cmd {
                Some(cmd) => cmd.clone(),
                None => default_cmd(first_program),
            };
            return ImageCommand {
                entrypoint: Vec::new(),
                cmd,
            };
        }
        ImageCommand {
            entrypoint: request.entrypoint.clone(),
            cmd: request.cmd.clone().unwrap_or_default(),
        }
    }

    /// The whole argv: the entrypoint, then the arguments.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }
}

/// The default environment with `extra` laid over it: a key already there gets the new
/// value in its old place, a new key goes at the end.
pub(super) fn merged_env(base: &[String], extra: &[String]) -> Vec<String> {
    let key = |pair: &str| pair.split_once('=').map_or(pair, |(k, _)| k).to_string();
    let mut env: Vec<String> = base.to_vec();
    for pair in extra {
        match env.iter_mut().find(|have| key(have) == key(pair)) {
            Some(have) => *have = pair.clone(),
            None => env.push(pair.clone()),
        }
    }
    env
}

/// The first program, run as a login shell if it is a shell.
fn default_cmd(program: &Path) -> Vec<String> {
    let shown = program.to_string_lossy().into_owned();
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if name.is_some_and(|n| SHELLS.contains(&n.as_str())) {
        vec![shown, "-l".to_string()]
    } else {
        vec![shown]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_environment_replaces_in_place_and_appends() {
        let base = vec!["PATH=/usr/bin".to_string(), "A=1".to_string()];
        let extra = vec!["B=2".to_string(), "PATH=/opt/bin".to_string()];
        assert_eq!(
            merged_env(&base, &extra),
            ["PATH=/opt/bin", "A=1", "B=2"].map(String::from)
        );
    }

    #[test]
    fn shells_run_as_login_shells_by_default() {
        assert_eq!(
            default_cmd(Path::new("/usr/bin/bash")),
            ["/usr/bin/bash", "-l"]
        );
        assert_eq!(default_cmd(Path::new("/usr/bin/top")), ["/usr/bin/top"]);
    }
}

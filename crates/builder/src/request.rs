//! What one mkroot run is asked to build, checked: the programs and files, the extras,
//! the root and the PATH programs are looked up in, how the image runs (command,
//! entrypoint, environment, OCI settings) and where it goes. Made from the command line
//! ([`ImageFlags::to_request`]) or a recipe ([`Recipe::to_request`]); the plan is made
//! from it ([`Plan::build`]) and nothing downstream reads the flags again.
//!
//! [`Recipe::to_request`]: crate::recipe::Recipe::to_request
//! [`Plan::build`]: crate::plan::Plan::build

use crate::extras::{Extras, GconvChoice};
use crate::programs;
use crate::trace::{self, TraceNet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A checked build request.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// `/`, or the `--sysroot`.
    pub root: PathBuf,
    /// The PATH programs are looked up in: the caller's PATH names the host's
    /// directories, so with a sysroot it is the default PATH instead.
    pub search_path: String,
    /// Names or paths, as given to `--bins`; none empty.
    pub bins: Vec<String>,
    pub adds: Vec<AddSpec>,
    pub allow_missing: bool,
    pub extras: Extras,
    /// `--trace` probes, run on the host to find the files the programs use.
    pub trace: TraceRequest,
    /// `--cmd`, split into argv; `None` for the default (the first program).
    pub cmd: Option<Vec<String>>,
    /// `--entrypoint`, split into argv; empty when not given.
    pub entrypoint: Vec<String>,
    /// `KEY=VALUE`, laid over the image's default environment; a key given again
    /// replaces the earlier value.
    pub env: Vec<String>,
    pub oci: OciSettings,
    pub output: Option<PathBuf>,
    pub format: Option<OutputFormat>,
    /// Host files a recipe with a sysroot adds from outside it, for a warning: they go
    /// in as they are on this host, not as the sysroot has them.
    pub outside_sysroot: Vec<PathBuf>,
}

/// The probes to trace and how they run (`--trace CMD`, `--trace-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    /// Shell command lines, each run as `/bin/sh -c CMD`; none empty.
    pub probes: Vec<String>,
    /// The probes' working directory: the caller's, or a recipe's directory.
    pub cwd: PathBuf,
    /// Each probe's time limit.
    pub timeout: Duration,
    pub net: TraceNet,
    /// Globs of host paths left out of what the probes used.
    pub exclude: Vec<String>,
    /// A probe that exits non-zero still adds what it used, with a warning.
    pub allow_fail: bool,
}

impl Default for TraceRequest {
    fn default() -> TraceRequest {
        TraceRequest {
            probes: Vec::new(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            timeout: trace::DEFAULT_TIMEOUT,
            net: TraceNet::None,
            exclude: Vec::new(),
            allow_fail: false,
        }
    }
}

/// Settings only an OCI image config carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciSettings {
    /// `name[:tag]`.
    pub tag: Option<String>,
    /// An absolute path.
    pub workdir: Option<String>,
    /// The user the image runs as (`name`, `uid`, `uid:gid`).
    pub user: Option<String>,
}

/// The image formats mkroot writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A root filesystem: `.tgz`/`.tar.gz`, `.tar`, or a directory (`DIR/`).
    Rootfs,
    /// An OCI image layout: an oci-archive (`.tar`, docker-loadable too) or `DIR/`.
    Oci,
}

/// `--add HOST[:IMAGE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    pub host: PathBuf,
    /// Where it goes in the image; the host path when not given.
    pub image: Option<PathBuf>,
    /// Why it is there, for the manifest; `added by --add HOST` when not given. A recipe
    /// names its own file here, so the image does not depend on where the recipe lives.
    pub reason: Option<String>,
}

impl AddSpec {
    /// Parses `HOST[:IMAGE]`.
    pub fn parse(text: &str) -> AddSpec {
        let (host, image) = text.split_once(':').unwrap_or((text, ""));
        AddSpec {
            host: PathBuf::from(host),
            image: (!image.is_empty()).then(|| PathBuf::from(image)),
            reason: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("--env {0:?}: not KEY=VALUE; write it like --env LANG=C.UTF-8")]
    BadEnv(String),
    #[error("--workdir {0:?}: not an absolute path; write it like --workdir /srv")]
    BadWorkdir(String),
    #[error("--user {0:?}: not a user name; use letters, digits, `-` and `_`")]
    BadUser(String),
    #[error("--add {0:?}: no host path; write --add HOST or --add HOST:IMAGE")]
    BadAdd(String),
    #[error("--trace: an empty command; give the command line to watch, like --trace 'python3 -c \"import json\"'")]
    EmptyTrace,
    #[error("--trace runs the host's programs, and --sysroot builds from another root; trace on the system the programs belong to, or use --add")]
    TraceWithSysroot,
    #[error("--trace-timeout {0:?}: not a duration; write seconds, like 120, 90s or 2m")]
    BadTraceTimeout(String),
    /// `--cmd` or `--entrypoint` that does not split into words.
    #[error("{flag}: {source}")]
    BadCommand {
        flag: &'static str,
        source: CommandError,
    },
}

impl BuildRequest {
    /// A request for nothing yet, from `sysroot` (else `/`), with the PATH its programs
    /// are looked up in; the flags and a recipe fill in the rest.
    pub fn in_root(sysroot: Option<&Path>) -> BuildRequest {
        let (root, search_path) = match sysroot {
            Some(root) => (root.to_path_buf(), programs::DEFAULT_PATH.to_string()),
            None => (
                PathBuf::from("/"),
                std::env::var("PATH").unwrap_or_else(|_| programs::DEFAULT_PATH.to_string()),
            ),
        };
        BuildRequest {
            root,
            search_path,
            bins: Vec::new(),
            adds: Vec::new(),
            allow_missing: false,
            extras: Extras::default(),
            trace: TraceRequest::default(),
            cmd: None,
            entrypoint: Vec::new(),
            env: Vec::new(),
            oci: OciSettings::default(),
            output: None,
            format: None,
            outside_sysroot: Vec::new(),
        }
    }
}

/// The flags that describe the image, as the command line gave them: the ones a recipe
/// replaces. Output, format and tag are not here: they apply to a recipe too.
#[derive(Debug, Clone, Default)]
pub struct ImageFlags {
    pub bins: Vec<String>,
    /// `HOST[:IMAGE]`
    pub adds: Vec<String>,
    pub cmd: Option<String>,
    pub entrypoint: Option<String>,
    /// `KEY=VALUE`
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub run_as: Option<String>,
    pub users: Vec<String>,
    pub sysroot: Option<PathBuf>,
    pub allow_missing: bool,
    pub no_nss: bool,
    pub no_terminfo: bool,
    pub no_libgcc: bool,
    /// Every gconv module, not only those detected.
    pub gconv: bool,
    pub no_gconv: bool,
    pub no_ca_certs: bool,
    /// `--trace CMD` (repeatable).
    pub traces: Vec<String>,
    /// `--trace-timeout`, as written.
    pub trace_timeout: Option<String>,
    pub trace_net: TraceNet,
    pub trace_exclude: Vec<String>,
    pub trace_allow_fail: bool,
}

impl ImageFlags {
    /// The request the flags describe; the flags' counterpart of
    /// [`Recipe::to_request`](crate::recipe::Recipe::to_request).
    pub fn to_request(&self) -> Result<BuildRequest, RequestError> {
        self.check_names()?;
        let request = BuildRequest {
            bins: self
                .bins
                .iter()
                .filter(|b| !b.is_empty())
                .cloned()
                .collect(),
            adds: self.adds.iter().map(|a| AddSpec::parse(a)).collect(),
            cmd: command("--cmd", &self.cmd)?,
            entrypoint: command("--entrypoint", &self.entrypoint)?.unwrap_or_default(),
            env: self.env.clone(),
            oci: OciSettings {
                tag: None,
                workdir: self.workdir.clone(),
                user: self.run_as.clone(),
            },
            allow_missing: self.allow_missing,
            extras: self.extras(),
            trace: self.trace()?,
            ..BuildRequest::in_root(self.sysroot.as_deref())
        };
        check_run_settings(&request.env, request.oci.workdir.as_deref())?;
        check_trace(&request)?;
        Ok(request)
    }

    fn trace(&self) -> Result<TraceRequest, RequestError> {
        let timeout = match &self.trace_timeout {
            Some(text) => {
                parse_timeout(text).ok_or_else(|| RequestError::BadTraceTimeout(text.clone()))?
            }
            None => trace::DEFAULT_TIMEOUT,
        };
        Ok(TraceRequest {
            probes: self.traces.clone(),
            timeout,
            net: self.trace_net,
            exclude: self.trace_exclude.clone(),
            allow_fail: self.trace_allow_fail,
            ..TraceRequest::default()
        })
    }

    /// User names go into /etc/passwd lines, and `--add` needs a host path.
    fn check_names(&self) -> Result<(), RequestError> {
        if let Some(user) = self.users.iter().find(|user| !is_user_name(user)) {
            return Err(RequestError::BadUser(user.clone()));
        }
        match self
            .adds
            .iter()
            .find(|add| add.is_empty() || add.starts_with(':'))
        {
            Some(add) => Err(RequestError::BadAdd(add.clone())),
            None => Ok(()),
        }
    }

    fn extras(&self) -> Extras {
        Extras {
            nss: !self.no_nss,
            libgcc: !self.no_libgcc,
            terminfo: !self.no_terminfo,
            gconv: match (self.gconv, self.no_gconv) {
                (true, _) => GconvChoice::All,
                (_, true) => GconvChoice::Off,
                _ => GconvChoice::Detect,
            },
            ca_certs: !self.no_ca_certs,
            users: self.users.clone(),
        }
    }
}

/// A command flag's text split into argv; the error names the flag.
fn command(flag: &'static str, text: &Option<String>) -> Result<Option<Vec<String>>, RequestError> {
    text.as_deref()
        .map(split_command)
        .transpose()
        .map_err(|source| RequestError::BadCommand { flag, source })
}

/// `KEY=VALUE` pairs and an absolute working directory.
fn check_run_settings(env: &[String], workdir: Option<&str>) -> Result<(), RequestError> {
    for pair in env {
        match pair.split_once('=') {
            Some((key, _)) if !key.is_empty() && !key.contains(char::is_whitespace) => {}
            _ => return Err(RequestError::BadEnv(pair.clone())),
        }
    }
    match workdir {
        Some(dir) if !dir.starts_with('/') => Err(RequestError::BadWorkdir(dir.to_string())),
        _ => Ok(()),
    }
}

/// Probes need a command, and name the host's files: they cannot describe a sysroot.
pub fn check_trace(request: &BuildRequest) -> Result<(), RequestError> {
    if request.trace.probes.iter().any(|p| p.trim().is_empty()) {
        return Err(RequestError::EmptyTrace);
    }
    if !request.trace.probes.is_empty() && request.root != Path::new("/") {
        return Err(RequestError::TraceWithSysroot);
    }
    Ok(())
}

/// A time limit as seconds (`120`, `90s`) or minutes (`2m`), more than zero.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix('m') {
        Some(minutes) => (minutes, 60),
        None => (text.strip_suffix('s').unwrap_or(text), 1),
    };
    let seconds: u64 = number.parse().ok()?;
    let seconds = seconds.checked_mul(unit).filter(|s| *s > 0)?;
    Some(Duration::from_secs(seconds))
}

/// Whether `name` can be a user of the image: it becomes the first field of a passwd and
/// a group line, so it may not be empty or hold the field separator, a newline or a `/`.
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', '\n', '/'])
}

/// `--cmd` that cannot be split into words.
#[derive(Debug, thiserror::Error)]
#[error("--cmd {text:?}: {problem}; quote it as a shell would")]
pub struct CommandError {
    text: String,
    problem: &'static str,
}

/// Splits `--cmd` into argv as a shell would split plain words: whitespace separates,
/// single quotes keep everything, double quotes keep all but `\"` and `\\`, a
/// backslash outside quotes keeps the next character.
pub fn split_command(text: &str) -> Result<Vec<String>, CommandError> {
    let error = |problem| CommandError {
        text: text.to_string(),
        problem,
    };
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(error("unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(error("unterminated double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(error("unterminated double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(error("ends in a backslash")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(error("empty command"));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_specs_parse_host_and_image() {
        assert_eq!(
            AddSpec::parse("/opt/x:/x"),
            AddSpec {
                host: "/opt/x".into(),
                image: Some("/x".into()),
                reason: None,
            }
        );
        assert_eq!(AddSpec::parse("/opt/x").image, None);
    }

    #[test]
    fn commands_split_like_shell_words() {
        assert_eq!(
            split_command(r#"bash -c 'echo "hi there"' "a\"b" c\ d"#).unwrap(),
            ["bash", "-c", "echo \"hi there\"", "a\"b", "c d"]
        );
        assert!(split_command("bash 'oops").is_err());
        assert!(split_command("  ").is_err());
    }

    fn flags(edit: fn(&mut ImageFlags)) -> Result<BuildRequest, RequestError> {
        let mut flags = ImageFlags {
            bins: vec!["sh".into(), String::new()],
            ..ImageFlags::default()
        };
        edit(&mut flags);
        flags.to_request()
    }

    #[test]
    fn run_settings_are_checked() {
        let error = |edit| flags(edit).unwrap_err().to_string();
        assert!(error(|f| f.env = vec!["NOEQUALS".into()]).starts_with("--env \"NOEQUALS\""));
        assert!(error(|f| f.workdir = Some("relative".into())).starts_with("--workdir"));
    }

    #[test]
    fn trace_flags_are_checked() {
        let request = flags(|f| {
            f.traces = vec!["python3 -c 'import json'".into()];
            f.trace_timeout = Some("2m".into());
        })
        .unwrap();
        assert_eq!(request.trace.probes, ["python3 -c 'import json'"]);
        assert_eq!(request.trace.timeout, Duration::from_secs(120));
        let error = |edit| flags(edit).unwrap_err().to_string();
        assert!(error(|f| f.traces = vec![" ".into()]).starts_with("--trace: an empty command"));
        assert!(error(|f| {
            f.traces = vec!["true".into()];
            f.sysroot = Some("/srv/root".into());
        })
        .starts_with("--trace runs the host's programs"));
        assert!(error(|f| f.trace_timeout = Some("soon".into()))
            .starts_with("--trace-timeout \"soon\": not a duration"));
        assert_eq!(parse_timeout("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timeout("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_timeout("0"), None);
    }

    #[test]
    fn image_flags_are_checked_and_name_the_flag() {
        let request = flags(|_| {}).unwrap();
        assert_eq!(request.bins, ["sh"]);
        assert_eq!(request.extras.gconv, GconvChoice::Detect);
        let error = |edit| flags(edit).unwrap_err().to_string();
        assert!(
            error(|f| f.users = vec!["a:b".into()]).starts_with("--user \"a:b\": not a user name")
        );
        assert!(error(|f| f.adds = vec![":/x".into()]).starts_with("--add \":/x\": no host path"));
        assert!(error(|f| f.entrypoint = Some("'open".into()))
            .starts_with("--entrypoint: --cmd \"'open\": unterminated single quote"));
        let all = flags(|f| f.gconv = true).unwrap();
        assert_eq!(all.extras.gconv, GconvChoice::All);
    }
}

//! What one mkroot run builds, whether from the command line or a recipe: the plan
//! request, how the image runs (entrypoint, environment, working directory, user), and
//! where and in which format it is written.

use crate::elf::{ElfClass, ElfFacts};
use crate::extras::{users, Extras, GconvChoice};
use crate::plan::{self, split_command, AddSpec, CommandError, Plan, PlanRequest};
use mkroot_common::archive::OutputTarget;
use mkroot_common::oci::write::{ImageName, OciImage, OciTarget};
use std::path::{Path, PathBuf};

/// A whole build, before planning.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub request: PlanRequest,
    pub run: RunConfig,
    /// `name[:tag]` for an OCI image.
    pub tag: Option<String>,
    pub output: Option<PathBuf>,
    pub format: Option<OutputFormat>,
    /// Host files a recipe with a sysroot adds from outside it, for a warning: they go
    /// in as they are on this host, not as the sysroot has them.
    pub outside_sysroot: Vec<PathBuf>,
}

/// How the image runs, beside its default command (which is in the plan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    /// `KEY=VALUE`; a key given again replaces the earlier value.
    pub env: Vec<String>,
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

/// Where the image goes, in its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Rootfs(OutputTarget),
    Oci(OciTarget),
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: unknown output kind; end it in .tgz, .tar.gz, .tar, or / for a directory")]
    RootfsName { path: PathBuf },
    #[error("{path}: unknown OCI output kind; end it in .tar (an oci-archive) or / for a layout directory")]
    OciName { path: PathBuf },
    #[error("--env {0:?}: not KEY=VALUE; write it like --env LANG=C.UTF-8")]
    BadEnv(String),
    #[error("--workdir {0:?}: not an absolute path; write it like --workdir /srv")]
    BadWorkdir(String),
    #[error("{0} is an OCI image setting; add --format oci (or write to NAME.oci.tar)")]
    OciOnly(&'static str),
    #[error("--user {0:?}: not a user name; use letters, digits, `-` and `_`")]
    BadUser(String),
    #[error("--add {0:?}: no host path; write --add HOST or --add HOST:IMAGE")]
    BadAdd(String),
    /// `--cmd` or `--entrypoint` that does not split into words.
    #[error("{flag}: {source}")]
    BadCommand {
        flag: &'static str,
        source: CommandError,
    },
    #[error("no --output; give -o OUTPUT (or a path under [output] in the recipe), or --dry-run")]
    NoOutput,
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
}

impl ImageFlags {
    /// The build the flags describe; the flags' counterpart of
    /// [`Recipe::to_spec`](crate::recipe::Recipe::to_spec).
    pub fn to_spec(&self) -> Result<BuildSpec, BuildError> {
        self.check_names()?;
        let (root, search_path) = plan::root_and_search_path(self.sysroot.as_deref());
        let request = PlanRequest {
            root,
            bins: self
                .bins
                .iter()
                .filter(|b| !b.is_empty())
                .cloned()
                .collect(),
            adds: self.adds.iter().map(|a| AddSpec::parse(a)).collect(),
            cmd: command("--cmd", &self.cmd)?,
            allow_missing: self.allow_missing,
            extras: self.extras(),
            search_path,
        };
        Ok(BuildSpec {
            request,
            run: RunConfig {
                entrypoint: command("--entrypoint", &self.entrypoint)?.unwrap_or_default(),
                env: self.env.clone(),
                workdir: self.workdir.clone(),
                user: self.run_as.clone(),
            },
            tag: None,
            output: None,
            format: None,
            outside_sysroot: Vec::new(),
        })
    }

    /// User names go into /etc/passwd lines, and `--add` needs a host path.
    fn check_names(&self) -> Result<(), BuildError> {
        if let Some(user) = self.users.iter().find(|user| !users::is_user_name(user)) {
            return Err(BuildError::BadUser(user.clone()));
        }
        match self
            .adds
            .iter()
            .find(|add| add.is_empty() || add.starts_with(':'))
        {
            Some(add) => Err(BuildError::BadAdd(add.clone())),
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
            users: self.users.clone(),
        }
    }
}

/// A command flag's text split into argv; the error names the flag.
fn command(flag: &'static str, text: &Option<String>) -> Result<Option<Vec<String>>, BuildError> {
    text.as_deref()
        .map(split_command)
        .transpose()
        .map_err(|source| BuildError::BadCommand { flag, source })
}

impl BuildSpec {
    /// Settings only an OCI image config carries are errors for a root filesystem:
    /// dropping them silently would build another image than the one asked for.
    pub fn check_fits(&self, output: &Output) -> Result<(), BuildError> {
        if matches!(output, Output::Oci(_)) {
            return Ok(());
        }
        let oci_only = [
            ("--tag (recipe: tag)", self.tag.is_some()),
            ("--workdir (recipe: workdir)", self.run.workdir.is_some()),
            ("--run-as (recipe: user)", self.run.user.is_some()),
        ];
        match oci_only.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(BuildError::OciOnly(flag)),
            None => Ok(()),
        }
    }
}

impl Output {
    /// Picks the target from the name and the format; without a format, a name ending
    /// in `.oci.tar` is an OCI archive and anything else a root filesystem.
    pub fn choose(path: &Path, format: Option<OutputFormat>) -> Result<Output, BuildError> {
        let text = path.to_string_lossy();
        let format = format.unwrap_or(if text.ends_with(".oci.tar") {
            OutputFormat::Oci
        } else {
            OutputFormat::Rootfs
        });
        match format {
            OutputFormat::Rootfs => OutputTarget::from_path(path)
                .map(Output::Rootfs)
                .ok_or_else(|| BuildError::RootfsName {
                    path: path.to_path_buf(),
                }),
            OutputFormat::Oci if text.ends_with('/') || path.is_dir() => {
                Ok(Output::Oci(OciTarget::Directory(path.to_path_buf())))
            }
            OutputFormat::Oci if text.ends_with(".tar") => {
                Ok(Output::Oci(OciTarget::Tar(path.to_path_buf())))
            }
            OutputFormat::Oci => Err(BuildError::OciName {
                path: path.to_path_buf(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Output::Rootfs(target) => target.path(),
            Output::Oci(target) => target.path(),
        }
    }
}

impl RunConfig {
    /// Checks what the user wrote: `KEY=VALUE` pairs and an absolute working directory.
    pub fn check(&self) -> Result<(), BuildError> {
        for pair in &self.env {
            match pair.split_once('=') {
                Some((key, _)) if !key.is_empty() && !key.contains(char::is_whitespace) => {}
                _ => return Err(BuildError::BadEnv(pair.clone())),
            }
        }
        if let Some(dir) = &self.workdir {
            if !dir.starts_with('/') {
                return Err(BuildError::BadWorkdir(dir.clone()));
            }
        }
        Ok(())
    }
}

/// The plan's environment with `extra` laid over it: a key already there gets the new
/// value in its old place, a new key goes at the end.
pub fn merged_env(base: &[String], extra: &[String]) -> Vec<String> {
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

/// Settles the image's command. OCI splits it in two: `Entrypoint` (fixed) and `Cmd`
/// (the default arguments, replaced by the user's). mkroot's own manifest, which
/// `launch` reads, records one argv: the two joined. Returns the OCI `Cmd`: with an
/// entrypoint, the requested command only (the first program's default would make no
/// sense as arguments); without, the plan's command.
pub fn settle_command(
    plan: &mut Plan,
    run: &RunConfig,
    requested: Option<&[String]>,
) -> Vec<String> {
    if run.entrypoint.is_empty() {
        return plan.cmd.clone();
    }
    let cmd = requested.map(<[String]>::to_vec).unwrap_or_default();
    plan.cmd = run.entrypoint.iter().chain(&cmd).cloned().collect();
    cmd
}

/// The OCI image description of a planned image, with `cmd` from [`settle_command`].
pub fn oci_image(
    plan: &Plan,
    run: &RunConfig,
    cmd: Vec<String>,
    tag: Option<&str>,
) -> Result<OciImage, mkroot_common::oci::write::OciWriteError> {
    Ok(OciImage {
        entrypoint: run.entrypoint.clone(),
        cmd,
        env: plan.env.clone(),
        workdir: run.workdir.clone(),
        user: run.user.clone(),
        name: tag.map(ImageName::parse).transpose()?,
        created_by: format!("mkroot {}", env!("CARGO_PKG_VERSION")),
        architecture: architecture(plan),
    })
}

/// The OCI (GOARCH) name of the machine the image's first ELF program is built for: with
/// --sysroot it need not be this host's. `None` when no program is ELF (scripts only)
/// or the machine is not one OCI names.
fn architecture(plan: &Plan) -> Option<String> {
    let facts = plan.programs.iter().find_map(|resolution| {
        let host = plan.tree.root().resolve(&resolution.program).ok()?;
        ElfFacts::read(&host).ok()
    })?;
    let name = match (facts.machine, facts.little_endian) {
        (62, _) => "amd64",
        (183, _) => "arm64",
        (3, _) => "386",
        (40, true) => "arm",
        (243, _) if facts.class == ElfClass::Elf64 => "riscv64",
        (21, true) => "ppc64le",
        (21, false) => "ppc64",
        (22, _) if facts.class == ElfClass::Elf64 => "s390x",
        (258, _) => "loong64",
        _ => return None,
    };
    Some(name.to_string())
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
    fn outputs_are_chosen_by_name_and_format() {
        let oci = |p: &str| Output::choose(Path::new(p), Some(OutputFormat::Oci));
        assert_eq!(
            oci("img.tar").unwrap(),
            Output::Oci(OciTarget::Tar("img.tar".into()))
        );
        assert_eq!(
            oci("out/").unwrap(),
            Output::Oci(OciTarget::Directory("out/".into()))
        );
        assert!(oci("img.tgz").is_err());
        assert_eq!(
            Output::choose(Path::new("x.oci.tar"), None).unwrap(),
            Output::Oci(OciTarget::Tar("x.oci.tar".into()))
        );
        assert_eq!(
            Output::choose(Path::new("x.tgz"), None).unwrap(),
            Output::Rootfs(OutputTarget::TarGz("x.tgz".into()))
        );
    }

    #[test]
    fn run_settings_are_checked() {
        let bad_env = RunConfig {
            env: vec!["NOEQUALS".into()],
            ..RunConfig::default()
        };
        assert!(bad_env.check().is_err());
        let bad_dir = RunConfig {
            workdir: Some("relative".into()),
            ..RunConfig::default()
        };
        assert!(bad_dir.check().is_err());
    }

    #[test]
    fn image_flags_are_checked_and_name_the_flag() {
        let flags = |edit: fn(&mut ImageFlags)| {
            let mut flags = ImageFlags {
                bins: vec!["sh".into(), String::new()],
                ..ImageFlags::default()
            };
            edit(&mut flags);
            flags.to_spec()
        };
        let spec = flags(|_| {}).unwrap();
        assert_eq!(spec.request.bins, ["sh"]);
        assert_eq!(spec.request.extras.gconv, GconvChoice::Detect);
        let error = |edit| flags(edit).unwrap_err().to_string();
        assert!(
            error(|f| f.users = vec!["a:b".into()]).starts_with("--user \"a:b\": not a user name")
        );
        assert!(error(|f| f.adds = vec![":/x".into()]).starts_with("--add \":/x\": no host path"));
        assert!(error(|f| f.entrypoint = Some("'open".into()))
            .starts_with("--entrypoint: --cmd \"'open\": unterminated single quote"));
        let all = flags(|f| f.gconv = true).unwrap();
        assert_eq!(all.request.extras.gconv, GconvChoice::All);
    }
}

//! Where and in which format the image is written, and the OCI description of a planned
//! image.

use crate::elf::ElfClass;
use crate::plan::Plan;
use crate::request::{BuildRequest, OutputFormat};
use crate::search::Abi;
use mkroot_common::archive::OutputTarget;
use mkroot_common::oci::write::{ImageName, OciImage, OciTarget, OciWriteError};
use mkroot_common::run_defaults::RunDefaults;
use std::path::{Path, PathBuf};

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
    #[error("{0} is an OCI image setting; add --format oci (or write to NAME.oci.tar)")]
    OciOnly(&'static str),
    #[error("no --output; give -o OUTPUT (or a path under [output] in the recipe), or --dry-run")]
    NoOutput,
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

    /// Settings only an OCI image config carries are errors for a root filesystem:
    /// dropping them silently would build another image than the one asked for.
    pub fn check_fits(&self, request: &BuildRequest) -> Result<(), BuildError> {
        if matches!(self, Output::Oci(_)) {
            return Ok(());
        }
        let oci_only = [
            ("--tag (recipe: tag)", request.oci.tag.is_some()),
            ("--workdir (recipe: workdir)", request.oci.workdir.is_some()),
            ("--run-as (recipe: user)", request.oci.user.is_some()),
        ];
        match oci_only.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(BuildError::OciOnly(flag)),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Output::Rootfs(target) => target.path(),
            Output::Oci(target) => target.path(),
        }
    }
}

/// The OCI image description of a planned image: its command, environment and
/// architecture from the plan, the settings only OCI carries from the request.
pub fn oci_image(plan: &Plan, request: &BuildRequest) -> Result<OciImage, OciWriteError> {
    Ok(OciImage {
        run: RunDefaults {
            entrypoint: plan.command.entrypoint.clone(),
            cmd: plan.command.cmd.clone(),
            env: plan.env.clone(),
            working_dir: request.oci.workdir.clone(),
            user: request.oci.user.clone(),
        },
        name: request
            .oci
            .tag
            .as_deref()
            .map(ImageName::parse)
            .transpose()?,
        created_by: format!("mkroot {}", env!("CARGO_PKG_VERSION")),
        architecture: plan.abi.and_then(oci_architecture),
    })
}

/// The OCI (GOARCH) name of the machine an ABI is for: with --sysroot it need not be
/// this host's. `None` for a machine OCI does not name.
fn oci_architecture(abi: Abi) -> Option<String> {
    let name = match (abi.machine, abi.little_endian) {
        (62, _) => "amd64",
        (183, _) => "arm64",
        (3, _) => "386",
        (40, true) => "arm",
        (243, _) if abi.class == ElfClass::Elf64 => "riscv64",
        (21, true) => "ppc64le",
        (21, false) => "ppc64",
        (22, _) if abi.class == ElfClass::Elf64 => "s390x",
        (258, _) => "loong64",
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

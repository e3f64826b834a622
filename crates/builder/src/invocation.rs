//! One mkroot run, once its command line is parsed: the request (from a recipe or the
//! flags), the plan, then what was asked of it: check an image against the plan, print
//! the plan, or write the image.
//!
//! Nothing here prints. [`Invocation::plan`] returns the planned image (main warns about
//! the libraries left out before anything else happens), [`Invocation::explanation`]
//! the `--explain` tree (printed before the image is written: it says what goes in), and
//! [`Invocation::finish`] what came of the run, for main to report and turn into an exit
//! status. What a write makes of the output is recorded in the [`PartialOutput`] main
//! hands to `finish`: main removes it if the run fails, [`crate::interrupt`] if a signal
//! ends it.

use crate::build::{self, BuildError, Output};
use crate::check::{self, CheckError, Difference};
use crate::image::{self, ImageError};
use crate::plan::{Plan, PlanError};
use crate::recipe::{Recipe, RecipeError};
use crate::report;
use crate::request::{BuildRequest, ImageFlags, OutputFormat, RequestError};
use crate::resolve::MissingLibrary;
use mkroot_common::oci::write::{OciImage, OciWriteError};
use mkroot_common::partial::PartialOutput;
use std::path::PathBuf;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub source: SpecSource,
    /// The command line's output, format and tag: they win over a recipe's.
    pub output: Option<PathBuf>,
    pub format: Option<OutputFormat>,
    pub tag: Option<String>,
    pub action: Action,
    /// Also show the plan as a tree, before acting.
    pub explain: bool,
    /// No progress bar while writing.
    pub quiet: bool,
}

/// Where the description of the image comes from.
#[derive(Debug, Clone)]
pub enum SpecSource {
    /// A recipe file (`-f`).
    Recipe(PathBuf),
    /// The flags that describe the image.
    Flags(Box<ImageFlags>),
}

/// What to do with the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the image to its output; with `--explain` and no output, only explain.
    Write,
    /// `--dry-run`: print the plan, as JSON or as the tree.
    DryRun { json: bool },
    /// `--check IMAGE`: compare the image with the plan.
    Check(PathBuf),
}

/// The image as planned: its files and how it runs (the plan), the request it was
/// planned from, and where it goes.
#[derive(Debug)]
pub struct PlannedImage {
    pub plan: Plan,
    request: BuildRequest,
    output: Option<Output>,
}

/// What came of a run.
#[derive(Debug)]
pub enum Outcome {
    /// `--check`: how the image differs from the plan; nothing when it matches.
    Checked {
        image: PathBuf,
        differences: Vec<Difference>,
    },
    /// Only the plan was asked for (`--dry-run`, or `--explain` without an output): the
    /// report still to print, unless [`Invocation::explanation`] was all of it.
    Planned { report: Option<String> },
    /// The image was written.
    Written(Written),
}

/// The summary of a written image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub entries: usize,
    pub content_bytes: u64,
    pub programs: usize,
    /// The OCI manifest's digest (`sha256:...`), for an OCI image.
    pub manifest_digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    OciConfig(#[from] OciWriteError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl Invocation {
    /// The request: the recipe's or the flags', with the command line's output, format
    /// and tag over the recipe's.
    pub fn request(&self) -> Result<BuildRequest, InvocationError> {
        let mut request = match &self.source {
            SpecSource::Recipe(path) => {
                let recipe = Recipe::load(path)?;
                let mut request = recipe.to_request(path)?;
                if self.output.is_none() {
                    request.output = recipe.output_path(path)?;
                }
                request
            }
            SpecSource::Flags(flags) => flags.to_request()?,
        };
        if self.output.is_some() {
            request.output = self.output.clone();
        }
        request.format = self.format.or(request.format);
        request.oci.tag = self.tag.clone().or(request.oci.tag);
        Ok(request)
    }

    /// Checks the request and its output, then plans the image.
    pub fn plan(&self) -> Result<PlannedImage, InvocationError> {
        let request = self.request()?;
        let output = self.output_of(&request)?;
        if let Some(output) = &output {
            output.check_fits(&request)?;
        }
        let plan = Plan::build(&request)?;
        Ok(PlannedImage {
            plan,
            request,
            output,
        })
    }

    /// Where the image goes. An output given (even to a dry run or a check) must be one
    /// mkroot can write; only writing needs one.
    fn output_of(&self, request: &BuildRequest) -> Result<Option<Output>, BuildError> {
        match &request.output {
            Some(path) => Output::choose(path, request.format).map(Some),
            None if self.action == Action::Write && !self.explain => Err(BuildError::NoOutput),
            None => Ok(None),
        }
    }

    /// The `--explain` tree, when asked for.
    pub fn explanation(&self, image: &PlannedImage) -> Option<String> {
        self.explain.then(|| report::explain(&image.plan))
    }

    /// Does what was asked with the planned image; a write records what it makes of the
    /// output in `made`.
    pub fn finish(
        &self,
        image: &PlannedImage,
        made: &PartialOutput,
    ) -> Result<Outcome, InvocationError> {
        match &self.action {
            Action::Check(path) => Ok(Outcome::Checked {
                differences: check::check(&image.plan, &image.oci_image()?, path)?,
                image: path.clone(),
            }),
            Action::DryRun { json: true } => Ok(Outcome::Planned {
                report: Some(report::json(&image.plan)),
            }),
            Action::DryRun { json: false } => Ok(Outcome::Planned {
                // --explain has printed the tree already.
                report: (!self.explain).then(|| report::explain(&image.plan)),
            }),
            Action::Write => match &image.output {
                Some(output) => Ok(Outcome::Written(image.write(output, self.quiet, made)?)),
                None => Ok(Outcome::Planned { report: None }),
            },
        }
    }
}

impl PlannedImage {
    /// The libraries left out (`--allow-missing`), for the warnings.
    pub fn missing(&self) -> &[MissingLibrary] {
        &self.plan.missing
    }

    /// Host files a recipe with a sysroot adds from outside it, for the warnings.
    pub fn outside_sysroot(&self) -> &[PathBuf] {
        &self.request.outside_sysroot
    }

    /// Interpreters without their standard library, for the warnings.
    pub fn stdlib_missing(&self) -> &[crate::stdlib::MissingStdlib] {
        &self.plan.stdlib_missing
    }

    /// Probes that failed and were kept (`--trace-allow-fail`), for the warnings.
    pub fn failed_probes(&self) -> &[crate::traced::ProbeFailure] {
        &self.plan.failed_probes
    }

    /// Programs found by name outside the image's PATH, for the warnings.
    pub fn off_path(&self) -> &[crate::plan::OffPath] {
        &self.plan.off_path
    }

    /// The OCI view of the plan (config, tag, layer settings), for `--check` and OCI
    /// output.
    fn oci_image(&self) -> Result<OciImage, OciWriteError> {
        build::oci_image(&self.plan, &self.request)
    }

    fn write(
        &self,
        output: &Output,
        quiet: bool,
        made: &PartialOutput,
    ) -> Result<Written, InvocationError> {
        let (entries, content_bytes, manifest_digest) = match output {
            Output::Rootfs(target) => {
                let summary = image::write(&self.plan, target, quiet, made)?;
                (summary.entries, summary.content_bytes, None)
            }
            Output::Oci(target) => {
                let summary =
                    image::write_oci(&self.plan, &self.oci_image()?, target, quiet, made)?;
                let layer = summary.layer;
                (
                    layer.entries,
                    layer.content_bytes,
                    Some(summary.manifest_digest),
                )
            }
        };
        Ok(Written {
            path: output.path().to_path_buf(),
            entries,
            content_bytes,
            programs: self.plan.programs.len(),
            manifest_digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(source: SpecSource, action: Action) -> Invocation {
        Invocation {
            source,
            output: None,
            format: None,
            tag: None,
            action,
            explain: false,
            quiet: true,
        }
    }

    fn flags(bins: &[&str]) -> SpecSource {
        SpecSource::Flags(Box::new(ImageFlags {
            bins: bins.iter().map(|b| b.to_string()).collect(),
            ..ImageFlags::default()
        }))
    }

    #[test]
    fn writing_needs_an_output_unless_only_explaining() {
        let write = invocation(flags(&["sh"]), Action::Write);
        let error = write.plan().unwrap_err();
        assert!(matches!(
            error,
            InvocationError::Build(BuildError::NoOutput)
        ));
        assert!(error.to_string().starts_with("no --output; give -o OUTPUT"));
        let explain = Invocation {
            explain: true,
            ..write
        };
        let request = explain.request().unwrap();
        assert_eq!(explain.output_of(&request).unwrap(), None);
    }

    #[test]
    fn the_command_line_wins_over_the_recipe() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("image.toml");
        std::fs::write(
            &recipe,
            "programs = [\"sh\"]\ntag = \"from-recipe:1\"\n[output]\npath = \"r.tgz\"\n",
        )
        .unwrap();
        let mut run = invocation(SpecSource::Recipe(recipe), Action::Write);
        let request = run.request().unwrap();
        assert_eq!(request.output, Some(dir.path().join("r.tgz")));
        assert_eq!(request.oci.tag.as_deref(), Some("from-recipe:1"));
        run.output = Some("cli.oci.tar".into());
        run.tag = Some("cli:2".into());
        run.format = Some(OutputFormat::Oci);
        let request = run.request().unwrap();
        assert_eq!(request.output, Some(PathBuf::from("cli.oci.tar")));
        assert_eq!(request.oci.tag.as_deref(), Some("cli:2"));
        assert_eq!(request.format, Some(OutputFormat::Oci));
    }

    #[test]
    fn a_root_filesystem_refuses_oci_settings_before_planning() {
        let mut run = invocation(flags(&["no-such-program-anywhere"]), Action::Write);
        run.output = Some("out.tgz".into());
        run.tag = Some("web:1".into());
        // The tag is refused before the missing program is looked for.
        let error = run.plan().unwrap_err();
        assert!(matches!(
            error,
            InvocationError::Build(BuildError::OciOnly(_))
        ));
    }
}

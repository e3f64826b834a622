//! The image plan: every file of the image, where it comes from on the host, and why.
//!
//! [`Plan::build`] runs the planning steps in order: find the programs (following
//! scripts to their interpreters) and resolve each as the loader would, copying what it
//! loads; then everything else through one door, [`Planner::add`]: the `--add` trees
//! (their ELF files resolved too), what the `--trace` probes used ([`crate::traced`]:
//! before the extras, which then see the traced libraries too), the extras the loader does not name
//! ([`crate::extras`], one after the other, each reading a [`PlanView`](crate::extras::PlanView) of the plan so
//! far), the mount points, and the image's own loader cache. Nothing is written here;
//! [`crate::image`] writes a plan.
mod command;
mod error;
mod planner;

pub use command::ImageCommand;
pub use error::PlanError;
pub use planner::Planner;

use crate::addition::Addition;
use crate::copy::ImageTree;
use crate::extras;
use crate::loader_cache;
use crate::programs;
use crate::request::BuildRequest;
use crate::resolve::{MissingLibrary, Resolution};
use crate::search::Abi;
use crate::stdlib::{self, MissingStdlib};
use crate::symbols::SymbolCache;
use crate::traced::{self, ProbeFailure};
use command::merged_env;
use std::path::PathBuf;

/// The directories every image has for the container to mount on, with their modes.
const MOUNT_POINTS: &[(&str, u32)] = &[
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/dev", 0o755),
    ("/tmp", 0o1777),
    ("/run", 0o755),
];

/// Everything the image will hold.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The programs asked for (and script interpreters), as the loader loads them.
    pub programs: Vec<Resolution>,
    pub tree: ImageTree,
    /// What the image runs.
    pub command: ImageCommand,
    /// The default PATH with the request's environment laid over it.
    pub env: Vec<String>,
    /// The ABI of the first ELF program (a script's interpreter counts); `None` when no
    /// program is ELF.
    pub abi: Option<Abi>,
    /// Libraries not found, kept going with `--allow-missing`.
    pub missing: Vec<MissingLibrary>,
    /// Programs looked up by name (on the command line, or by a `#!/usr/bin/env NAME`
    /// script) that were found in a directory the image's PATH lacks: inside, the same
    /// name finds nothing.
    pub off_path: Vec<OffPath>,
    /// Probes that exited non-zero, kept with `--trace-allow-fail`.
    pub failed_probes: Vec<ProbeFailure>,
    /// Interpreters whose standard library the image lacks, for a warning.
    pub stdlib_missing: Vec<MissingStdlib>,
}

/// A program found by name outside the image's PATH (see [`Plan::off_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPath {
    pub name: String,
    /// Where it was found, inside the root.
    pub found: PathBuf,
}

impl Plan {
    pub fn build(request: &BuildRequest) -> Result<Plan, PlanError> {
        if request.bins.is_empty() {
            return Err(PlanError::NoPrograms);
        }
        let mut planner = Planner::new(&request.root, request.allow_missing)?;
        let mut first_program = None;
        for name in &request.bins {
            let inside = planner.find_program(name, &request.search_path)?;
            first_program.get_or_insert_with(|| inside.clone());
            planner.add_program(&inside, "program", &request.search_path, 0)?;
        }
        for add in &request.adds {
            planner.add_tree(add)?;
        }
        let probes = traced::run(&request.trace, &request.env)?;
        for probe in &probes {
            planner.add(traced::additions(probe))?;
        }
        let mut symbols = SymbolCache::default();
        for extra in extras::enabled(&request.extras) {
            let additions = extra.additions(&planner.view(), &mut symbols)?;
            planner.add(additions)?;
        }
        planner.copy_merged_usr_links()?;
        planner.add(
            MOUNT_POINTS
                .iter()
                .map(|(path, mode)| Addition::directory(path, *mode, "mount point")),
        )?;
        if let Some(cache) = loader_cache::image_cache(&planner.resolver, &planner.objects) {
            planner.add([Addition::generated(
                loader_cache::CACHE_PATH,
                cache,
                0o644,
                "loader cache: libraries outside the default directories",
            )])?;
        }
        let first_program = first_program.unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let default_env = [format!("PATH={}", programs::DEFAULT_PATH)];
        // Once everything is in: a trace or --add may have brought the library.
        let stdlib_missing = stdlib::missing(&planner.programs, &planner.tree, planner.root());
        Ok(Plan {
            stdlib_missing,
            command: ImageCommand::settle(request, &first_program),
            env: merged_env(&default_env, &request.env),
            abi: planner.programs.first().map(|program| program.abi),
            programs: planner.programs,
            tree: planner.tree,
            missing: planner.missing,
            off_path: planner.off_path,
            failed_probes: probes.into_iter().filter_map(|p| p.failure).collect(),
        })
    }
}

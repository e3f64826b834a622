//! The image plan: every file of the image, where it comes from on the host, and why.
//!
//! [`Plan::build`] runs the planning steps in order: find the programs (following
//! scripts to their interpreters), resolve each as the loader would and copy what it
//! loads, copy `--add` trees (resolving the ELF files in them too), then the extras the
//! loader does not name ([`crate::extras`]), the mount points, and the image's own
//! loader cache. Nothing is written here; [`crate::image`] writes a plan.

use crate::copy::{self, CopyError, ImageTree};
use crate::elf::ElfFacts;
use crate::extras;
use crate::loader_cache;
use crate::programs::{self, ProgramError, RootPath, Shebang};
use crate::request::{AddSpec, BuildRequest};
use crate::resolve::{MissingLibrary, MissingReason, Resolution, ResolveError, Resolver};
use crate::search::{symlink_loop, Abi, Found, Requester};
use mkroot_common::host_file;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Shells that get `-l` when they are the default command: a login shell reads the
/// profile a user expects.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"];

/// The directories every image has for the container to mount on, with their modes.
const MOUNT_POINTS: &[(&str, u32)] = &[
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/dev", 0o755),
    ("/tmp", 0o1777),
    ("/run", 0o755),
];

/// Top-level links a merged-/usr root has into `/usr`.
const MERGED_USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Scripts may name a script as interpreter (Linux follows a few levels); so do we.
const MAX_INTERPRETER_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("{path}: cannot read: {source}; check that it exists and is readable")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an ELF file or a script; name a program or a shared library")]
    NotElf { path: PathBuf },
    #[error("{path}: malformed ELF ({reason}); the file is truncated or damaged")]
    Malformed { path: PathBuf, reason: String },
    #[error("{program}: needs {library} (named by {needed_by}), which is not found; install it, or pass --allow-missing")]
    MissingLibrary {
        program: PathBuf,
        library: String,
        needed_by: PathBuf,
    },
    #[error("{program}: {missing}; fix or remove that file, or pass --allow-missing")]
    UnloadableLibrary { program: PathBuf, missing: String },
    #[error("{root}: cannot use as root: {reason}; give an existing directory to --sysroot")]
    Root { root: PathBuf, reason: String },
    #[error("{path}: cannot read the root's loader cache: {reason}; rebuild it (ldconfig -r ROOT) or remove it")]
    LoaderCache { path: PathBuf, reason: String },
    #[error("{path}: {what}, not a regular file; mkroot reads only regular files there: replace or remove it")]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{path}: {source}; fix the links in the root")]
    SymlinkLoop {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{script}: interpreters nest more than {MAX_INTERPRETER_DEPTH} deep; simplify the script's #! line")]
    InterpreterDepth { script: PathBuf },
    #[error(
        "{script}: its interpreter {interpreter} does not exist; install it or fix the #! line"
    )]
    MissingInterpreter {
        script: PathBuf,
        interpreter: PathBuf,
    },
    #[error("--bins: no programs given; name at least one, like --bins bash")]
    NoPrograms,
    #[error("{host}: a file cannot be the image root `/`; add it at a path under it, like {}:/NAME", host.display())]
    FileAtRoot { host: PathBuf },
}

fn resolve_error(error: ResolveError, shown: &Path) -> PlanError {
    match error {
        ResolveError::LinkerScript { .. } => PlanError::Malformed {
            path: shown.to_path_buf(),
            reason: "a linker script, not a program".to_string(),
        },
        ResolveError::LdCache { path, reason } => PlanError::LoaderCache {
            path,
            reason: format!("malformed: {reason}"),
        },
        ResolveError::NotElf { .. } => PlanError::NotElf {
            path: shown.to_path_buf(),
        },
        ResolveError::Malformed { reason, .. } => PlanError::Malformed {
            path: shown.to_path_buf(),
            reason,
        },
        ResolveError::Io { path, source } => PlanError::Unreadable { path, source },
    }
}

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
}

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
    fn settle(request: &BuildRequest, first_program: &Path) -> ImageCommand {
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
fn merged_env(base: &[String], extra: &[String]) -> Vec<String> {
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

/// A program found by name outside the image's PATH (see [`Plan::off_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffPath {
    pub name: String,
    /// Where it was found, inside the root.
    pub found: PathBuf,
}

/// The state of planning, passed to the extras so they can add what they find.
pub struct Planner {
    resolver: Resolver,
    pub(crate) tree: ImageTree,
    /// Every ELF object resolved so far (programs, added ELF files, extra modules).
    pub(crate) objects: Vec<Resolution>,
    programs: Vec<Resolution>,
    resolved: HashSet<PathBuf>,
    missing: Vec<MissingLibrary>,
    off_path: Vec<OffPath>,
    allow_missing: bool,
}

impl Plan {
    pub fn build(request: &BuildRequest) -> Result<Plan, PlanError> {
        if request.bins.is_empty() {
            return Err(PlanError::NoPrograms);
        }
        if !request.root.is_dir() {
            return Err(PlanError::Root {
                root: request.root.clone(),
                reason: "not a directory".to_string(),
            });
        }
        let root = RootPath::new(&request.root);
        let resolver = Resolver::new(&request.root).map_err(|e| match e {
            ResolveError::Io { path, source } => PlanError::LoaderCache {
                path,
                reason: source.to_string(),
            },
            ResolveError::LdCache { path, reason } => PlanError::LoaderCache { path, reason },
            other => PlanError::Root {
                root: request.root.clone(),
                reason: other.to_string(),
            },
        })?;
        let mut planner = Planner {
            resolver,
            tree: ImageTree::new(root.clone()),
            objects: Vec::new(),
            programs: Vec::new(),
            resolved: HashSet::new(),
            missing: Vec::new(),
            off_path: Vec::new(),
            allow_missing: request.allow_missing,
        };
        let mut first_program = None;
        for name in &request.bins {
            let inside = planner.find_program(name, &request.search_path)?;
            first_program.get_or_insert_with(|| inside.clone());
            planner.add_program(&inside, "program", &request.search_path, 0)?;
        }
        for add in &request.adds {
            planner.add_tree(add)?;
        }
        extras::add_all(&mut planner, &request.extras)?;
        planner.copy_merged_usr_links()?;
        for (path, mode) in MOUNT_POINTS {
            planner
                .tree
                .ensure_dir(Path::new(path), *mode, "mount point")?;
        }
        if let Some(cache) =
            loader_cache::image_cache(&planner.resolver, &planner.tree, &planner.objects)
        {
            planner.tree.add_generated(
                Path::new(loader_cache::CACHE_PATH),
                cache,
                0o644,
                "loader cache: libraries outside the default directories",
            )?;
        }
        let first_program = first_program.unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let default_env = [format!("PATH={}", programs::DEFAULT_PATH)];
        Ok(Plan {
            command: ImageCommand::settle(request, &first_program),
            env: merged_env(&default_env, &request.env),
            abi: planner.programs.first().map(|program| program.abi),
            programs: planner.programs,
            tree: planner.tree,
            missing: planner.missing,
            off_path: planner.off_path,
        })
    }
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

impl Planner {
    pub(crate) fn root(&self) -> &RootPath {
        self.tree.root()
    }

    /// The text of a configuration file of the root (`/etc/nsswitch.conf`), symlinks
    /// followed inside it; `None` when it is absent or unreadable as text, which the
    /// extras take for "use the defaults". A fifo, a device node or a symlink loop there
    /// is an error: the root is not what it should be.
    pub(crate) fn read_config(&self, inside: &str) -> Result<Option<String>, PlanError> {
        let host = match self.root().resolve(Path::new(inside)) {
            Ok(host) => host,
            Err(source) if symlink_loop(&source) => {
                return Err(PlanError::SymlinkLoop {
                    path: self.root().joined(Path::new(inside)),
                    source,
                })
            }
            Err(_) => return Ok(None),
        };
        match host_file::read_regular_to_string(&host) {
            Ok(text) => Ok(Some(text)),
            Err(e) => match host_file::not_regular(&e) {
                // A directory there is absent to libc too.
                Some(found) if found.what != "a directory" => Err(PlanError::NotRegular {
                    path: host,
                    what: found.what,
                }),
                _ => Ok(None),
            },
        }
    }

    /// Finds the program `name` as a shell would ([`programs::find_program`]), noting it
    /// when it was looked up by name and no directory of the image's PATH holds it.
    fn find_program(&mut self, name: &str, search_path: &str) -> Result<PathBuf, PlanError> {
        let found = programs::find_program(name, self.root(), search_path)?;
        let dir = found.parent().unwrap_or(Path::new("/"));
        let on_path = programs::DEFAULT_PATH
            .split(':')
            .any(|entry| Path::new(entry) == dir);
        if !name.contains('/') && !on_path {
            self.off_path.push(OffPath {
                name: name.to_string(),
                found: found.clone(),
            });
        }
        Ok(found)
    }

    /// Adds a program named on the command line (or a script's interpreter): a script
    /// brings its interpreter, an ELF file what the loader loads for it.
    fn add_program(
        &mut self,
        inside: &Path,
        reason: &str,
        search_path: &str,
        depth: usize,
    ) -> Result<(), PlanError> {
        match programs::read_shebang(self.root(), inside)? {
            Some(shebang) => {
                if depth >= MAX_INTERPRETER_DEPTH {
                    return Err(PlanError::InterpreterDepth {
                        script: inside.to_path_buf(),
                    });
                }
                self.tree.copy_path(inside, reason)?;
                let why = format!("interpreter of {}", inside.display());
                match shebang {
                    Shebang::Interpreter(interpreter) => {
                        self.check_interpreter(inside, &interpreter)?;
                        self.add_program(&interpreter, &why, search_path, depth + 1)?;
                    }
                    Shebang::Env { env, program } => {
                        self.check_interpreter(inside, &env)?;
                        self.add_program(&env, &why, search_path, depth + 1)?;
                        let found = self.find_program(&program, search_path)?;
                        self.add_program(&found, &why, search_path, depth + 1)?;
                    }
                }
                Ok(())
            }
            None => {
                let resolution = self.resolve_and_copy(inside, reason)?;
                if let Some(resolution) = resolution {
                    self.programs.push(resolution);
                }
                Ok(())
            }
        }
    }

    /// The kernel runs a script's interpreter by its absolute path; it must exist.
    fn check_interpreter(&self, script: &Path, interpreter: &Path) -> Result<(), PlanError> {
        let found = self
            .root()
            .resolve(interpreter)
            .is_ok_and(|host| host.is_file());
        if interpreter.is_absolute() && found {
            return Ok(());
        }
        Err(PlanError::MissingInterpreter {
            script: script.to_path_buf(),
            interpreter: interpreter.to_path_buf(),
        })
    }

    /// Resolves the ELF object `inside` and copies it, its interpreter and its libraries
    /// into the image. Returns `None` if it was resolved before.
    pub(crate) fn resolve_and_copy(
        &mut self,
        inside: &Path,
        reason: &str,
    ) -> Result<Option<Resolution>, PlanError> {
        if !self.resolved.insert(inside.to_path_buf()) {
            self.tree.copy_path(inside, reason)?;
            return Ok(None);
        }
        let resolution = self
            .resolver
            .resolve(inside)
            .map_err(|e| resolve_error(e, inside))?;
        self.check_missing(&resolution, inside)?;
        self.tree.copy_path(inside, reason)?;
        if let Some(interpreter) = &resolution.interpreter {
            self.tree.copy_path(
                interpreter,
                &format!("program interpreter of {}", inside.display()),
            )?;
        }
        for library in &resolution.libraries {
            self.tree.copy_path(
                &library.path,
                &format!("{} loaded for {}", library.name, inside.display()),
            )?;
        }
        self.objects.push(resolution.clone());
        Ok(Some(resolution))
    }

    /// The root's merged-/usr links (`/bin -> usr/bin`, `/lib -> usr/lib`, ...): programs
    /// and scripts name `/bin/sh` or `/lib/...` paths, which must resolve in the image
    /// as on the host, whether or not a program was found through them.
    fn copy_merged_usr_links(&mut self) -> Result<(), PlanError> {
        for name in MERGED_USR_LINKS {
            let link = Path::new("/").join(name);
            let Ok(target) = std::fs::read_link(self.root().joined(&link)) else {
                continue;
            };
            let target = target.to_string_lossy();
            let into_usr = target.trim_start_matches('/').starts_with("usr/");
            if into_usr && self.root().resolve(&link).is_ok_and(|dir| dir.is_dir()) {
                self.tree.copy_path(&link, "merged-/usr link")?;
            }
        }
        Ok(())
    }

    /// A library the loader would not find stops the build, unless `--allow-missing`.
    fn check_missing(&mut self, resolution: &Resolution, shown: &Path) -> Result<(), PlanError> {
        let Some(missing) = resolution.missing.first() else {
            return Ok(());
        };
        if !self.allow_missing {
            return Err(match &missing.reason {
                MissingReason::NotFound => PlanError::MissingLibrary {
                    program: shown.to_path_buf(),
                    library: missing.name.clone(),
                    needed_by: missing.needed_by.clone(),
                },
                MissingReason::Unloadable { .. } => PlanError::UnloadableLibrary {
                    program: shown.to_path_buf(),
                    missing: missing.to_string(),
                },
            });
        }
        self.missing.extend(resolution.missing.iter().cloned());
        Ok(())
    }

    /// Where libc's dlopen would find `name` (a bare name like `libgcc_s.so.1`): the
    /// loader's cache and default directories, for libc's ABI. libc has no RPATH or
    /// RUNPATH, so nothing else applies to what it loads by name.
    pub(crate) fn find_library(&self, name: &str, libc: &Path) -> Option<PathBuf> {
        let facts = ElfFacts::read(&self.root().resolve(libc).ok()?).ok()?;
        match self
            .resolver
            .search()
            .find(name, &Requester::default(), Abi::of(&facts))
        {
            Found::Library { path, .. } => Some(PathBuf::from(path)),
            _ => None,
        }
    }

    /// `--add HOST[:IMAGE]`: a file or a whole tree, each ELF file in it resolved.
    fn add_tree(&mut self, add: &AddSpec) -> Result<(), PlanError> {
        let host = &add.host;
        let host_abs = if host.is_absolute() {
            programs::normalize(host)
        } else {
            let cwd = std::env::current_dir().map_err(|source| PlanError::Unreadable {
                path: host.clone(),
                source,
            })?;
            programs::normalize(&cwd.join(host))
        };
        let at = programs::normalize(add.image.as_deref().unwrap_or(&host_abs));
        if copy::is_reserved(&at) {
            return Err(PlanError::Copy(CopyError::Reserved { path: at }));
        }
        let reason = add
            .reason
            .clone()
            .unwrap_or_else(|| format!("added by --add {}", host.display()));
        let meta = std::fs::symlink_metadata(&host_abs).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                PlanError::Copy(CopyError::Missing { path: host.clone() })
            }
            _ => PlanError::Unreadable {
                path: host.clone(),
                source,
            },
        })?;
        if at == Path::new("/") && !meta.is_dir() {
            return Err(PlanError::FileAtRoot { host: host.clone() });
        }
        let parent = at.parent().unwrap_or(Path::new("/"));
        let parent = self.tree.ensure_dir(parent, 0o755, "directory")?;
        let at = parent.join(at.file_name().unwrap_or_default());
        if !meta.is_dir() {
            self.tree.add_host_entry(&host_abs, &at, &reason)?;
            return self.scan_added(&host_abs, &reason);
        }
        for item in walkdir::WalkDir::new(&host_abs).sort_by_file_name() {
            let item = item.map_err(|e| PlanError::Unreadable {
                path: e.path().unwrap_or(host).to_path_buf(),
                source: e.into(),
            })?;
            let relative = item.path().strip_prefix(&host_abs).unwrap_or(Path::new(""));
            let dest = if relative.as_os_str().is_empty() {
                at.clone()
            } else {
                at.join(relative)
            };
            // `--add DIR:/` fills the image root, which is there already.
            if dest == Path::new("/") {
                continue;
            }
            self.tree.add_host_entry(item.path(), &dest, &reason)?;
            if item.file_type().is_file() {
                self.scan_added(item.path(), &reason)?;
            }
        }
        Ok(())
    }

    /// An added ELF file brings what the loader loads for it. The resolver works on
    /// paths inside the root, so only added files under the root can be resolved.
    fn scan_added(&mut self, host: &Path, reason: &str) -> Result<(), PlanError> {
        if !is_elf(host) {
            return Ok(());
        }
        let Some(inside) = self.root().inside(host) else {
            return Ok(());
        };
        let why = format!("{reason} (its libraries)");
        if self.resolved.insert(inside.clone()) {
            let resolution = self
                .resolver
                .resolve(&inside)
                .map_err(|e| resolve_error(e, host))?;
            self.check_missing(&resolution, host)?;
            if let Some(interpreter) = &resolution.interpreter {
                self.tree.copy_path(interpreter, &why)?;
            }
            for library in &resolution.libraries {
                self.tree.copy_path(&library.path, &why)?;
            }
            self.objects.push(resolution);
        }
        Ok(())
    }
}

/// Whether a file starts with the ELF magic.
pub fn is_elf(host: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(host)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
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

//! The state of planning and the one door everything but the programs comes in by.
use super::error::resolve_error;
use super::{OffPath, PlanError};
use crate::addition::{Addition, AdditionKind};
use crate::copy::{self, CopyError, ImageTree};
use crate::elf::is_elf;
use crate::extras::PlanView;
use crate::programs::{self, ProgramError, RootPath, Shebang};
use crate::request::AddSpec;
use crate::resolve::{MissingLibrary, MissingReason, Resolution, ResolveError, Resolver};
use mkroot_common::host_file::is_content;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Top-level links a merged-/usr root has into `/usr`.
const MERGED_USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The state of planning. Besides the programs, everything comes in through one door,
/// [`Planner::add`].
pub struct Planner {
    pub(super) resolver: Resolver,
    pub(super) tree: ImageTree,
    /// Every ELF object resolved so far (programs, added ELF files, extra modules).
    pub(super) objects: Vec<Resolution>,
    pub(super) programs: Vec<Resolution>,
    resolved: HashSet<PathBuf>,
    pub(super) missing: Vec<MissingLibrary>,
    pub(super) off_path: Vec<OffPath>,
    allow_missing: bool,
    /// Image paths planned by a trace, which a later addition may take over.
    traced: HashSet<PathBuf>,
}

/// How an ELF object being resolved is in the image, which decides how its interpreter
/// and libraries are named.
#[derive(Clone, Copy)]
enum Object<'a> {
    /// Copied from the root at its own path with this reason (a program, an extra's
    /// module); its interpreter and libraries say what they are loaded for.
    Copied(&'a str),
    /// Put in by a host-file addition with this reason; its interpreter and libraries
    /// are "REASON (its libraries)".
    Placed(&'a str),
}

impl Planner {
    /// An empty plan of the root `root`, its loader cache read.
    pub fn new(root: &Path, allow_missing: bool) -> Result<Planner, PlanError> {
        if !root.is_dir() {
            return Err(PlanError::Root {
                root: root.to_path_buf(),
                reason: "not a directory".to_string(),
            });
        }
        let resolver = Resolver::new(root).map_err(|e| match e {
            ResolveError::Io { path, source } => PlanError::LoaderCache {
                path,
                reason: source.to_string(),
            },
            ResolveError::LdCache { path, reason } => PlanError::LoaderCache { path, reason },
            other => PlanError::Root {
                root: root.to_path_buf(),
                reason: other.to_string(),
            },
        })?;
        Ok(Planner {
            resolver,
            tree: ImageTree::new(RootPath::new(root)),
            objects: Vec::new(),
            programs: Vec::new(),
            resolved: HashSet::new(),
            missing: Vec::new(),
            off_path: Vec::new(),
            allow_missing,
            traced: HashSet::new(),
        })
    }

    pub(super) fn root(&self) -> &RootPath {
        self.tree.root()
    }

    /// What a source of additions sees of the plan so far.
    pub fn view(&self) -> PlanView<'_> {
        PlanView {
            root: self.tree.root(),
            objects: &self.objects,
            tree: &self.tree,
            search: self.resolver.search(),
        }
    }

    /// The image tree planned so far.
    pub fn tree(&self) -> &ImageTree {
        &self.tree
    }

    /// The one door for what is not a program: applies `additions` in order (see
    /// [`AdditionKind`] for what each kind makes). A path already planned keeps its
    /// first reason; one planned as something else is an error.
    pub fn add(&mut self, additions: impl IntoIterator<Item = Addition>) -> Result<(), PlanError> {
        for Addition { path, reason, kind } in additions {
            if !matches!(
                kind,
                AdditionKind::Traced { .. } | AdditionKind::Directory { .. }
            ) {
                self.take_over_traced(&path);
            }
            match kind {
                AdditionKind::Elf => {
                    self.resolve_object(&path, &path, Object::Copied(&reason))?;
                }
                AdditionKind::RootFile => {
                    self.tree.copy_path(&path, &reason)?;
                }
                AdditionKind::HostFile { source } => self.add_host_file(&source, &path, &reason)?,
                AdditionKind::Generated { bytes, mode } => {
                    self.tree.add_generated(&path, bytes, mode, &reason)?;
                }
                AdditionKind::Directory { mode } => {
                    self.tree.ensure_dir(&path, mode, &reason)?;
                }
                AdditionKind::Traced { executed } => self.add_traced(&path, executed, &reason)?,
            }
        }
        Ok(())
    }

    /// A path a trace planned gives way to an addition of another kind: the file mkroot
    /// makes (`/etc/passwd`) or names for a reason of its own wins over the host's copy
    /// a probe happened to read.
    fn take_over_traced(&mut self, path: &Path) {
        let path = programs::normalize(path);
        if self.traced.remove(&path) {
            self.tree.remove(&path);
        }
    }

    /// A host path a probe used (see [`AdditionKind::Traced`]).
    fn add_traced(&mut self, path: &Path, executed: bool, reason: &str) -> Result<(), PlanError> {
        let path = programs::normalize(path);
        // The root is there already; what the plan has stays as planned.
        if path == Path::new("/") || self.tree.contains(&path) {
            return Ok(());
        }
        // Gone since the probe ran, or a socket or fifo it talked to: not image content.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok(());
        };
        if !is_content(&meta.file_type()) {
            return Ok(());
        }
        if executed && meta.is_file() && self.is_program(&path) {
            return self.leniently(|planner| {
                planner.add_program(&path, reason, programs::DEFAULT_PATH, 0)
            });
        }
        let at = self.placed(&path)?;
        self.tree.add_host_entry(&path, &at, reason)?;
        self.traced.insert(at);
        if !meta.is_file() || !is_elf(&path) {
            return Ok(());
        }
        // An object file, a debug file or a foreign one is copied all the same; only
        // what the loader could load has libraries to bring.
        match self.leniently(|planner| planner.resolve_object(&path, &path, Object::Placed(reason)))
        {
            Err(PlanError::NotElf { .. } | PlanError::Malformed { .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Whether the root's `inside` is what `--bins` takes: a script or an ELF file.
    fn is_program(&self, inside: &Path) -> bool {
        matches!(programs::read_shebang(self.root(), inside), Ok(Some(_)))
            || self.root().resolve(inside).is_ok_and(|host| is_elf(&host))
    }

    /// Runs `add` with libraries the resolver does not find left out and warned about,
    /// not stopping the build: for what a probe used, the run itself showed what loads.
    fn leniently<T>(
        &mut self,
        add: impl FnOnce(&mut Planner) -> Result<T, PlanError>,
    ) -> Result<T, PlanError> {
        let strict = std::mem::replace(&mut self.allow_missing, true);
        let result = add(self);
        self.allow_missing = strict;
        result
    }

    /// A host file, symlink or directory as it is at the image path `at` (its parent
    /// planned first); a regular ELF file of the root brings what the loader loads for
    /// it. The resolver works on paths inside the root, so only those can be resolved.
    fn add_host_file(&mut self, source: &Path, at: &Path, reason: &str) -> Result<(), PlanError> {
        let at = self.placed(at)?;
        self.tree.add_host_entry(source, &at, reason)?;
        let regular = std::fs::symlink_metadata(source).is_ok_and(|meta| meta.is_file());
        if !regular || !is_elf(source) {
            return Ok(());
        }
        if let Some(inside) = self.root().inside(source) {
            self.resolve_object(&inside, source, Object::Placed(reason))?;
        }
        Ok(())
    }

    /// Where the image path `path` ends up once its parent directory is planned: as the
    /// root has it (a symlink on the way, `/lib -> usr/lib`, is kept and followed), or
    /// made. A parent planned as a directory already is taken as it is.
    fn placed(&mut self, path: &Path) -> Result<PathBuf, PlanError> {
        let path = programs::normalize(path);
        let parent = path.parent().unwrap_or(Path::new("/"));
        if parent == Path::new("/") || self.tree.is_dir(parent) {
            return Ok(path);
        }
        let parent = self.tree.ensure_dir(parent, 0o755, "directory")?;
        Ok(parent.join(path.file_name().unwrap_or_default()))
    }

    /// Finds the program `name` as a shell would ([`programs::find_program`]), noting it
    /// when it was looked up by name and no directory of the image's PATH holds it.
    pub(super) fn find_program(
        &mut self,
        name: &str,
        search_path: &str,
    ) -> Result<PathBuf, PlanError> {
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
    pub(super) fn add_program(
        &mut self,
        inside: &Path,
        reason: &str,
        search_path: &str,
        depth: usize,
    ) -> Result<(), PlanError> {
        match programs::read_shebang(self.root(), inside)? {
            Some(shebang) => {
                if depth >= programs::MAX_INTERPRETER_DEPTH {
                    return Err(PlanError::Program(ProgramError::InterpreterDepth {
                        script: inside.to_path_buf(),
                    }));
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
                let resolution = self.resolve_object(inside, inside, Object::Copied(reason))?;
                if let Some(resolution) = resolution {
                    self.programs.push(resolution);
                }
                Ok(())
            }
        }
    }

    /// The kernel runs a script's interpreter by its absolute path; it must exist.
    fn check_interpreter(&self, script: &Path, interpreter: &Path) -> Result<(), ProgramError> {
        let found = self
            .root()
            .resolve(interpreter)
            .is_ok_and(|host| host.is_file());
        if interpreter.is_absolute() && found {
            return Ok(());
        }
        Err(ProgramError::MissingInterpreter {
            script: script.to_path_buf(),
            interpreter: interpreter.to_path_buf(),
        })
    }

    /// Resolves the ELF object `inside` (named `shown` in errors) the first time it is
    /// met and copies what the loader loads for it; returns `None` if it was resolved
    /// before.
    fn resolve_object(
        &mut self,
        inside: &Path,
        shown: &Path,
        object: Object,
    ) -> Result<Option<Resolution>, PlanError> {
        if !self.resolved.insert(inside.to_path_buf()) {
            if let Object::Copied(reason) = object {
                self.tree.copy_path(inside, reason)?;
            }
            return Ok(None);
        }
        let resolution = self
            .resolver
            .resolve(inside)
            .map_err(|e| resolve_error(e, shown))?;
        self.check_missing(&resolution, shown)?;
        match object {
            Object::Copied(reason) => {
                self.tree.copy_path(inside, reason)?;
                if let Some(interpreter) = &resolution.interpreter {
                    let why = format!("program interpreter of {}", inside.display());
                    self.tree.copy_path(interpreter, &why)?;
                }
                for library in &resolution.libraries {
                    let why = format!("{} loaded for {}", library.name, inside.display());
                    self.tree.copy_path(&library.path, &why)?;
                }
            }
            Object::Placed(reason) => {
                let why = format!("{reason} (its libraries)");
                let interpreter = resolution.interpreter.iter();
                for path in interpreter.chain(resolution.libraries.iter().map(|l| &l.path)) {
                    self.tree.copy_path(path, &why)?;
                }
            }
        }
        self.objects.push(resolution.clone());
        Ok(Some(resolution))
    }

    /// The root's merged-/usr links (`/bin -> usr/bin`, `/lib -> usr/lib`, ...): programs
    /// and scripts name `/bin/sh` or `/lib/...` paths, which must resolve in the image
    /// as on the host, whether or not a program was found through them.
    pub(super) fn copy_merged_usr_links(&mut self) -> Result<(), PlanError> {
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

    /// `--add HOST[:IMAGE]`: a file or a whole tree, each ELF file in it resolved.
    pub(super) fn add_tree(&mut self, add: &AddSpec) -> Result<(), PlanError> {
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
        let at = self.placed(&at)?;
        if !meta.is_dir() {
            return self.add([Addition::host_file(host_abs, at, reason)]);
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
            self.add([Addition::host_file(item.path(), dest, reason.clone())])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::PlannedKind;
    use std::os::unix::fs::symlink;

    fn kind<'a>(planner: &'a Planner, path: &str) -> &'a PlannedKind {
        &planner.tree().entries()[path].kind
    }

    fn reason<'a>(planner: &'a Planner, path: &str) -> &'a str {
        &planner.tree().entries()[path].reason
    }

    #[test]
    fn each_kind_of_addition_goes_in_through_the_door() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/share/doc")).unwrap();
        std::fs::write(r.join("usr/share/doc/readme"), b"root file").unwrap();
        symlink("doc", r.join("usr/share/docs")).unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("data"), b"host file").unwrap();
        let mut planner = Planner::new(r, false).unwrap();
        planner
            .add([
                Addition::root_file("/usr/share/docs/readme", "root file"),
                Addition::host_file(host.path().join("data"), "/srv/data", "traced by test"),
                Addition::generated("/etc/motd", b"hi\n".to_vec(), 0o644, "generated"),
                Addition::directory("/var/empty", 0o700, "made"),
            ])
            .unwrap();
        // The root's file came in the way the kernel walks to it.
        assert_eq!(
            kind(&planner, "usr/share/docs"),
            &PlannedKind::Symlink {
                target: "doc".into()
            }
        );
        assert!(matches!(
            kind(&planner, "usr/share/doc/readme"),
            PlannedKind::File { .. }
        ));
        assert_eq!(reason(&planner, "usr/share/doc/readme"), "root file");
        match kind(&planner, "srv/data") {
            PlannedKind::File { source, .. } => assert_eq!(source, &host.path().join("data")),
            other => panic!("{other:?}"),
        }
        assert_eq!(reason(&planner, "srv/data"), "traced by test");
        assert_eq!(kind(&planner, "srv"), &PlannedKind::Dir);
        assert_eq!(
            kind(&planner, "etc/motd"),
            &PlannedKind::Generated(b"hi\n".to_vec())
        );
        assert_eq!(kind(&planner, "var/empty"), &PlannedKind::Dir);
        assert_eq!(planner.tree().entries()["var/empty"].mode, 0o700);
    }

    #[test]
    fn a_host_symlink_stays_a_symlink_and_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("real"), b"x").unwrap();
        symlink("/etc/alternatives/real", host.path().join("link")).unwrap();
        std::fs::create_dir(host.path().join("dir")).unwrap();
        let mut planner = Planner::new(root.path(), false).unwrap();
        planner
            .add([
                Addition::host_file(host.path().join("link"), "/opt/link", "traced"),
                Addition::host_file(host.path().join("dir"), "/opt/dir", "traced"),
            ])
            .unwrap();
        assert_eq!(
            kind(&planner, "opt/link"),
            &PlannedKind::Symlink {
                target: "../etc/alternatives/real".into()
            }
        );
        assert!(!planner.tree().contains(Path::new("/etc/alternatives/real")));
        assert_eq!(kind(&planner, "opt/dir"), &PlannedKind::Dir);
        // Adding the same link again is no clash.
        planner
            .add([Addition::host_file(
                host.path().join("link"),
                "/opt/link",
                "again",
            )])
            .unwrap();
        assert_eq!(reason(&planner, "opt/link"), "traced");
    }

    /// Whether a regular file of the plan has this reason.
    fn has_file_for(planner: &Planner, why: &str) -> bool {
        planner
            .tree()
            .entries()
            .values()
            .any(|e| matches!(e.kind, PlannedKind::File { .. }) && e.reason == why)
    }

    #[test]
    fn an_elf_addition_brings_what_the_loader_loads_for_it() {
        let mut planner = Planner::new(Path::new("/"), false).unwrap();
        planner.add([Addition::elf("/bin/sh", "a shell")]).unwrap();
        let resolution = &planner.objects[0];
        let libc = (resolution.libraries.iter())
            .find(|l| l.name.starts_with("libc.so."))
            .expect("/bin/sh loads a libc");
        assert!(has_file_for(&planner, "a shell"));
        assert!(has_file_for(
            &planner,
            &format!("{} loaded for /bin/sh", libc.name)
        ));
    }

    #[test]
    fn a_host_elf_file_brings_its_libraries_under_its_reason() {
        let mut planner = Planner::new(Path::new("/"), false).unwrap();
        let shell = std::fs::canonicalize("/bin/sh").unwrap();
        planner
            .add([Addition::host_file(
                &shell,
                "/app/sh",
                "traced by sh -c true",
            )])
            .unwrap();
        assert!(matches!(kind(&planner, "app/sh"), PlannedKind::File { .. }));
        assert_eq!(reason(&planner, "app/sh"), "traced by sh -c true");
        assert_eq!(planner.objects.len(), 1);
        assert!(has_file_for(
            &planner,
            "traced by sh -c true (its libraries)"
        ));
    }

    #[test]
    fn a_traced_path_yields_to_the_plan_and_to_what_mkroot_makes() {
        let mut planner = Planner::new(Path::new("/"), false).unwrap();
        planner.add([Addition::elf("/bin/sh", "program")]).unwrap();
        let shell = planner
            .tree()
            .entries()
            .keys()
            .find(|k| k.ends_with("bin/dash"));
        let shell = format!("/{}", shell.expect("/bin/sh is dash here"));
        planner
            .add([
                Addition::traced(&shell, true, "traced by sh"),
                Addition::traced("/etc/os-release", false, "traced by sh"),
                Addition::traced("/etc/passwd", false, "traced by sh"),
            ])
            .unwrap();
        // What the plan had keeps its reason; a new path takes the probe's.
        assert_eq!(reason(&planner, &shell[1..]), "program");
        assert_eq!(reason(&planner, "etc/os-release"), "traced by sh");
        assert!(matches!(
            kind(&planner, "etc/passwd"),
            PlannedKind::File { .. }
        ));
        // The users extra's own /etc/passwd takes the host's copy's place.
        planner
            .add([Addition::generated(
                "/etc/passwd",
                b"root:x:0:0::/root:/bin/sh\n".to_vec(),
                0o644,
                "users",
            )])
            .unwrap();
        assert!(matches!(
            kind(&planner, "etc/passwd"),
            PlannedKind::Generated(_)
        ));
    }

    #[test]
    fn a_traced_program_is_resolved_and_a_traced_object_file_is_only_copied() {
        let mut planner = Planner::new(Path::new("/"), false).unwrap();
        let ls = std::fs::canonicalize("/bin/ls").unwrap();
        let crt = Path::new("/usr/lib/x86_64-linux-gnu/crt1.o");
        let mut additions = vec![Addition::traced(&ls, true, "traced by ls")];
        if crt.exists() {
            additions.push(Addition::traced(crt, false, "traced by cc"));
        }
        planner.add(additions).unwrap();
        assert_eq!(planner.programs.len(), 1);
        assert!(has_file_for(
            &planner,
            &format!("libc.so.6 loaded for {}", ls.display())
        ));
        if crt.exists() {
            assert!(planner.tree().contains(crt));
        }
    }
}

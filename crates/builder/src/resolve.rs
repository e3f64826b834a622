//! Load order: which libraries the loader would load for a program, found breadth-first
//! as ld.so does, first loaded wins by name/SONAME.
//!
//! The loader's `_dl_map_object_deps` walks a search list breadth-first: the program's
//! dependencies in dynamic-section order, then each newly loaded object's in turn. Before
//! searching, a name is matched against every object already loaded (the name it was
//! loaded by, the path it was opened through, its SONAME); after searching, a file already
//! loaded under another name (same device and inode) is not loaded again. Filtees
//! (DT_FILTER, DT_AUXILIARY) go just before their filter and are walked next; a missing
//! auxiliary filtee is no error. The interpreter (PT_INTERP) is mapped by the kernel
//! before all of this and answers to its path and its SONAME.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::elf::{Dependency, DependencyKind, ElfError, ElfFacts};
use crate::ldcache::LdCacheError;
use crate::search::{Abi, Candidate, Found, LibrarySearch, PathSource, Requester};

/// One library in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLibrary {
    /// The name as written in DT_NEEDED (`libc.so.6`).
    pub name: String,
    /// The path the loader would open it through, inside the (sys)root
    /// (`/lib/x86_64-linux-gnu/libc.so.6`).
    pub path: PathBuf,
}

/// A DT_NEEDED entry that no search rule found, or that the loader would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingLibrary {
    pub name: String,
    /// The object (path inside the root) whose DT_NEEDED named it.
    pub needed_by: PathBuf,
    /// Why it is missing.
    pub reason: MissingReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingReason {
    /// No search rule found a file of the right class and machine.
    NotFound,
    /// The search stopped at `path`, which the loader cannot load (a linker script, an
    /// empty file, a broken ELF file): the loader would fail there.
    Unloadable { path: PathBuf, reason: String },
}

impl std::fmt::Display for MissingLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            MissingReason::NotFound => write!(
                f,
                "{}: library {} not found",
                self.needed_by.display(),
                self.name
            ),
            MissingReason::Unloadable { path, reason } => write!(
                f,
                "{}: library {} resolves to {}, which the loader cannot load: {reason}",
                self.needed_by.display(),
                self.name,
                path.display()
            ),
        }
    }
}

/// What the loader would load for one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The program as found (path inside the root).
    pub program: PathBuf,
    /// The class, byte order and machine it is built for, read with its headers.
    pub abi: Abi,
    /// PT_INTERP, at its exact path; `None` for static programs and plain libraries.
    pub interpreter: Option<PathBuf>,
    /// Libraries in load order, the program itself and its interpreter not included.
    pub libraries: Vec<LoadedLibrary>,
    pub missing: Vec<MissingLibrary>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an ELF file")]
    NotElf { path: PathBuf },
    #[error("{path}: a linker script, not a library or program")]
    LinkerScript { path: PathBuf },
    #[error("{path}: malformed ELF: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: malformed loader cache: {reason}")]
    LdCache { path: PathBuf, reason: String },
}

impl ResolveError {
    fn from_elf(path: &Path, error: ElfError) -> ResolveError {
        let path = path.to_path_buf();
        match error {
            ElfError::Io(source) => ResolveError::Io { path, source },
            ElfError::NotElf => ResolveError::NotElf { path },
            ElfError::LinkerScript => ResolveError::LinkerScript { path },
            ElfError::Malformed(reason) => ResolveError::Malformed { path, reason },
        }
    }
}

/// An object in the process being modelled.
struct Loaded {
    /// The name it was first loaded by (its DT_NEEDED entry).
    name: String,
    /// Names a DT_NEEDED can match: the names it was loaded by, the path it was opened
    /// through, its SONAME.
    names: Vec<String>,
    facts: Arc<ElfFacts>,
    file_id: Option<(u64, u64)>,
    /// `$ORIGIN`: the directory of the path it was opened through (for the program, of
    /// its real path).
    origin: Option<String>,
    /// The object whose DT_NEEDED loaded it (its RPATH applies next).
    loader: Option<usize>,
    /// Path inside the root, for `needed_by`.
    path: PathBuf,
}

impl Loaded {
    fn answers_to(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name) || self.facts.soname.as_deref() == Some(name)
    }
}

/// Resolves programs against a root (`/`, or a `--sysroot`), reading that root's loader
/// cache and default directories once and remembering every file it has looked at, so
/// many programs share the work.
pub struct Resolver {
    search: LibrarySearch,
}

impl Resolver {
    pub fn new(root: &Path) -> Result<Resolver, ResolveError> {
        let search = LibrarySearch::new(root).map_err(|e| {
            let path = root.join("etc/ld.so.cache");
            match e {
                LdCacheError::Io(source) => ResolveError::Io { path, source },
                other => ResolveError::LdCache {
                    path,
                    reason: other.to_string(),
                },
            }
        })?;
        Ok(Resolver { search })
    }

    pub fn root(&self) -> &Path {
        self.search.root()
    }

    /// The library search rules of this root (default directories, token expansion, ...).
    pub fn search(&self) -> &LibrarySearch {
        &self.search
    }

    /// What the loader would load for each program, in the order given. The programs
    /// share parsed libraries and search results; several threads take programs from a
    /// common queue (more threads than CPUs: on a cold page cache the work waits on disk).
    pub fn resolve_many(&self, programs: &[PathBuf]) -> Vec<Result<Resolution, ResolveError>> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(8)
            .min(programs.len().max(1));
        let next = AtomicUsize::new(0);
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(program) = programs.get(i) else {
                                return done;
                            };
                            done.push((i, self.resolve(program)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("resolver thread panicked"))
                .collect()
        });
        let mut ordered: Vec<Option<Result<Resolution, ResolveError>>> =
            (0..programs.len()).map(|_| None).collect();
        for (i, result) in results {
            ordered[i] = Some(result);
        }
        ordered
            .into_iter()
            .map(|r| r.expect("every program resolved"))
            .collect()
    }

    /// What the loader would load for `program` (a path inside the root).
    /// On the root `/` a relative path is taken from the current directory, as a shell
    /// would; inside a sysroot, from the root.
    pub fn resolve(&self, program: &Path) -> Result<Resolution, ResolveError> {
        let absolute;
        let program = if program.is_relative() && self.root() == Path::new("/") {
            absolute = std::path::absolute(program).map_err(|source| ResolveError::Io {
                path: program.to_path_buf(),
                source,
            })?;
            absolute.as_path()
        } else {
            program
        };
        let program_str = program.to_string_lossy();
        let host = self
            .search
            .host(&program_str)
            .map_err(|source| ResolveError::Io {
                path: program.to_path_buf(),
                source,
            })?;
        let facts = ElfFacts::read(&host).map_err(|e| ResolveError::from_elf(program, e))?;
        let abi = Abi::of(&facts);
        let mut resolution = Resolution {
            program: program.to_path_buf(),
            abi,
            interpreter: facts.interpreter.as_ref().map(PathBuf::from),
            libraries: Vec::new(),
            missing: Vec::new(),
        };
        if facts.is_static() {
            return Ok(resolution);
        }
        let real = self
            .search
            .real_path(&program_str)
            .map_err(|source| ResolveError::Io {
                path: program.to_path_buf(),
                source,
            })?;
        let file_id = std::fs::metadata(&host).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        let mut order = LoadOrder::new(Loaded {
            name: String::new(),
            names: Vec::new(),
            facts: Arc::new(facts),
            file_id,
            origin: real.parent().map(|d| d.to_string_lossy().into_owned()),
            loader: None,
            path: program.to_path_buf(),
        });
        let interpreter = order.objects[0].facts.interpreter.clone();
        let interpreter = interpreter.and_then(|interp| {
            self.load_interpreter(&interp, abi, program, &mut order, &mut resolution)
        });

        self.walk(&mut order, abi, &mut resolution);
        resolution.libraries = order
            .chain
            .iter()
            .filter(|&&i| i != 0 && Some(i) != interpreter)
            .map(|&i| LoadedLibrary {
                name: order.objects[i].name.clone(),
                path: order.objects[i].path.clone(),
            })
            .collect();
        Ok(resolution)
    }

    /// Walks the search list breadth-first. A DT_NEEDED object joins the end of the list
    /// (and of the loader's list) when first loaded; a filtee is put just before its filter
    /// in both, and is walked next.
    fn walk(&self, order: &mut LoadOrder, abi: Abi, resolution: &mut Resolution) {
        let mut pos = 0;
        while let Some(offset) = order.queue[pos..].iter().position(|(_, walked)| !walked) {
            pos += offset;
            order.queue[pos].1 = true;
            let object = order.queue[pos].0;
            let mut insert_at = pos;
            let dependencies = order.objects[object].facts.dependencies.clone();
            for dependency in &dependencies {
                let Some(dep) = self.load(dependency, object, abi, order, resolution) else {
                    continue;
                };
                let queued = order.queue.iter().position(|(o, _)| *o == dep);
                match (dependency.kind, queued) {
                    (DependencyKind::Needed, Some(_)) => {}
                    (DependencyKind::Needed, None) => order.queue.push((dep, false)),
                    // A filtee already ahead in the list stays where it is.
                    (_, Some(at)) if at <= insert_at => {}
                    (_, queued) => {
                        if let Some(at) = queued {
                            order.queue.remove(at);
                        }
                        order.queue.insert(insert_at, (dep, false));
                        insert_at += 1;
                        order.move_before(dep, object);
                    }
                }
            }
        }
    }

    /// The kernel maps the interpreter at PT_INTERP's exact path, before any search. It is
    /// in the loader's list, not in the search list until something needs it.
    fn load_interpreter(
        &self,
        interp: &str,
        abi: Abi,
        program: &Path,
        order: &mut LoadOrder,
        resolution: &mut Resolution,
    ) -> Option<usize> {
        // Read once for all the programs that share it; read directly only when the
        // search would not load it as a library (the kernel maps it all the same).
        let facts = (self.search.elf_facts(interp))
            .map(|candidate| Arc::clone(&candidate.facts))
            .or_else(|| {
                let host = self.search.host(interp).ok()?;
                ElfFacts::read(&host).ok().map(Arc::new)
            })
            .filter(|f| Abi::of(f) == abi);
        let Some(facts) = facts else {
            resolution.missing.push(MissingLibrary {
                name: interp.to_string(),
                needed_by: program.to_path_buf(),
                reason: MissingReason::NotFound,
            });
            return None;
        };
        Some(order.add(Loaded {
            name: interp.to_string(),
            names: vec![interp.to_string()],
            facts,
            file_id: None,
            origin: None,
            loader: None,
            path: PathBuf::from(interp),
        }))
    }

    /// Loads one dependency of `requester` as `_dl_map_object` does: an object already
    /// loaded answers by name or SONAME, else the search runs and a file already loaded
    /// under another name is not loaded again. Returns the object, or `None` when there
    /// is none (recorded as missing, except for an auxiliary filtee: the loader goes on).
    fn load(
        &self,
        dependency: &Dependency,
        requester: usize,
        abi: Abi,
        order: &mut LoadOrder,
        resolution: &mut Resolution,
    ) -> Option<usize> {
        let optional = dependency.kind == DependencyKind::Auxiliary;
        let req = &order.objects[requester];
        let missing = |reason| MissingLibrary {
            name: dependency.name.clone(),
            needed_by: req.path.clone(),
            reason,
        };
        let Some(name) = self
            .search
            .expand_tokens(&dependency.name, req.origin.as_deref(), abi)
        else {
            if !optional {
                resolution.missing.push(missing(MissingReason::NotFound));
            }
            return None;
        };
        if let Some(i) = order.objects.iter().position(|l| l.answers_to(&name)) {
            return Some(i);
        }
        let found = self
            .search
            .find(&name, &requester_paths(&order.objects, requester), abi);
        let (path, candidate): (String, Arc<Candidate>) = match found {
            Found::Library { path, candidate } => (path, candidate),
            Found::NotFound => {
                if !optional {
                    resolution.missing.push(missing(MissingReason::NotFound));
                }
                return None;
            }
            Found::Unloadable { path, reason } => {
                if !optional {
                    resolution.missing.push(missing(MissingReason::Unloadable {
                        path: PathBuf::from(path),
                        reason,
                    }));
                }
                return None;
            }
        };
        if let Some(i) = order
            .objects
            .iter()
            .position(|l| l.file_id == Some(candidate.file_id))
        {
            // The same file under another name: the loader adds the name, loads nothing.
            order.objects[i].names.push(name);
            return Some(i);
        }
        Some(order.add(Loaded {
            name: dependency.name.clone(),
            names: vec![name, path.clone()],
            facts: Arc::clone(&candidate.facts),
            file_id: Some(candidate.file_id),
            origin: Some(origin_of(&path)),
            loader: Some(requester),
            path: PathBuf::from(path),
        }))
    }
}

/// The process being modelled: every object loaded, the loader's list of them (its
/// `l_next` chain: what `ldd` and `dl_iterate_phdr` report) and the search list walked
/// breadth-first.
struct LoadOrder {
    objects: Vec<Loaded>,
    /// Indices into `objects`, in the loader's list order.
    chain: Vec<usize>,
    /// The search list: (object, walked already).
    queue: Vec<(usize, bool)>,
}

impl LoadOrder {
    fn new(program: Loaded) -> LoadOrder {
        LoadOrder {
            objects: vec![program],
            chain: vec![0],
            queue: vec![(0, false)],
        }
    }

    /// A newly mapped object joins the end of the loader's list.
    fn add(&mut self, object: Loaded) -> usize {
        self.objects.push(object);
        let i = self.objects.len() - 1;
        self.chain.push(i);
        i
    }

    /// Moves `filtee` just before `filter` in the loader's list.
    fn move_before(&mut self, filtee: usize, filter: usize) {
        self.chain.retain(|&i| i != filtee);
        let at = self.chain.iter().position(|&i| i == filter).unwrap_or(0);
        self.chain.insert(at, filtee);
    }
}

/// The search paths that apply to a DT_NEEDED of `requester`: RPATHs up its loader chain
/// and then the program's, unless the requester has RUNPATH; its own RUNPATH.
fn requester_paths(loaded: &[Loaded], requester: usize) -> Requester<'_> {
    let req = &loaded[requester];
    let mut rpaths = Vec::new();
    if req.facts.runpath.is_none() {
        let mut chain = Some(requester);
        let mut saw_program = false;
        while let Some(i) = chain {
            if let Some(paths) = loaded[i].facts.effective_rpath() {
                rpaths.push(PathSource {
                    paths,
                    origin: loaded[i].origin.as_deref(),
                });
            }
            saw_program |= i == 0;
            chain = loaded[i].loader;
        }
        if !saw_program {
            if let Some(paths) = loaded[0].facts.effective_rpath() {
                rpaths.push(PathSource {
                    paths,
                    origin: loaded[0].origin.as_deref(),
                });
            }
        }
    }
    Requester {
        rpaths,
        runpath: req.facts.runpath.as_deref().map(|paths| PathSource {
            paths,
            origin: req.origin.as_deref(),
        }),
        nodeflib: req.facts.nodeflib(),
    }
}

/// The directory part of the path an object was opened through, as the loader computes
/// `l_origin` (no symlink resolution; "/" stays "/").
fn origin_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(at) => path[..at].to_string(),
        // A relative name without a slash cannot be opened by path; the root then.
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_the_directory_as_spelled() {
        assert_eq!(
            origin_of("/opt/x/bin/../lib/libfoo.so"),
            "/opt/x/bin/../lib"
        );
        assert_eq!(origin_of("/libfoo.so"), "/");
    }

    #[test]
    fn resolves_the_system_shell() {
        let resolver = Resolver::new(Path::new("/")).unwrap();
        let r = resolver.resolve(Path::new("/bin/sh")).unwrap();
        assert!(r.interpreter.is_some());
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        assert!(r.libraries.iter().any(|l| l.name == "libc.so.6"));
    }

    #[test]
    fn relative_programs_are_taken_from_the_current_directory() {
        let resolver = Resolver::new(Path::new("/")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let relative: PathBuf = cwd
            .components()
            .skip(1)
            .map(|_| "..")
            .collect::<PathBuf>()
            .join(sh.strip_prefix("/").unwrap());
        let r = resolver.resolve(&relative).unwrap();
        assert_eq!(r.libraries, resolver.resolve(&sh).unwrap().libraries);
    }

    #[test]
    fn truncated_programs_are_errors_not_panics() {
        let resolver = Resolver::new(Path::new("/")).unwrap();
        let whole = std::fs::read("/bin/true").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("true");
        for len in [0, 3, 16, 52, 63, 64, 100, 500, 1000, 4096, whole.len() / 2] {
            std::fs::write(&cut, &whole[..len.min(whole.len())]).unwrap();
            if let Err(e) = resolver.resolve(&cut) {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
        std::fs::write(&cut, &whole[..100]).unwrap();
        assert!(matches!(
            resolver.resolve(&cut),
            Err(ResolveError::Malformed { .. })
        ));
    }

    #[test]
    fn rejects_non_elf_and_linker_scripts() {
        let resolver = Resolver::new(Path::new("/")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("script.sh");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        assert!(matches!(
            resolver.resolve(&text),
            Err(ResolveError::NotElf { .. })
        ));
        let script = dir.path().join("libc.so");
        std::fs::write(&script, "/* GNU ld script */\nGROUP ( libc.so.6 )\n").unwrap();
        assert!(matches!(
            resolver.resolve(&script),
            Err(ResolveError::LinkerScript { .. })
        ));
        assert!(matches!(
            resolver.resolve(&dir.path().join("absent")),
            Err(ResolveError::Io { .. })
        ));
    }
}

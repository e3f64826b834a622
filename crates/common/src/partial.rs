//! What a build has made of its output so far, so that a build that fails or is
//! interrupted takes back what it made, and nothing else.
//!
//! The writer makes every path of its output through [`PartialOutput::create`], which
//! records the path once it exists; [`PartialOutput::complete`] ends the record when the
//! output is whole (the rename that puts a tarball in place runs inside it). Until then
//! [`PartialOutput::remove`] removes what was recorded, newest first, so that a directory
//! goes after its contents. What was there before the build (an empty output directory
//! the user made, an older image under the output's name) or what another process put
//! there was never recorded, and is never removed: a directory of the build's that holds
//! such a file is left, and the [`Removal`] says so.
//!
//! The record is locked while a path is made and while the record is removed, so a
//! removal from another thread (a signal, see the builder's `interrupt`) and the writer
//! never race; [`PartialOutput::remove_then`] keeps it locked while the caller reports
//! and exits, so that nothing more is made after the removal.
//!
//! Dropped unfinished (an early return, a panic), the record removes what it holds.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The paths a build made of its output, until the output is complete.
#[derive(Debug, Default)]
pub struct PartialOutput {
    record: Mutex<Record>,
}

#[derive(Debug, Default)]
struct Record {
    /// The output as the user named it, for the messages.
    output: PathBuf,
    /// Every path made, in the order it was made.
    made: Vec<PathBuf>,
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Writing,
    Complete,
    Removed,
}

/// What [`PartialOutput::remove`] found and did.
#[derive(Debug)]
pub enum Removal {
    /// Nothing of the output had been made.
    Nothing,
    /// The output was complete: it is kept.
    Kept { output: PathBuf },
    /// Everything the build had made of the output is gone.
    Removed { output: PathBuf },
    /// Some of it is left: the first path that could not be removed, and why.
    Left {
        output: PathBuf,
        path: PathBuf,
        error: io::Error,
    },
}

impl Removal {
    /// What became of the output, as a clause for a message (`removed the partial
    /// out.tgz`); `None` when nothing had been made.
    pub fn note(&self) -> Option<String> {
        match self {
            Removal::Nothing => None,
            Removal::Kept { output } => Some(format!(
                "{} was complete and is kept",
                output.display()
            )),
            Removal::Removed { output } => {
                Some(format!("removed the partial {}", output.display()))
            }
            Removal::Left {
                output,
                path,
                error,
            } if error.raw_os_error() == Some(libc::ENOTEMPTY) => Some(format!(
                "removed what mkroot made of the partial {}, but {} also holds files it did not make; they are left",
                output.display(),
                path.display()
            )),
            Removal::Left {
                output,
                path,
                error,
            } => Some(format!(
                "could not remove all of the partial {}: {}: {error}; remove it by hand",
                output.display(),
                path.display()
            )),
        }
    }
}

/// Why the writer may not make another path: the output was removed, or is complete.
fn closed() -> io::Error {
    io::Error::other("the build is stopping; nothing more is written")
}

impl PartialOutput {
    /// Starts the record of `output` (named as the user gave it, for the messages). A
    /// record whose last output is complete starts afresh; one that was removed stays
    /// closed.
    pub fn begin(&self, output: &Path) {
        let mut record = self.lock();
        record.output = output.to_path_buf();
        if record.state == State::Complete {
            record.state = State::Writing;
        }
    }

    /// Makes `path` with `make` and records it, if it was made. Nothing is made once the
    /// record was removed or completed.
    pub fn create<T>(
        &self,
        path: &Path,
        make: impl FnOnce(&Path) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut record = self.lock();
        if record.state != State::Writing {
            return Err(closed());
        }
        let made = make(path)?;
        record.made.push(path.to_path_buf());
        Ok(made)
    }

    /// Runs `finish`, the step that makes the output whole (renaming a tarball into
    /// place), and, if it succeeds, ends the record: the output is kept from then on.
    pub fn complete(&self, finish: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut record = self.lock();
        if record.state != State::Writing {
            return Err(closed());
        }
        finish()?;
        record.state = State::Complete;
        record.made.clear();
        Ok(())
    }

    /// Removes what was made of an unfinished output.
    pub fn remove(&self) -> Removal {
        self.remove_then(|removal| removal)
    }

    /// Removes what was made of an unfinished output, then calls `then` with what it
    /// did while the record is still locked: no path is made until `then` returns (and
    /// none after that either).
    pub fn remove_then<R>(&self, then: impl FnOnce(Removal) -> R) -> R {
        let mut record = self.lock();
        let removal = record.remove();
        then(removal)
    }

    /// The record, also after a panic in another holder: it is only a list of paths.
    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PartialOutput {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Record {
    fn remove(&mut self) -> Removal {
        let output = self.output.clone();
        match self.state {
            State::Complete => return Removal::Kept { output },
            State::Removed => return Removal::Nothing,
            State::Writing => self.state = State::Removed,
        }
        if self.made.is_empty() {
            return Removal::Nothing;
        }
        let made = std::mem::take(&mut self.made);
        let ours: HashSet<&Path> = made.iter().map(PathBuf::as_path).collect();
        let mut left = None;
        for path in made.iter().rev() {
            if let Err(error) = remove_made(path, &ours) {
                left.get_or_insert((path.clone(), error));
            }
        }
        match left {
            None => Removal::Removed { output },
            Some((path, error)) => Removal::Left {
                output,
                path,
                error,
            },
        }
    }
}

/// Removes one path the build made (a directory only if it is empty by now). Its
/// directory may already have its final, read-only mode: one the build made is opened
/// up for the removal.
fn remove_made(path: &Path, ours: &HashSet<&Path>) -> io::Result<()> {
    let remove = || match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir(path),
        Ok(_) => fs::remove_file(path),
        // Gone already (someone else removed it): nothing to do.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match remove() {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            match path.parent().filter(|parent| ours.contains(parent)) {
                Some(parent) => {
                    fs::set_permissions(parent, fs::Permissions::from_mode(0o700))?;
                    remove()
                }
                None => Err(e),
            }
        }
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_dir(path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    fn make_file(path: &Path) -> io::Result<()> {
        fs::File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    }

    #[test]
    fn what_was_made_goes_and_what_was_there_stays() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("out");
        let theirs = temp.path().join("theirs");
        fs::write(&theirs, "the user's\n").unwrap();
        let partial = PartialOutput::default();
        partial.begin(&out);
        partial.create(&out, make_dir).unwrap();
        partial.create(&out.join("sub"), make_dir).unwrap();
        partial.create(&out.join("sub/file"), make_file).unwrap();
        // A path that was there is not made, so not recorded.
        assert!(partial.create(&theirs, make_file).is_err());
        fs::set_permissions(out.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
        let removal = partial.remove();
        assert!(matches!(removal, Removal::Removed { .. }), "{removal:?}");
        assert_eq!(
            removal.note().unwrap(),
            format!("removed the partial {}", out.display())
        );
        assert!(!out.exists());
        assert_eq!(fs::read_to_string(&theirs).unwrap(), "the user's\n");
        // Removed once: nothing more is made.
        assert!(partial.create(&out, make_dir).is_err());
        assert!(!out.exists());
    }

    #[test]
    fn a_directory_someone_else_filled_too_is_left_and_said_to_be() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("out");
        let partial = PartialOutput::default();
        partial.begin(&out);
        partial.create(&out, make_dir).unwrap();
        partial.create(&out.join("ours"), make_file).unwrap();
        fs::write(out.join("theirs"), "x").unwrap();
        let removal = partial.remove();
        let note = removal.note().unwrap();
        assert!(note.contains("also holds files it did not make"), "{note}");
        assert!(!out.join("ours").exists());
        assert!(out.join("theirs").exists());
    }

    #[test]
    fn a_complete_output_is_kept_even_when_dropped() {
        let temp = tempfile::tempdir().unwrap();
        let partial_file = temp.path().join("out.tar.partial");
        let out = temp.path().join("out.tar");
        {
            let partial = PartialOutput::default();
            partial.begin(&out);
            partial.create(&partial_file, make_file).unwrap();
            partial
                .complete(|| fs::rename(&partial_file, &out))
                .unwrap();
            assert!(matches!(partial.remove(), Removal::Kept { .. }));
        }
        assert!(out.exists());
        // Dropped unfinished, a record removes what it made.
        {
            let partial = PartialOutput::default();
            partial.create(&partial_file, make_file).unwrap();
        }
        assert!(!partial_file.exists());
        assert!(matches!(
            PartialOutput::default().remove(),
            Removal::Nothing
        ));
    }
}

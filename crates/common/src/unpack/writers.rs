//! Writing small regular files on a few threads: creating inodes is what an unpack spends
//! its time on, and the kernel does it in parallel for different files.
//!
//! The reading side stays in archive order. It hands a file here only with its parent
//! directory already open, and keeps the set of names ("keys": parent inode + name) still
//! in flight; before it does anything else to a name in flight, or beneath the path of a
//! file in flight ([`WriterPool::holds_file_at_or_above`]), it waits for the pool to drain
//! ([`WriterPool::settle`]), so a later entry still wins over an earlier one and sees what
//! it left. A writer
//! finding an earlier entry's file or symlink in its way replaces it; finding a directory,
//! it hands the job back, and the reading side replaces the tree itself.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use super::root_dir;

/// Where a name lives: the (device, inode) of its directory, and the name.
pub type Key = (u64, u64, Vec<u8>);

/// One regular file, its data read into memory.
pub struct FileJob {
    /// Position in the archive, to report the earliest failure.
    pub seq: u64,
    pub dir: Arc<OwnedFd>,
    pub dir_id: (u64, u64),
    pub name: CString,
    pub data: Vec<u8>,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
    pub mtime: (i64, u32),
    /// The entry's name in the archive, for messages.
    pub entry: Vec<u8>,
}

impl FileJob {
    pub fn key(&self) -> Key {
        (self.dir_id.0, self.dir_id.1, self.name.as_bytes().to_vec())
    }
}

enum Outcome {
    Done(Key),
    /// A directory stands at the name: the reading side must replace it.
    Bounced(FileJob),
    Failed(Key, u64, Vec<u8>, io::Error),
}

/// What a drained pool leaves to the reading side.
#[derive(Default)]
pub struct Settled {
    /// Jobs to redo in archive order, after replacing the directory in their way.
    pub bounced: Vec<FileJob>,
    /// The earliest failure: (entry name, error).
    pub failure: Option<(Vec<u8>, io::Error)>,
}

pub struct WriterPool {
    jobs: Option<SyncSender<FileJob>>,
    outcomes: Receiver<Outcome>,
    /// The jobs handed over and not yet reported: their keys, and their cleaned paths.
    in_flight: HashMap<Key, Vec<u8>>,
    /// The cleaned paths of the jobs handed back, until the pool settles.
    bounced_paths: Vec<Vec<u8>>,
    settled: Settled,
    failure_seq: u64,
}

impl WriterPool {
    /// Starts `workers` writer threads in `scope`; they end when the pool is dropped.
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        workers: usize,
    ) -> WriterPool {
        let (job_tx, job_rx) = mpsc::sync_channel::<FileJob>(workers * 8);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (outcome_tx, outcome_rx) = mpsc::channel();
        for _ in 0..workers {
            let (jobs, outcomes) = (job_rx.clone(), outcome_tx.clone());
            scope.spawn(move || loop {
                let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(job) => job,
                    Err(_) => return,
                };
                if outcomes.send(write(job)).is_err() {
                    return;
                }
            });
        }
        WriterPool {
            jobs: Some(job_tx),
            outcomes: outcome_rx,
            in_flight: HashMap::new(),
            bounced_paths: Vec::new(),
            settled: Settled::default(),
            failure_seq: u64::MAX,
        }
    }

    /// Whether `key` is still being written, or handed-back work or a failure waits to be
    /// dealt with (which must happen before the reading side goes on).
    pub fn is_in_flight(&self, key: &Key) -> bool {
        !self.settled.bounced.is_empty()
            || self.settled.failure.is_some()
            || (!self.in_flight.is_empty() && self.in_flight.contains_key(key))
    }

    /// Whether a file still with the writers (or handed back by them) stands at the
    /// cleaned path `dir` or above it: an entry under `dir` must wait, as that file may
    /// yet replace a directory the entry would be written into.
    pub fn holds_file_at_or_above(&mut self, dir: &[&[u8]]) -> bool {
        self.collect_finished();
        if self.in_flight.is_empty() && self.bounced_paths.is_empty() {
            return false;
        }
        let dir = dir.join(&b'/');
        let at_or_above = |file: &&Vec<u8>| {
            dir.strip_prefix(file.as_slice())
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
        };
        self.in_flight.values().any(|path| at_or_above(&path))
            || self.bounced_paths.iter().any(|path| at_or_above(&path))
    }

    /// Hands a file to the writers (waiting first if its name is still in flight); `path`
    /// is its entry's cleaned path.
    pub fn dispatch(&mut self, job: FileJob, path: Vec<u8>) {
        let key = job.key();
        if self.is_in_flight(&key) {
            self.drain();
        }
        self.collect_finished();
        self.in_flight.insert(key, path);
        if let Some(jobs) = &self.jobs {
            if let Err(mpsc::SendError(job)) = jobs.send(job) {
                // The writers are gone (they only stop when the pool is dropped).
                self.record(Outcome::Failed(
                    job.key(),
                    job.seq,
                    job.entry,
                    io::Error::other("file writer threads stopped"),
                ));
            }
        }
    }

    /// Waits until every file handed over is written, and returns what is left to do.
    pub fn settle(&mut self) -> Settled {
        self.drain();
        self.failure_seq = u64::MAX;
        self.bounced_paths.clear();
        let mut settled = std::mem::take(&mut self.settled);
        settled.bounced.sort_by_key(|job| job.seq);
        settled
    }

    fn drain(&mut self) {
        while !self.in_flight.is_empty() {
            match self.outcomes.recv() {
                Ok(outcome) => self.record(outcome),
                Err(_) => break,
            }
        }
    }

    fn collect_finished(&mut self) {
        while let Ok(outcome) = self.outcomes.try_recv() {
            self.record(outcome);
        }
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Done(key) => {
                self.in_flight.remove(&key);
            }
            Outcome::Bounced(job) => {
                self.bounced_paths.extend(self.in_flight.remove(&job.key()));
                self.settled.bounced.push(job);
            }
            Outcome::Failed(key, seq, entry, err) => {
                self.in_flight.remove(&key);
                if seq < self.failure_seq {
                    self.failure_seq = seq;
                    self.settled.failure = Some((entry, err));
                }
            }
        }
    }
}

impl Drop for WriterPool {
    fn drop(&mut self) {
        // Closing the job channel ends the writers once they finish what they hold.
        self.jobs = None;
    }
}

fn write(job: FileJob) -> Outcome {
    match write_file(&job) {
        Ok(true) => Outcome::Done(job.key()),
        Ok(false) => Outcome::Bounced(job),
        Err(err) => Outcome::Failed(job.key(), job.seq, job.entry.clone(), err),
    }
}

/// Creates and fills the file; `Ok(false)` if a directory is in the way.
fn write_file(job: &FileJob) -> io::Result<bool> {
    let dir = job.dir.as_fd();
    let mut file = match root_dir::create_file(dir, &job.name) {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {
            let existing = root_dir::stat_at(dir, &job.name)?;
            if root_dir::is_dir(&existing) {
                return Ok(false);
            }
            // An earlier entry's file or symlink: replace it, never write through it.
            rustix::fs::unlinkat(dir, &*job.name, rustix::fs::AtFlags::empty())?;
            root_dir::create_file(dir, &job.name)?
        }
        Err(err) => return Err(err),
    };
    file.write_all(&job.data)?;
    finish_file(&file, job.owner, job.mode, job.mtime)?;
    Ok(true)
}

/// Owner, then mode (fchown clears setuid bits), then mtime of a written file.
pub fn finish_file(
    file: &std::fs::File,
    owner: Option<(u32, u32)>,
    mode: u32,
    mtime: (i64, u32),
) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        );
        rustix::fs::fchown(file, Some(uid), Some(gid))?;
    }
    rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(mode))?;
    root_dir::set_mtime_fd(file.as_fd(), mtime.0, mtime.1)
}

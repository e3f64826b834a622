//! The line a large first unpack draws on the user's terminal.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use mkroot_common::size::mebibytes;

/// A line on the user's terminal while a large image unpacks (a first launch of a large
/// image is long enough to look hung without it): how much of the file is read, redrawn
/// at most ten times a second, and what it came to at the end. Only on a terminal, and only for
/// images of [`Progress::MIN_BYTES`] or more. Written by hand rather than with
/// indicatif: `launch` is a static PIE whose every start relocates all its tables, and
/// a cached launch must not pay for a progress bar it never draws.
pub(super) struct Progress {
    name: String,
    total: u64,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    const MIN_BYTES: u64 = 8 << 20;

    /// `None` unless stderr is a terminal and the image is large.
    pub fn for_image(image: &Path, file: &File) -> Option<Progress> {
        // SAFETY: isatty cannot fail.
        let terminal = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        (terminal && total >= Self::MIN_BYTES).then(|| Progress {
            name: image.file_name().map_or_else(
                || image.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
        })
    }

    /// Counts `n` more bytes read, and redraws the line if it is due.
    pub fn advance(&mut self, n: usize) {
        self.done += n as u64;
        let due = self
            .drawn
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(100));
        if due {
            self.drawn = Some(Instant::now());
            eprint!(
                "\rlaunch: unpacking {}: {:.0} of {:.0} MiB ({}%)\x1b[K",
                self.name,
                mebibytes(self.done),
                mebibytes(self.total),
                self.done * 100 / self.total.max(1)
            );
        }
    }

    /// Replaces the line with what the unpack came to.
    pub fn finish(&self) {
        eprintln!(
            "\rlaunch: unpacked {}: {:.0} MiB in {:.1} s\x1b[K",
            self.name,
            mebibytes(self.total),
            self.started.elapsed().as_secs_f64()
        );
    }
}

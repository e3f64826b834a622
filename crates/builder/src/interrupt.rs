//! Ctrl-C, `kill` and a closed terminal while mkroot runs: the run stops, what it made of
//! its output is removed, and one line says so; the exit status is 128 + the signal's
//! number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP), as a shell shows it.
//!
//! The signals are blocked in every thread and taken by one thread that waits for them
//! (sigwait), not by a handler: the removal is ordinary code, run with the lock of the
//! output's [`PartialOutput`] held until the process exits, so the writer cannot make
//! another file once the removal has started. A signal that mkroot's parent set to be
//! ignored (a background job of a script ignores SIGINT, `nohup` SIGHUP) stays ignored.

use mkroot_common::partial::{PartialOutput, Removal};
use nix::sys::signal::{SigSet, Signal};
use std::io;
use std::sync::Arc;

/// The signals that stop a run.
const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// A signal that ended the run, and what became of the output.
#[derive(Debug)]
pub struct Interruption {
    pub signal: Signal,
    pub removal: Removal,
}

impl Interruption {
    /// 128 + the signal's number.
    pub fn exit_code(&self) -> u8 {
        128 + self.signal as u8
    }
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.signal {
            Signal::SIGINT => "interrupted",
            Signal::SIGTERM => "terminated",
            Signal::SIGHUP => "hung up",
            other => other.as_str(),
        };
        match self.removal.note() {
            Some(note) => write!(f, "{what}; {note}"),
            None => f.write_str(what),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch for Ctrl-C and kill: {0}; please report it")]
pub struct WatchError(#[from] io::Error);

/// Watches for SIGINT, SIGTERM and SIGHUP from now on: on one, what `output` records is
/// removed and `stop` is called with what happened, the record still locked; it reports
/// and exits the process.
///
/// Call it before any other thread starts: the signals are blocked in the calling thread,
/// which threads started later inherit; one started before would take a signal and die
/// of it, output left behind. A program mkroot ran would inherit the block too (it runs
/// none).
pub fn watch(output: &Arc<PartialOutput>, stop: fn(Interruption) -> !) -> Result<(), WatchError> {
    let mut signals = SigSet::empty();
    for signal in STOPPING {
        if !is_ignored(signal)? {
            signals.add(signal);
        }
    }
    if signals.iter().next().is_none() {
        return Ok(());
    }
    signals.thread_block().map_err(io::Error::from)?;
    let output = Arc::clone(output);
    std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            // sigwait fails only for a set it cannot wait on, which this is not.
            let Ok(signal) = signals.wait() else {
                return;
            };
            output.remove_then(|removal| stop(Interruption { signal, removal }))
        })?;
    Ok(())
}

/// Whether `signal` is set to be ignored (inherited from the parent).
fn is_ignored(signal: Signal) -> io::Result<bool> {
    // SAFETY: a zeroed sigaction is a valid out-parameter, and a null new action only
    // reads the current one into it.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sigaction(signal as libc::c_int, std::ptr::null(), &mut current) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(current.sa_sigaction == libc::SIG_IGN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_stopped_the_run_and_what_became_of_the_output() {
        let removed = Interruption {
            signal: Signal::SIGINT,
            removal: Removal::Removed {
                output: "out.tgz".into(),
            },
        };
        assert_eq!(
            removed.to_string(),
            "interrupted; removed the partial out.tgz"
        );
        assert_eq!(removed.exit_code(), 130);
        let nothing = Interruption {
            signal: Signal::SIGTERM,
            removal: Removal::Nothing,
        };
        assert_eq!(nothing.to_string(), "terminated");
        assert_eq!(nothing.exit_code(), 143);
    }
}

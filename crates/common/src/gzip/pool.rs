//! Work done on a few threads and taken back in the order it was given: members are
//! compressed or inflated in parallel but must come out of the stream in sequence.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

struct Job<J, R> {
    input: J,
    reply: mpsc::Sender<R>,
}

/// Threads that each keep a state `S` (a compressor, say) and turn jobs `J` into results
/// `R`; results are taken back oldest first.
pub(super) struct InOrder<J, R> {
    /// `None` once the workers were told to stop.
    jobs: Option<mpsc::Sender<Job<J, R>>>,
    pending: VecDeque<mpsc::Receiver<R>>,
    workers: Vec<JoinHandle<()>>,
    max_pending: usize,
}

impl<J: Send + 'static, R: Send + 'static> InOrder<J, R> {
    /// `threads` workers, each with a state from `new_state`, running `work` on each job.
    /// Two jobs per worker may be in flight: workers never wait for the caller, and the
    /// memory held stays bounded.
    pub(super) fn new<S: 'static>(
        threads: usize,
        new_state: fn() -> S,
        work: fn(&mut S, J) -> R,
    ) -> InOrder<J, R> {
        let threads = threads.max(1);
        let (sender, receiver) = mpsc::channel::<Job<J, R>>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads)
            .map(|_| {
                let receiver = Arc::clone(&receiver);
                std::thread::spawn(move || {
                    let mut state = new_state();
                    while let Some(job) = next_job(&receiver) {
                        // The caller may have given up (an error on its side); fine.
                        let _ = job.reply.send(work(&mut state, job.input));
                    }
                })
            })
            .collect();
        InOrder {
            jobs: Some(sender),
            pending: VecDeque::new(),
            workers,
            max_pending: 2 * threads,
        }
    }

    /// Whether as many jobs are in flight as allowed: take one back before giving more.
    pub(super) fn is_full(&self) -> bool {
        self.pending.len() >= self.max_pending
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(super) fn submit(&mut self, input: J) -> io::Result<()> {
        let (reply, receiver) = mpsc::channel();
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the worker threads were stopped"))?;
        jobs.send(Job { input, reply })
            .map_err(|_| io::Error::other("the worker threads stopped"))?;
        self.pending.push_back(receiver);
        Ok(())
    }

    /// The oldest job's result, waiting for it; `None` when nothing is in flight.
    pub(super) fn take_oldest(&mut self) -> Option<io::Result<R>> {
        let receiver = self.pending.pop_front()?;
        Some(
            receiver
                .recv()
                .map_err(|_| io::Error::other("a worker thread died")),
        )
    }
}

impl<J, R> InOrder<J, R> {
    /// Lets the workers finish their jobs and waits for them to end.
    pub(super) fn stop(&mut self) {
        self.jobs = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

impl<J, R> Drop for InOrder<J, R> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn next_job<J, R>(jobs: &Mutex<mpsc::Receiver<Job<J, R>>>) -> Option<Job<J, R>> {
    jobs.lock().ok()?.recv().ok()
}

/// Workers for a pool: one per available core, at most `limit`.
pub(super) fn thread_count(limit: usize) -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, limit)
}

//! Traces one probe and prints what it used, for the benchmark and for trying the
//! tracer by hand before `--trace` exists:
//! `cargo run --release -p mkroot-builder --example trace_probe -- 'python3 -c "import json"'`.
//! `-l` lists the record's paths; the exit status is the probe's (1 for a sandbox error).

use mkroot_builder::trace::{trace, Probe, TraceError};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let list = args.first().is_some_and(|a| a == "-l");
    if list {
        args.remove(0);
    }
    let Some(command) = args.first() else {
        eprintln!("usage: trace_probe [-l] COMMAND");
        std::process::exit(2);
    };
    let record = match trace(&Probe::new(command.as_str())) {
        Ok(record) => record,
        Err(TraceError::ProbeFailed { record, status, .. }) => {
            eprintln!("trace_probe: the probe exited with status {status}");
            *record
        }
        Err(e) => {
            eprintln!("trace_probe: {e}");
            std::process::exit(1);
        }
    };
    if list {
        for file in &record.files {
            println!("file    {}", file.display());
        }
        for (link, target) in &record.symlinks {
            println!("symlink {} -> {}", link.display(), target.display());
        }
        for dir in &record.dirs {
            println!("dir     {}", dir.display());
        }
    }
    eprintln!(
        "{} files, {} symlinks, {} dirs",
        record.files.len(),
        record.symlinks.len(),
        record.dirs.len()
    );
    std::process::exit(record.exit_status);
}

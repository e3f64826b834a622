//! `mkroot`: parses the command line and reports errors in one line; the work is in
//! the library.

use clap::{CommandFactory, Parser, Subcommand};
use mkroot_builder::interrupt::{self, Interruption};
use mkroot_builder::invocation::{
    Action, Invocation, InvocationError, Outcome, PlannedImage, SpecSource,
};
use mkroot_builder::request::{ImageFlags, OutputFormat};
use mkroot_builder::trace::TraceNet;
use mkroot_common::partial::PartialOutput;
use mkroot_common::usage::{report_usage_error, single_line};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const EXAMPLES: &str = "\
Examples:
  mkroot --bins bash,ls,cat -o shell.tgz
      a shell with two tools, as a gzip'd root filesystem (run it: launch shell.tgz)
  mkroot --bins python3 --add /usr/lib/python3.11 --cmd python3 -o py.tgz
      a program with the tree it reads at run time
  mkroot --bins nginx --format oci --tag web:1 --env LANG=C.UTF-8 -o web.oci.tar
      an OCI image: skopeo, podman load and docker load take it
  mkroot --bins python3 --trace 'python3 -c \"import json, sqlite3\"' -o py.tgz
      watch a probe run once on the host (sandboxed) and add the files it used
  mkroot --bins curl --dry-run --explain
      what would go in, and why
  mkroot -f image.toml
      build from a recipe (see fixtures/recipes/ for examples)
  mkroot -f image.toml --check image.tgz
      exit 0 if the image still matches the recipe, else 1 and the changed files

Recipe keys (TOML): programs, [[files]] host/image, users, cmd, entrypoint, env (a
table), workdir, user (runs as), tag, [output] path/format, [extras] nss/terminfo/
libgcc/gconv/ca_certs, sysroot, allow_missing, trace (probes), [tracing] timeout/net/exclude/
allow_fail. Relative paths, and the probes' working directory, are the recipe's
directory's.

SOURCE_DATE_EPOCH sets every timestamp (default 0): the same inputs give the same bytes.

Shell completions and the man page: mkroot completions bash|zsh|fish, mkroot man";

/// Build a minimal, byte-reproducible root filesystem image from host programs.
#[derive(Parser, Debug)]
#[command(
    name = "mkroot",
    version,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    docs: Option<Docs>,
    /// Programs: names looked up in PATH, or paths. ELF files or scripts.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "recipe",
        value_name = "A,B,..."
    )]
    bins: Vec<String>,
    /// Build from a recipe file (TOML); flags that describe the image conflict with it.
    #[arg(short = 'f', long = "file", value_name = "RECIPE", conflicts_with_all = [
        "bins", "adds", "cmd", "sysroot", "allow_missing", "users", "no_nss", "no_terminfo",
        "no_libgcc", "gconv", "no_gconv", "no_ca_certs", "env", "workdir", "entrypoint", "run_as",
        "traces", "trace_timeout", "trace_net", "trace_exclude", "trace_allow_fail"
    ])]
    recipe: Option<PathBuf>,
    /// With -f: check IMAGE against the recipe; exit 0 if it matches, 1 if it differs.
    #[arg(long, value_name = "IMAGE", requires = "recipe", conflicts_with_all = ["output", "dry_run", "explain"])]
    check: Option<PathBuf>,
    /// Output format [default: oci for `*.oci.tar`, else rootfs].
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// Name an OCI image: NAME:TAG, or NAME for NAME:latest.
    #[arg(long, value_name = "NAME:TAG")]
    tag: Option<String>,
    /// Set an environment variable for the image's command (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The working directory of the image's command (OCI config).
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
    /// Fixed start of the image's command (OCI Entrypoint; --cmd becomes its arguments).
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,
    /// The user the image's command runs as (OCI config): NAME, UID or UID:GID.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Extra file or tree, at its host path or at IMAGE; ELF files in it are resolved.
    #[arg(long = "add", value_name = "HOST[:IMAGE]")]
    adds: Vec<String>,
    /// The image's default command [default: the first program; a shell as `-l`].
    #[arg(long)]
    cmd: Option<String>,
    /// Output: `x.tgz`/`x.tar.gz`, `x.tar`, or `DIR/`.
    #[arg(short, long, value_name = "OUTPUT")]
    output: Option<PathBuf>,
    /// Print the plan instead of writing an image.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: the plan as JSON.
    #[arg(long, requires = "dry_run")]
    json: bool,
    /// Show the plan as a tree: what each program loads, what each file is there for.
    #[arg(long)]
    explain: bool,
    /// No summary line and no progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Resolve against this root (its loader cache and directories), not `/`.
    #[arg(long, value_name = "DIR")]
    sysroot: Option<PathBuf>,
    /// Go on when a library is not found (it is left out of the image).
    #[arg(long)]
    allow_missing: bool,
    /// Add this user to /etc/passwd (repeatable).
    #[arg(long = "user", value_name = "NAME")]
    users: Vec<String>,
    /// No NSS configuration, modules, users or hosts.
    #[arg(long)]
    no_nss: bool,
    /// No terminfo entries.
    #[arg(long)]
    no_terminfo: bool,
    /// No libgcc_s.so.1 for threaded programs.
    #[arg(long)]
    no_libgcc: bool,
    /// Every gconv module, not only those detected.
    #[arg(long, conflicts_with = "no_gconv")]
    gconv: bool,
    /// No gconv modules.
    #[arg(long)]
    no_gconv: bool,
    /// No CA certificates or OpenSSL configuration for programs that link TLS.
    #[arg(long)]
    no_ca_certs: bool,
    /// Run CMD once on the host in a sandbox (`/bin/sh -c CMD`, the host read-only,
    /// no network) and add every file it and its children used (repeatable).
    #[arg(long = "trace", value_name = "CMD")]
    traces: Vec<String>,
    /// Kill a probe after this long: seconds, `90s` or `2m` [default: 120].
    #[arg(long, value_name = "TIME")]
    trace_timeout: Option<String>,
    /// The network a probe sees: none (only loopback) or the host's.
    #[arg(long, value_enum, value_name = "NET", default_value = "none")]
    trace_net: TraceNet,
    /// Leave out host paths that match GLOB (`*` within a name, `**` across; repeatable).
    #[arg(long, value_name = "GLOB")]
    trace_exclude: Vec<String>,
    /// Keep going when a probe exits non-zero: add what it used, with a warning.
    #[arg(long)]
    trace_allow_fail: bool,
}

/// Documentation generated from this command line, for packagers.
#[derive(Subcommand, Debug)]
enum Docs {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

/// Why a run failed; main prints it as one line.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Run(#[from] InvocationError),
    #[error(transparent)]
    Watch(#[from] interrupt::WatchError),
    #[error("stdout: cannot write the report: {0}; check where stdout goes")]
    Stdout(std::io::Error),
    #[error("cannot render the man page: {0}")]
    ManPage(std::io::Error),
    #[error("internal error ({0}); please report it with the command line")]
    Internal(String),
}

/// Writes a report to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Stdout(e)),
    }
}

/// What the command line asks of the library.
fn invocation(args: Args) -> Invocation {
    let action = match (args.check, args.dry_run) {
        (Some(image), _) => Action::Check(image),
        (None, true) => Action::DryRun { json: args.json },
        (None, false) => Action::Write,
    };
    let source = match args.recipe {
        Some(path) => SpecSource::Recipe(path),
        None => SpecSource::Flags(Box::new(ImageFlags {
            bins: args.bins,
            adds: args.adds,
            cmd: args.cmd,
            entrypoint: args.entrypoint,
            env: args.env,
            workdir: args.workdir,
            run_as: args.run_as,
            users: args.users,
            sysroot: args.sysroot,
            allow_missing: args.allow_missing,
            no_nss: args.no_nss,
            no_terminfo: args.no_terminfo,
            no_libgcc: args.no_libgcc,
            gconv: args.gconv,
            no_gconv: args.no_gconv,
            no_ca_certs: args.no_ca_certs,
            traces: args.traces,
            trace_timeout: args.trace_timeout,
            trace_net: args.trace_net,
            trace_exclude: args.trace_exclude,
            trace_allow_fail: args.trace_allow_fail,
        })),
    };
    Invocation {
        source,
        output: args.output,
        format: args.format,
        tag: args.tag,
        action,
        explain: args.explain,
        quiet: args.quiet,
    }
}

fn run(args: Args, made: &PartialOutput) -> Result<ExitCode, Failure> {
    let quiet = args.quiet;
    let invocation = invocation(args);
    let image = invocation.plan()?;
    if !quiet {
        warn_left_out(&image);
        warn_off_path(&image);
        warn_outside_sysroot(&image);
        warn_failed_probes(&image);
        warn_stdlib_missing(&image);
    }
    if let Some(tree) = invocation.explanation(&image) {
        print_stdout(&tree)?;
    }
    let outcome = invocation.finish(&image, made)?;
    report(&outcome, quiet)?;
    Ok(match outcome {
        // --check: 1 says the image differs from its recipe.
        Outcome::Checked { differences, .. } if !differences.is_empty() => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// Warns about the libraries `--allow-missing` left out, before anything is written.
fn warn_left_out(image: &PlannedImage) {
    for missing in image.missing() {
        eprintln!(
            "mkroot: warning: {}: needs {}, not found; left out (--allow-missing)",
            missing.needed_by.display(),
            missing.name
        );
    }
}

/// Warns about interpreters whose standard library is not in the image: they would
/// die at start.
fn warn_stdlib_missing(image: &PlannedImage) {
    for missing in image.stdlib_missing() {
        let program = missing.program.display();
        let whole = (missing.tree.as_ref()).map_or(String::new(), |tree| {
            format!(", or all of it with --add {}", tree.display())
        });
        eprintln!(
            "mkroot: warning: {program} has no standard library in the image, so it will fail to start or to load modules; add what it uses with --trace '{program} ...' (the command you will run){whole}"
        );
    }
}

/// Warns about the probes that failed and were kept anyway: what they used went in,
/// but a probe that stopped early may have used less than the program needs.
fn warn_failed_probes(image: &PlannedImage) {
    for failed in image.failed_probes() {
        let words = (failed.last_words.as_ref()).map_or(String::new(), |w| format!(" ({w})"));
        eprintln!(
            "mkroot: warning: the probe `{}` exited with status {}{words}; what it used before that went in (--trace-allow-fail)",
            failed.command, failed.status
        );
    }
}

/// Warns about host files a recipe with a sysroot adds from outside it: they come from
/// this host, not from the root the recipe builds from.
fn warn_outside_sysroot(image: &PlannedImage) {
    for host in image.outside_sysroot() {
        eprintln!(
            "mkroot: warning: the recipe adds {}, a host file outside its sysroot; it goes in as this host has it",
            host.display()
        );
    }
}

/// Warns about programs found by name in a directory the image's PATH lacks (a pyenv
/// shim, ~/.cargo/bin): the name alone will not run them inside.
fn warn_off_path(image: &PlannedImage) {
    for program in image.off_path() {
        let dir = program.found.parent().unwrap_or(std::path::Path::new("/"));
        eprintln!(
            "mkroot: warning: {} was found in {}, which the image's PATH ({}) lacks; inside, run it as {}, or name the program you mean by its path",
            program.name,
            dir.display(),
            mkroot_builder::programs::DEFAULT_PATH,
            program.found.display(),
        );
    }
}

/// Prints what came of the run: the check's differences, the plan, or the summary line.
fn report(outcome: &Outcome, quiet: bool) -> Result<(), Failure> {
    match outcome {
        Outcome::Checked { image, differences } => {
            let mut text: String = differences.iter().map(|d| format!("{d}\n")).collect();
            if differences.is_empty() && !quiet {
                text = format!("{}: matches its recipe\n", image.display());
            }
            print_stdout(&text)
        }
        Outcome::Planned { report } => print_stdout(report.as_deref().unwrap_or_default()),
        Outcome::Written(written) if !quiet => {
            let digest = written
                .manifest_digest
                .as_ref()
                .map_or(String::new(), |d| format!(", manifest {d}"));
            eprintln!(
                "mkroot: wrote {}: {} entries, {} bytes of files, {} programs{digest}",
                written.path.display(),
                written.entries,
                written.content_bytes,
                written.programs
            );
            Ok(())
        }
        Outcome::Written(_) => Ok(()),
    }
}

/// Prints completions or the man page, generated from the clap definitions.
fn print_docs(docs: Docs) -> Result<ExitCode, Failure> {
    let mut out = Vec::new();
    match docs {
        Docs::Completions { shell } => {
            clap_complete::generate(shell, &mut Args::command(), "mkroot", &mut out)
        }
        Docs::Man => clap_mangen::Man::new(Args::command())
            .render(&mut out)
            .map_err(Failure::ManPage)?,
    }
    print_stdout(&String::from_utf8_lossy(&out))?;
    Ok(ExitCode::SUCCESS)
}

/// Ends the run after a signal, in one line, with the status a shell shows for it.
fn report_interruption(interruption: Interruption) -> ! {
    // On a terminal, over the echoed `^C` and the progress bar rather than after them.
    let clear = if std::io::stderr().is_terminal() {
        "\r\x1b[K"
    } else {
        ""
    };
    eprintln!("{clear}mkroot: {interruption}");
    std::process::exit(interruption.exit_code().into())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // Help and version go to stdout as clap renders them.
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => return ExitCode::from(report_usage_error(&error.to_string(), "mkroot", 2)),
    };
    // A bug must still end in one line, not a backtrace: the default panic message is
    // silenced and the panic reported below.
    std::panic::set_hook(Box::new(|_| {}));
    let checking = args.check.is_some();
    // What the run makes of its output: removed if it fails (below) or a signal ends it
    // (watched from here on, before any other thread starts).
    let made = Arc::new(PartialOutput::default());
    let outcome = std::panic::catch_unwind(|| {
        interrupt::watch(&made, report_interruption)?;
        match args.docs {
            Some(docs) => print_docs(docs),
            None => run(args, &made),
        }
    })
    .unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_string());
        Err(Failure::Internal(what))
    });
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            // One line, whatever the error carried, and what became of the output.
            let removal = made.remove().note();
            let removal = removal.map_or(String::new(), |note| format!("; {note}"));
            eprintln!("mkroot: {}{removal}", single_line(&failure.to_string()));
            // With --check, 1 means "differs": a failure to check is told apart.
            ExitCode::from(if checking { 2 } else { 1 })
        }
    }
}

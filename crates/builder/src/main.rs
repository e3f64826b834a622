//! `mkroot`: parses the command line and reports errors in one line; the work is in
//! the library.

use clap::Parser;
use mkroot_builder::extras::{Extras, GconvChoice};
use mkroot_builder::plan::{split_command, AddSpec, Plan, PlanRequest};
use mkroot_builder::{image, programs, report};
use mkroot_common::archive::OutputTarget;
use std::path::PathBuf;
use std::process::ExitCode;

/// Build a minimal, byte-reproducible root filesystem image from host programs.
#[derive(Parser, Debug)]
#[command(name = "mkroot", version)]
struct Args {
    /// Programs: names looked up in PATH, or paths. ELF files or scripts.
    #[arg(long, value_delimiter = ',', required = true, value_name = "A,B,...")]
    bins: Vec<String>,
    /// Extra file or tree, at its host path or at IMAGE; ELF files in it are resolved.
    #[arg(long = "add", value_name = "HOST[:IMAGE]")]
    adds: Vec<String>,
    /// The image's default command [default: the first program; a shell as `-l`].
    #[arg(long)]
    cmd: Option<String>,
    /// Output: `x.tgz`/`x.tar.gz`, `x.tar`, or `DIR/`.
    #[arg(short, long, value_name = "OUTPUT", required_unless_present_any = ["dry_run", "explain"])]
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
}

/// Turns clap's error into one line: its first paragraph (the problem; the tips and
/// usage after it are dropped), without its `error: `.
fn usage_error(error: &clap::Error) -> String {
    let text = error.to_string();
    let paragraph: Vec<&str> = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = paragraph.join(" ");
    let problem = joined.strip_prefix("error: ").unwrap_or(&joined);
    format!("{problem}; see mkroot --help")
}

/// Writes a report to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!(
            "stdout: cannot write the report: {e}; check where stdout goes"
        )),
    }
}

fn run(args: Args) -> Result<(), String> {
    for user in &args.users {
        if user.is_empty() || user.contains([':', '\n', '/']) {
            return Err(format!(
                "--user {user:?}: not a user name; use letters, digits, `-` and `_`"
            ));
        }
    }
    for add in &args.adds {
        if add.is_empty() || add.starts_with(':') {
            return Err(format!(
                "--add {add:?}: no host path; write --add HOST or --add HOST:IMAGE"
            ));
        }
    }
    let target = match (&args.output, args.dry_run || args.explain) {
        (Some(path), _) => Some(OutputTarget::from_path(path).ok_or_else(|| {
            format!(
                "{}: unknown output kind; end it in .tgz, .tar.gz, .tar, or / for a directory",
                path.display()
            )
        })?),
        (None, _) => None,
    };
    let cmd = match &args.cmd {
        Some(text) => Some(split_command(text).map_err(|e| e.to_string())?),
        None => None,
    };
    let request = PlanRequest {
        root: args.sysroot.clone().unwrap_or_else(|| PathBuf::from("/")),
        bins: args
            .bins
            .iter()
            .filter(|b| !b.is_empty())
            .cloned()
            .collect(),
        adds: args.adds.iter().map(|a| AddSpec::parse(a)).collect(),
        cmd,
        allow_missing: args.allow_missing,
        extras: Extras {
            nss: !args.no_nss,
            libgcc: !args.no_libgcc,
            terminfo: !args.no_terminfo,
            gconv: match (args.gconv, args.no_gconv) {
                (true, _) => GconvChoice::All,
                (_, true) => GconvChoice::Off,
                _ => GconvChoice::Detect,
            },
            users: args.users.clone(),
        },
        search_path: match (&args.sysroot, std::env::var("PATH")) {
            (None, Ok(path)) => path,
            _ => programs::DEFAULT_PATH.to_string(),
        },
    };
    let plan = Plan::build(&request).map_err(|e| e.to_string())?;
    if !args.quiet {
        for missing in &plan.missing {
            eprintln!(
                "mkroot: warning: {}: needs {}, not found; left out (--allow-missing)",
                missing.needed_by.display(),
                missing.name
            );
        }
    }
    if args.explain {
        print_stdout(&report::explain(&plan))?;
    }
    if args.dry_run {
        if args.json {
            print_stdout(&report::json(&plan))?;
        } else if !args.explain {
            print_stdout(&report::explain(&plan))?;
        }
        return Ok(());
    }
    let Some(target) = target else {
        return Ok(());
    };
    let summary = image::write(&plan, &target, args.quiet).map_err(|e| e.to_string())?;
    if !args.quiet {
        let path = match &target {
            OutputTarget::Tar(p) | OutputTarget::TarGz(p) | OutputTarget::Directory(p) => p,
        };
        eprintln!(
            "mkroot: wrote {}: {} entries, {} bytes of files, {} programs",
            path.display(),
            summary.entries,
            summary.content_bytes,
            plan.programs.len()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("mkroot: {}", usage_error(&error));
            return ExitCode::from(2);
        }
    };
    // A bug must still end in one line, not a backtrace: the default panic message is
    // silenced and the panic reported below.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| run(args)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_string());
        Err(format!(
            "internal error ({what}); please report it with the command line"
        ))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // One line, whatever the error carried.
            eprintln!("mkroot: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

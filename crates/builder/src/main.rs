//! `mkroot`: parses the command line and reports errors in one line; the work is in
//! the library.

use clap::{CommandFactory, Parser, Subcommand};
use mkroot_builder::build::{self, BuildSpec, Output, OutputFormat, RunConfig};
use mkroot_builder::extras::{Extras, GconvChoice};
use mkroot_builder::plan::{split_command, AddSpec, Plan, PlanRequest};
use mkroot_builder::recipe::Recipe;
use mkroot_builder::{check, image, programs, report};
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  mkroot --bins bash,ls,cat -o shell.tgz
      a shell with two tools, as a gzip'd root filesystem (run it: launch shell.tgz)
  mkroot --bins python3 --add /usr/lib/python3.11 --cmd python3 -o py.tgz
      a program with the tree it reads at run time
  mkroot --bins nginx --format oci --tag web:1 --env LANG=C.UTF-8 -o web.oci.tar
      an OCI image: skopeo, podman load and docker load take it
  mkroot --bins curl --dry-run --explain
      what would go in, and why
  mkroot -f image.toml
      build from a recipe (see fixtures/recipes/ for examples)
  mkroot -f image.toml --check image.tgz
      exit 0 if the image still matches the recipe, else 1 and the changed files

Recipe keys (TOML): programs, [[files]] host/image, users, cmd, entrypoint, env (a
table), workdir, user (runs as), tag, [output] path/format, [extras] nss/terminfo/
libgcc/gconv, sysroot, allow_missing. Relative paths are the recipe's directory's.

SOURCE_DATE_EPOCH sets every timestamp (default 0): the same inputs give the same bytes.";

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
        "no_libgcc", "gconv", "no_gconv", "env", "workdir", "entrypoint", "run_as"
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

/// Turns clap's error into one line: its first paragraph (the problem; the tips and
/// usage after it are dropped), without its `error: `.
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

/// What the run ended in, for the exit status.
enum Outcome {
    Done,
    /// `--check` found differences.
    Differs,
}

/// The build the command line describes.
fn spec_from_args(args: &Args) -> Result<BuildSpec, String> {
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
    let command = |flag: &str, text: &Option<String>| match text {
        Some(text) => split_command(text)
            .map(Some)
            .map_err(|e| format!("{flag}: {e}")),
        None => Ok(None),
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
        cmd: command("--cmd", &args.cmd)?,
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
    Ok(BuildSpec {
        request,
        run: RunConfig {
            entrypoint: command("--entrypoint", &args.entrypoint)?.unwrap_or_default(),
            env: args.env.clone(),
            workdir: args.workdir.clone(),
            user: args.run_as.clone(),
        },
        tag: args.tag.clone(),
        output: args.output.clone(),
        format: args.format,
    })
}

fn run(args: Args) -> Result<Outcome, String> {
    let mut spec = match &args.recipe {
        Some(path) => {
            let recipe = Recipe::load(path).map_err(|e| e.to_string())?;
            recipe.to_spec(path).map_err(|e| e.to_string())?
        }
        None => spec_from_args(&args)?,
    };
    // The command line's output, format and tag win over the recipe's.
    if args.output.is_some() {
        spec.output = args.output.clone();
    }
    spec.format = args.format.or(spec.format);
    spec.tag = args.tag.clone().or(spec.tag);
    spec.run.check().map_err(|e| e.to_string())?;
    let output = match (
        &spec.output,
        args.dry_run || args.explain || args.check.is_some(),
    ) {
        (Some(path), _) => Some(Output::choose(path, spec.format).map_err(|e| e.to_string())?),
        (None, true) => None,
        (None, false) => return Err(
            "no --output; give -o OUTPUT (or a path under [output] in the recipe), or --dry-run"
                .to_string(),
        ),
    };
    if let Some(output) = &output {
        spec.check_fits(output).map_err(|e| e.to_string())?;
    }
    let request = spec.request;
    let mut plan = Plan::build(&request).map_err(|e| e.to_string())?;
    plan.env = build::merged_env(&plan.env, &spec.run.env);
    let oci_cmd = build::settle_command(&mut plan, &spec.run, request.cmd.as_deref());
    if !args.quiet {
        for missing in &plan.missing {
            eprintln!(
                "mkroot: warning: {}: needs {}, not found; left out (--allow-missing)",
                missing.needed_by.display(),
                missing.name
            );
        }
    }
    // The OCI view of the plan (config, tag, layer settings), for --check and OCI output.
    let oci_image = || {
        build::oci_image(
            &plan,
            &request.root,
            &spec.run,
            oci_cmd,
            spec.tag.as_deref(),
        )
        .map_err(|e| e.to_string())
    };
    if let Some(image_path) = &args.check {
        let oci = oci_image()?;
        let differences = check::check(&plan, &oci, image_path).map_err(|e| e.to_string())?;
        let mut text = String::new();
        for difference in &differences {
            text.push_str(&format!("{difference}\n"));
        }
        if differences.is_empty() && !args.quiet {
            text = format!("{}: matches its recipe\n", image_path.display());
        }
        print_stdout(&text)?;
        return Ok(if differences.is_empty() {
            Outcome::Done
        } else {
            Outcome::Differs
        });
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
        return Ok(Outcome::Done);
    }
    let Some(output) = output else {
        return Ok(Outcome::Done);
    };
    let (entries, content_bytes, digest) = match &output {
        Output::Rootfs(target) => {
            let summary = image::write(&plan, target, args.quiet).map_err(|e| e.to_string())?;
            (summary.entries, summary.content_bytes, None)
        }
        Output::Oci(target) => {
            let oci = oci_image()?;
            let summary =
                image::write_oci(&plan, &oci, target, args.quiet).map_err(|e| e.to_string())?;
            (
                summary.layer.entries,
                summary.layer.content_bytes,
                Some(summary.manifest_digest),
            )
        }
    };
    if !args.quiet {
        let digest = digest.map_or(String::new(), |d| format!(", manifest {d}"));
        eprintln!(
            "mkroot: wrote {}: {entries} entries, {content_bytes} bytes of files, {} programs{digest}",
            output.path().display(),
            plan.programs.len()
        );
    }
    Ok(Outcome::Done)
}

/// Prints completions or the man page, generated from the clap definitions.
fn print_docs(docs: Docs) -> Result<Outcome, String> {
    let mut out = Vec::new();
    match docs {
        Docs::Completions { shell } => {
            clap_complete::generate(shell, &mut Args::command(), "mkroot", &mut out)
        }
        Docs::Man => clap_mangen::Man::new(Args::command())
            .render(&mut out)
            .map_err(|e| format!("cannot render the man page: {e}"))?,
    }
    print_stdout(&String::from_utf8_lossy(&out))?;
    Ok(Outcome::Done)
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
            eprintln!(
                "mkroot: {}",
                mkroot_common::usage::one_line(&error.to_string(), "mkroot")
            );
            return ExitCode::from(2);
        }
    };
    // A bug must still end in one line, not a backtrace: the default panic message is
    // silenced and the panic reported below.
    std::panic::set_hook(Box::new(|_| {}));
    let checking = args.check.is_some();
    let outcome = std::panic::catch_unwind(|| match args.docs {
        Some(docs) => print_docs(docs),
        None => run(args),
    })
    .unwrap_or_else(|payload| {
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
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Differs) => ExitCode::FAILURE,
        Err(message) => {
            // One line, whatever the error carried.
            eprintln!("mkroot: {}", message.replace('\n', " "));
            // With --check, 1 means "differs": a failure to check is told apart.
            ExitCode::from(if checking { 2 } else { 1 })
        }
    }
}

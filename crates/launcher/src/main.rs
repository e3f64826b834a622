//! `launch [OPTIONS] IMAGE [-- CMD...]` and `launch cache ls|prune|rm`: parses the
//! command line and reports errors in one line with exit status 125; the work is in the
//! library.
//!
//! `launch` starts without Rust's runtime set-up (`#![no_main]`, a C `main`): for its
//! stack-overflow message that set-up reads /proc/self/maps to find the main thread's
//! stack and installs an alternate signal stack and SIGSEGV/SIGBUS handlers, on every
//! launch (docs/hardening.md, "Where a cached launch's time goes", has what it cost).
//! The two parts `launch` relies on are done in [`main`] instead: descriptors 0-2 open,
//! SIGPIPE ignored.
//! (A test build keeps libtest's main: the C one is left out of it.)
#![cfg_attr(not(test), no_main)]
// What only the C main reaches is unused in a test build.
#![cfg_attr(test, allow(dead_code))]

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use mkroot_common::size::parse_size;
use mkroot_common::usage::{report_usage_error, single_line};
use mkroot_launcher::cache::{CacheTable, PruneFilter};
use mkroot_launcher::cgroup::ResourceLimits;
use mkroot_launcher::process::{User, EXIT_LAUNCH_FAILED};
use mkroot_launcher::rootfs::Volume;
use mkroot_launcher::security::SecurityOptions;
use mkroot_launcher::storage::{self, TmpfsMount};
use mkroot_launcher::{launch, open_cache, LaunchError, LaunchOptions};

/// Run a root filesystem image (a tarball or a directory), an OCI layout, an oci-archive
/// or a docker-archive in a container.
#[derive(Parser, Debug, PartialEq)]
#[command(name = "launch", version, subcommand_negates_reqs = true)]
#[command(after_help = mkroot_launcher::cli_docs::EXAMPLES)]
#[command(override_usage = mkroot_launcher::cli_docs::USAGE)]
struct Cli {
    #[command(subcommand)]
    manage: Option<Manage>,
    /// The image: a tarball (.tar, .tgz) or a directory; an OCI layout, oci-archive or
    /// docker-archive (told by content).
    #[arg(required = true)]
    image: Option<PathBuf>,
    /// The command and its arguments (after `--`); default: the image's, else /bin/sh.
    /// For an OCI image it replaces the config's Cmd, after its Entrypoint.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Replace an OCI image's Entrypoint (and drop its Cmd); "" clears it.
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// The container's hostname (default: random).
    #[arg(long)]
    hostname: Option<String>,
    /// Set an environment variable: KEY=VALUE, or KEY to pass the current value on.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Working directory inside the container (made, root's and 0755, if the image lacks it).
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Run the command as UID[:GID].
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Bind-mount a host path: HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volumes: Vec<String>,
    /// Make the container's root read-only.
    #[arg(long)]
    read_only: bool,
    /// Mount a tmpfs at PATH inside the container; OPTIONS: size=SIZE (default: the
    /// writable layer's bound), mode=OCTAL, ro, noexec.
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// The writable layer's bound: size=SIZE (default: --memory, or a quarter of RAM).
    #[arg(long = "storage-opt", value_name = "size=SIZE")]
    storage_opt: Option<String>,
    /// The size of /dev/shm (default 64M).
    #[arg(long = "shm-size", value_name = "SIZE")]
    shm_size: Option<String>,
    /// Give the command a pty even when stdin is not a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// As root: run in a user namespace, root inside mapped to an unprivileged range.
    #[arg(long)]
    userns: bool,
    /// Give root inside a capability beyond the default set (a name such as NET_RAW, or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Take a capability from root inside (a name, or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// seccomp=unconfined turns the default seccomp filter off.
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// Lower a resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, fsize, ...).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    ulimits: Vec<String>,
    /// Memory limit (e.g. 512M); going over it gets the container OOM-killed (exit 137).
    #[arg(short = 'm', long, value_name = "SIZE")]
    memory: Option<String>,
    /// The most processes and threads the container may have at once.
    #[arg(long, value_name = "N")]
    pids_limit: Option<u64>,
    /// CPU time the container may use, in CPUs (e.g. 0.5).
    #[arg(long, value_name = "N")]
    cpus: Option<f64>,
    /// The most an image tarball may unpack to (default 8G).
    #[arg(long, value_name = "SIZE")]
    max_image_size: Option<String>,
    /// The network: none (loopback only), host, bridge (root), or ns:PATH|NAME.
    #[arg(long, value_name = "MODE", default_value = "none")]
    net: String,
    /// The bridge's IPv4 subnet (default: $MKROOT_LAUNCH_SUBNET, else 10.47.0.0/16).
    #[arg(long, value_name = "CIDR")]
    subnet: Option<String>,
    /// Publish a container port on the host (--net bridge): HOSTPORT:CONTAINERPORT[/tcp|udp].
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "HOSTPORT:CONTAINERPORT[/PROTO]"
    )]
    publish: Vec<String>,
    /// The image cache directory (default: /var/cache/mkroot-launch as root, else
    /// ~/.cache/mkroot-launch).
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug, PartialEq)]
enum Manage {
    /// Manage the image cache.
    #[command(subcommand)]
    Cache(CacheAction),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand, Debug, PartialEq)]
enum CacheAction {
    /// List the cached images.
    Ls,
    /// Remove the cached images no running launch uses: all of them, or those unused
    /// for longer than --older-than, then the least recently used until the cache
    /// holds at most --max-size.
    Prune {
        /// An age: 90s, 30m, 12h, 7d.
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// A size: 2G, 500M.
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
    },
    /// Remove one cached image, by digest or a unique prefix of it.
    Rm { digest: String },
}

/// The C entry point (see the crate doc); `std::env::args` still works (glibc hands the
/// arguments to Rust's start-up code). As Rust's runtime would: a closed stdin, stdout or
/// stderr is opened on /dev/null, or the first file the launcher opens would take its
/// number and receive what is printed; and SIGPIPE is ignored, so writing to a container
/// that is gone (its go-ahead pipe, a socket) fails with EPIPE instead of killing launch.
/// (init restores the default for the command, see [`mkroot_launcher::init`].)
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    open_closed_standard_fds();
    // SAFETY: plain signal disposition change, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let status = run();
    // Printed output is in Rust's buffer, which nothing flushes after main returns.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    status.into()
}

fn open_closed_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: a valid array of three pollfds; a zero timeout.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pollfd in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: open of a constant path; the descriptor gets the lowest free number,
        // which is the closed one (they are filled in order).
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd != pollfd.fd {
            // SAFETY: nothing else can be done without a standard descriptor.
            unsafe { libc::abort() };
        }
    }
}

/// Parses the command line and does what it asks; the exit status.
fn run() -> u8 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if mkroot_launcher::runtime::is_runtime_command(&args) {
        return hand_to_runtime(&args);
    }
    let parsed = match fast_args::parse(&args) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse(),
    };
    let mut cli = match parsed {
        Ok(cli) => cli,
        // Help and version go to stdout as clap renders them.
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return 0;
        }
        // A usage error is one line and exit 125, like every other failure of the
        // launcher's own.
        Err(error) => {
            return report_usage_error(&error.to_string(), "launch", EXIT_LAUNCH_FAILED as u8)
        }
    };
    let result = match cli.manage.take() {
        Some(Manage::Cache(action)) => manage_cache(action, cli.cache_dir.as_deref()),
        Some(Manage::Completions { shell }) => Ok(mkroot_launcher::cli_docs::print_completions(
            shell,
            <Cli as clap::CommandFactory>::command(),
        )),
        Some(Manage::Man) => Ok(mkroot_launcher::cli_docs::print_man(
            <Cli as clap::CommandFactory>::command(),
        )),
        None => options(cli).and_then(|options| launch(&options)),
    };
    match result {
        Ok(code) => code as u8,
        Err(e) => {
            eprintln!("launch: {}", single_line(&e.to_string()));
            EXIT_LAUNCH_FAILED as u8
        }
    }
}

/// The command lines a launch is usually started with, parsed without clap, whose
/// start-up (building the whole command definition, its allocations and the pages of
/// its code) is a good part of a cached launch's time before the clone. Anything this
/// does not know for certain (help, version, the subcommands, bundled short flags, a
/// value that starts with `-` or is empty, an option given twice that clap would
/// refuse, a number that does not parse) is left to clap, which then decides and
/// words the error. The tests check that every option of [`Cli`] is known here with
/// the same name and arity, and that whatever this accepts, clap parses to the same
/// [`Cli`].
mod fast_args {
    use super::Cli;

    /// Every option of [`Cli`]: its long name, short name, and whether it takes a value.
    pub const OPTIONS: &[(&str, Option<char>, bool)] = &[
        ("entrypoint", None, true),
        ("hostname", None, true),
        ("env", Some('e'), true),
        ("env-file", None, true),
        ("workdir", Some('w'), true),
        ("user", Some('u'), true),
        ("volume", Some('v'), true),
        ("read-only", None, false),
        ("tmpfs", None, true),
        ("storage-opt", None, true),
        ("shm-size", None, true),
        ("tty", Some('t'), false),
        ("userns", None, false),
        ("cap-add", None, true),
        ("cap-drop", None, true),
        ("security-opt", None, true),
        ("ulimit", None, true),
        ("memory", Some('m'), true),
        ("pids-limit", None, true),
        ("cpus", None, true),
        ("max-image-size", None, true),
        ("net", None, true),
        ("subnet", None, true),
        ("publish", Some('p'), true),
        ("cache-dir", None, true),
    ];

    /// Names a positional argument before `--` may not have here: clap takes them as
    /// subcommands.
    const SUBCOMMANDS: &[&str] = &["cache", "completions", "man", "help"];

    pub fn parse(args: &[String]) -> Option<Cli> {
        let mut cli = empty();
        let mut net_given = false;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if arg == "--" {
                cli.command.extend(rest.cloned());
                break;
            }
            let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
                match long.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (long, None),
                }
            } else if let Some(short) = arg.strip_prefix('-') {
                let mut chars = short.chars();
                let (Some(letter), None) = (chars.next(), chars.next()) else {
                    return None;
                };
                let &(long, ..) = OPTIONS.iter().find(|(_, s, _)| *s == Some(letter))?;
                (long, None)
            } else {
                // clap takes a subcommand's name for the subcommand even after the image.
                if SUBCOMMANDS.contains(&arg.as_str()) {
                    return None;
                }
                if cli.image.is_none() {
                    cli.image = Some(arg.into());
                } else {
                    // The command's first word: everything after it is the command's.
                    cli.command.push(arg.clone());
                    cli.command.extend(rest.cloned());
                    break;
                }
                continue;
            };
            let &(long, _, takes_value) = OPTIONS.iter().find(|(l, ..)| *l == name)?;
            if !takes_value {
                if inline.is_some() {
                    return None;
                }
                flag(&mut cli, long)?;
                continue;
            }
            let value = match inline {
                Some(value) => value,
                None => rest.next()?,
            };
            if value.is_empty() || value.starts_with('-') {
                return None;
            }
            if long == "net" {
                if net_given {
                    return None;
                }
                net_given = true;
            }
            set(&mut cli, long, value)?;
        }
        cli.image.is_some().then_some(cli)
    }

    fn empty() -> Cli {
        Cli {
            manage: None,
            image: None,
            command: Vec::new(),
            entrypoint: None,
            hostname: None,
            env: Vec::new(),
            env_files: Vec::new(),
            workdir: None,
            user: None,
            volumes: Vec::new(),
            read_only: false,
            tmpfs: Vec::new(),
            storage_opt: None,
            shm_size: None,
            tty: false,
            userns: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: Vec::new(),
            ulimits: Vec::new(),
            memory: None,
            pids_limit: None,
            cpus: None,
            max_image_size: None,
            net: "none".into(),
            subnet: None,
            publish: Vec::new(),
            cache_dir: None,
        }
    }

    /// Sets a flag; `None` when it was given already (clap refuses that).
    fn flag(cli: &mut Cli, long: &str) -> Option<()> {
        let field = match long {
            "read-only" => &mut cli.read_only,
            "tty" => &mut cli.tty,
            "userns" => &mut cli.userns,
            _ => return None,
        };
        (!*field).then(|| *field = true)
    }

    /// Sets an option's value; `None` when clap would have to decide.
    fn set(cli: &mut Cli, long: &str, value: &str) -> Option<()> {
        let list = match long {
            "env" => Some(&mut cli.env),
            "volume" => Some(&mut cli.volumes),
            "tmpfs" => Some(&mut cli.tmpfs),
            "cap-add" => Some(&mut cli.cap_add),
            "cap-drop" => Some(&mut cli.cap_drop),
            "security-opt" => Some(&mut cli.security_opt),
            "ulimit" => Some(&mut cli.ulimits),
            "publish" => Some(&mut cli.publish),
            _ => None,
        };
        if let Some(list) = list {
            list.push(value.into());
            return Some(());
        }
        let once = match long {
            "entrypoint" => Some(&mut cli.entrypoint),
            "hostname" => Some(&mut cli.hostname),
            "workdir" => Some(&mut cli.workdir),
            "user" => Some(&mut cli.user),
            "storage-opt" => Some(&mut cli.storage_opt),
            "shm-size" => Some(&mut cli.shm_size),
            "memory" => Some(&mut cli.memory),
            "max-image-size" => Some(&mut cli.max_image_size),
            "subnet" => Some(&mut cli.subnet),
            _ => None,
        };
        if let Some(field) = once {
            return field.is_none().then(|| *field = Some(value.into()));
        }
        match long {
            "env-file" => cli.env_files.push(value.into()),
            "net" => cli.net = value.into(),
            "pids-limit" if cli.pids_limit.is_none() => cli.pids_limit = Some(value.parse().ok()?),
            "cpus" if cli.cpus.is_none() => cli.cpus = Some(value.parse().ok()?),
            "cache-dir" if cli.cache_dir.is_none() => cli.cache_dir = Some(value.into()),
            _ => return None,
        }
        Some(())
    }
}

/// Execs `launch-runtime` (next to this binary) with the same arguments, for a runtime
/// verb; returns only when it cannot.
fn hand_to_runtime(args: &[String]) -> u8 {
    use std::os::unix::process::CommandExt;
    let program = std::env::current_exe()
        .map(|exe| exe.with_file_name(mkroot_launcher::runtime::RUNTIME_PROGRAM))
        .unwrap_or_else(|_| PathBuf::from(mkroot_launcher::runtime::RUNTIME_PROGRAM));
    let error = std::process::Command::new(&program)
        .arg0("launch")
        .args(args)
        .exec();
    eprintln!(
        "launch: the runtime verbs are done by {}: {error}; install it next to launch (cargo build --release builds both)",
        program.display()
    );
    1
}

fn manage_cache(action: CacheAction, dir: Option<&Path>) -> Result<i32, LaunchError> {
    let cache = open_cache(dir)?;
    match action {
        CacheAction::Ls => {
            let entries = cache.list()?;
            let table = CacheTable {
                entries: &entries,
                dir: cache.dir(),
            };
            print!("{table}");
        }
        CacheAction::Prune {
            older_than,
            max_size,
        } => {
            let filter = PruneFilter {
                older_than: older_than
                    .as_deref()
                    .map(mkroot_launcher::cache::parse_age)
                    .transpose()
                    .map_err(LaunchError::Invalid)?,
                max_bytes: max_size
                    .map(|s| parse_size(&s))
                    .transpose()
                    .map_err(|e| LaunchError::Invalid(format!("--max-size {e}")))?,
            };
            println!("{}", cache.prune_with(filter)?);
        }
        CacheAction::Rm { digest } => println!("removed {}", cache.remove(&digest)?),
    }
    Ok(0)
}

fn options(cli: Cli) -> Result<LaunchOptions, LaunchError> {
    Ok(LaunchOptions {
        image: cli.image.expect("clap requires IMAGE"),
        cache_dir: cli.cache_dir,
        command: cli.command,
        entrypoint: cli.entrypoint,
        hostname: cli.hostname,
        env: cli.env,
        env_files: cli.env_files,
        workdir: cli.workdir,
        user: cli.user.as_deref().map(str::parse::<User>).transpose()?,
        volumes: cli
            .volumes
            .iter()
            .map(|v| v.parse::<Volume>())
            .collect::<Result<_, _>>()?,
        tmpfs: cli
            .tmpfs
            .iter()
            .map(|t| t.parse::<TmpfsMount>().map_err(LaunchError::Invalid))
            .collect::<Result<_, _>>()?,
        writable_layer_size: cli
            .storage_opt
            .as_deref()
            .map(storage::parse_storage_opt)
            .transpose()
            .map_err(LaunchError::Invalid)?,
        shm_size: cli
            .shm_size
            .as_deref()
            .map(|s| storage::parse_tmpfs_size("--shm-size", s))
            .transpose()
            .map_err(LaunchError::Invalid)?,
        read_only: cli.read_only,
        tty: cli.tty,
        userns: cli.userns,
        security: SecurityOptions {
            cap_add: cli.cap_add,
            cap_drop: cli.cap_drop,
            security_opt: cli.security_opt,
            ulimits: cli.ulimits,
        },
        limits: ResourceLimits::new(cli.memory.as_deref(), cli.pids_limit, cli.cpus)?,
        max_image_size: cli
            .max_image_size
            .map(|s| parse_size(&s))
            .transpose()
            .map_err(|e| LaunchError::Invalid(format!("--max-image-size {e}")))?,
        net: cli.net.parse()?,
        subnet: cli.subnet.as_deref().map(str::parse).transpose()?,
        publish: cli
            .publish
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn every_option_of_cli_is_known_to_the_fast_path_alike() {
        let mut from_clap: Vec<(String, Option<char>, bool)> = Cli::command()
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let takes_value = arg.get_action().takes_values();
                Some((long.to_string(), arg.get_short(), takes_value))
            })
            .filter(|(long, ..)| long != "help" && long != "version")
            .collect();
        let mut ours: Vec<(String, Option<char>, bool)> = fast_args::OPTIONS
            .iter()
            .map(|&(long, short, value)| (long.to_string(), short, value))
            .collect();
        from_clap.sort();
        ours.sort();
        assert_eq!(ours, from_clap);
    }

    /// Argument vectors around every option: each form (`--name value`, `--name=value`,
    /// `-s value`, `-svalue`), values a parser could read differently, the option
    /// before the image, after it and after the command's first word, given twice,
    /// and lines that only clap can answer.
    fn corpus() -> Vec<Vec<String>> {
        let values = ["x", "7", "0.5", "a=b", "/h:/c:ro", "-x", "", "--", "cache"];
        let mut lines: Vec<Vec<String>> = Vec::new();
        for &(long, short, takes_value) in fast_args::OPTIONS {
            let mut forms: Vec<Vec<String>> = Vec::new();
            if takes_value {
                for value in values {
                    forms.push(strings(&[&format!("--{long}"), value]));
                    forms.push(strings(&[&format!("--{long}={value}")]));
                    if let Some(s) = short {
                        forms.push(strings(&[&format!("-{s}"), value]));
                        forms.push(strings(&[&format!("-{s}{value}")]));
                    }
                }
                forms.push(strings(&[&format!("--{long}")]));
            } else {
                forms.push(strings(&[&format!("--{long}")]));
                forms.push(strings(&[&format!("--{long}=true")]));
                if let Some(s) = short {
                    forms.push(strings(&[&format!("-{s}")]));
                }
            }
            for form in &forms {
                let form: Vec<&str> = form.iter().map(String::as_str).collect();
                let mut twice = form.clone();
                twice.extend(&form);
                for line in [
                    [&form[..], &["img.tgz"]].concat(),
                    [&["img.tgz"], &form[..]].concat(),
                    [&["img.tgz"], &form[..], &["--", "ls", "-l"]].concat(),
                    [&["img.tgz", "ls"], &form[..]].concat(),
                    [&twice[..], &["img.tgz", "--", "/bin/true"]].concat(),
                    form.clone(),
                ] {
                    lines.push(strings(&line));
                }
            }
        }
        for line in [
            &["img.tgz"][..],
            &["img.tgz", "--"],
            &["img.tgz", "--", "--help"],
            &["img.tgz", "sh", "-c", "echo hi"],
            &["img.tgz", "sh", "--", "x"],
            &["--", "img.tgz"],
            &["--cache-dir", "/c", "img.tgz", "--", "/bin/true"],
            &["-t", "-e", "A=1", "--net", "host", "img.tgz", "bash"],
            &["--net", "none", "--net", "host", "img.tgz"],
            &["-te", "A=1", "img.tgz"],
            &["--help"],
            &["-h"],
            &["--version"],
            &["cache", "ls"],
            &["man"],
            &["help"],
            &["completions", "bash"],
            &["--cache-dir", "/c", "cache", "prune"],
            &["img.tgz", "cache"],
            &["-", "img.tgz"],
            &["--unknown", "img.tgz"],
            &["-z", "img.tgz"],
            &["--pids-limit", "-1", "img.tgz"],
            &["--pids-limit", "ten", "img.tgz"],
            &["--cpus", "inf", "img.tgz"],
            &["two", "images"],
            &[],
        ] {
            lines.push(strings(line));
        }
        lines
    }

    #[test]
    fn what_the_fast_path_accepts_clap_parses_alike() {
        let mut accepted = 0;
        let lines = corpus();
        for line in &lines {
            let Some(fast) = fast_args::parse(line) else {
                continue;
            };
            accepted += 1;
            let clap =
                Cli::try_parse_from(std::iter::once("launch".to_string()).chain(line.clone()))
                    .unwrap_or_else(|e| {
                        panic!("{line:?}: the fast path accepted what clap refuses: {e}")
                    });
            assert_eq!(fast, clap, "{line:?}");
        }
        // The fast path is taken for most lines that are not errors or subcommands.
        assert!(accepted * 3 > lines.len(), "{accepted} of {}", lines.len());
    }

    #[test]
    fn the_usual_lines_take_the_fast_path() {
        for line in [
            &["img.tgz"][..],
            &["--cache-dir", "/c", "img.tgz", "--", "/bin/true"],
            &[
                "-t", "-e", "A=1", "-v", "/h:/c:ro", "--net", "host", "img.tgz", "bash", "-l",
            ],
            &[
                "--memory=64M",
                "--pids-limit",
                "10",
                "--cpus",
                "0.5",
                "img.tgz",
                "true",
            ],
        ] {
            assert!(fast_args::parse(&strings(line)).is_some(), "{line:?}");
        }
        for line in [
            &["--help"][..],
            &["cache", "ls"],
            &["-te", "A=1", "img.tgz"],
            &[],
        ] {
            assert!(fast_args::parse(&strings(line)).is_none(), "{line:?}");
        }
    }
}

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

mod fast_args;

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

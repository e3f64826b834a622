//! `launch [OPTIONS] IMAGE [-- CMD...]`: parses the command line and reports errors in
//! one line with exit status 125; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mkroot_launcher::process::{User, EXIT_LAUNCH_FAILED};
use mkroot_launcher::rootfs::Volume;
use mkroot_launcher::{launch, LaunchError, LaunchOptions};

/// Run a root filesystem image (a tarball or a directory) in a container.
#[derive(Parser)]
#[command(name = "launch", version)]
struct Cli {
    /// The image: a tarball (.tar, .tgz) or a directory.
    image: PathBuf,
    /// The command and its arguments (after `--`); default: the image's, else /bin/sh.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// The container's hostname (default: random).
    #[arg(long)]
    hostname: Option<String>,
    /// Set an environment variable: KEY=VALUE, or KEY to pass the current value on.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Working directory inside the container.
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
    /// Mount a tmpfs at PATH inside the container.
    #[arg(long, value_name = "PATH")]
    tmpfs: Vec<String>,
    /// Give the command a pty even when stdin is not a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// As root: run in a user namespace, root inside mapped to an unprivileged range.
    #[arg(long)]
    userns: bool,
    /// The image cache directory.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match options(cli).and_then(|options| launch(&options)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("launch: {e}");
            ExitCode::from(EXIT_LAUNCH_FAILED as u8)
        }
    }
}

fn options(cli: Cli) -> Result<LaunchOptions, LaunchError> {
    Ok(LaunchOptions {
        image: cli.image,
        cache_dir: cli.cache_dir,
        command: cli.command,
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
        tmpfs: cli.tmpfs,
        read_only: cli.read_only,
        tty: cli.tty,
        userns: cli.userns,
    })
}

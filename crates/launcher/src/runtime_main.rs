//! `launch-runtime`: the runtime command line (`launch [GLOBAL] VERB ...`), as runc
//! takes it, which `launch` execs when its first word is a verb. Parsed here, done by
//! [`mkroot_launcher::runtime`], errors reported in one line on stderr and, with `--log`,
//! in the log file (`--log-format json`: one object per line with `level` and `msg`, the
//! form containerd reads its error message from).

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mkroot_common::usage::single_line;
use mkroot_launcher::runtime::{self, exec::ExecOptions, state::StateRoot, CreateOptions};
use mkroot_launcher::LaunchError;

/// launch as an OCI runtime (runc's command line).
#[derive(Parser)]
#[command(name = "launch", version)]
struct RuntimeCli {
    /// Where containers' state is kept (default: /run/mkroot-launch/runtime, or under
    /// $XDG_RUNTIME_DIR for an ordinary user).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Also write errors to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// text or json.
    #[arg(long, global = true, default_value = "text", value_name = "FORMAT")]
    log_format: String,
    /// Accepted for runc's command line; only errors are logged.
    #[arg(long, global = true, hide = true)]
    log_level: Option<String>,
    /// Not supported: launch manages cgroups itself (cgroupfs).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc's command line.
    #[arg(long, global = true, hide = true)]
    debug: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Create a container from a bundle; its process waits for `start`.
    Create {
        #[command(flatten)]
        create: CreateArgs,
        id: String,
    },
    /// Start a created container's process.
    Start { id: String },
    /// Print a container's state (runtime spec JSON).
    State { id: String },
    /// Send a signal (default TERM) to a container's process.
    Kill {
        /// Every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a stopped container (--force: any).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, and wait for it (-d: do not wait).
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        #[arg(long, hide = true)]
        keep: bool,
        id: String,
    },
    /// Run another process in a running container.
    Exec {
        /// The process as a runtime spec `process` object.
        #[arg(short, long, value_name = "FILE")]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        #[arg(long, value_name = "SOCKET")]
        console_socket: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(short, long, value_name = "UID[:GID]")]
        user: Option<String>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// ps(1) options (table format).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json in the current directory (or --bundle).
    Spec {
        #[arg(long)]
        rootless: bool,
        #[arg(short, long, value_name = "DIR")]
        bundle: Option<PathBuf>,
    },
    /// Print what this runtime supports (runtime spec features JSON).
    Features,
    /// Change a container's resources (not supported).
    Update {
        #[arg(short, long)]
        resources: Option<String>,
        id: String,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The bundle directory (default: the current directory).
    #[arg(short, long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    #[arg(long, value_name = "SOCKET")]
    console_socket: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc's command line (launch always pivots).
    #[arg(long, hide = true)]
    no_pivot: bool,
    /// Accepted for runc's command line (launch makes no session keyring).
    #[arg(long, hide = true)]
    no_new_keyring: bool,
}

impl CreateArgs {
    fn options(self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.unwrap_or_else(|| PathBuf::from(".")),
            pid_file: self.pid_file.map(absolute),
            console_socket: self.console_socket,
            preserve_fds: self.preserve_fds,
        }
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run())
}

/// Parses and runs a runtime verb; the exit status.
fn run() -> u8 {
    let cli = match RuntimeCli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return 0;
        }
        Err(error) => {
            return mkroot_common::usage::report_usage_error(&error.to_string(), "launch", 1)
        }
    };
    let log = Log {
        file: cli.log.clone(),
        json: cli.log_format == "json",
    };
    let result = if cli.systemd_cgroup {
        Err(LaunchError::Invalid(
            "--systemd-cgroup: not supported; launch manages cgroups itself: run the engine with cgroupfs (podman --cgroup-manager cgroupfs; containerd SystemdCgroup = false)".into(),
        ))
    } else {
        let root = StateRoot::new(
            cli.root
                .clone()
                .unwrap_or_else(runtime::state::default_root),
        );
        dispatch(&root, cli.verb)
    };
    match result {
        Ok(code) => code as u8,
        Err(e) => {
            log.error(&single_line(&e.to_string()));
            1
        }
    }
}

fn dispatch(root: &StateRoot, verb: Verb) -> Result<i32, LaunchError> {
    match verb {
        Verb::Create { create, id } => runtime::create(root, &id, &create.options()).map(|()| 0),
        Verb::Start { id } => runtime::start(root, &id).map(|()| 0),
        Verb::State { id } => {
            let state = runtime::state_json(root, &id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&state).expect("plain data")
            );
            Ok(0)
        }
        Verb::Kill { all, id, signal } => {
            runtime::kill(root, &id, signal.as_deref().unwrap_or("TERM"), all).map(|()| 0)
        }
        Verb::Delete { force, id } => runtime::delete(root, &id, force).map(|()| 0),
        Verb::Run {
            create,
            detach,
            keep: _,
            id,
        } => runtime::run(root, &id, &create.options(), detach),
        Verb::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            env,
            cwd,
            user,
            preserve_fds,
            id,
            command,
        } => {
            let user = user.as_deref().map(parse_user).transpose()?;
            let options = ExecOptions {
                process_file: process,
                args: command,
                env,
                cwd,
                user,
                tty,
                detach,
                pid_file: pid_file.map(absolute),
                console_socket,
                preserve_fds,
            };
            runtime::exec::exec(root, &id, &options)
        }
        Verb::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = runtime::pids(root, &id)?;
            print_processes(&pids, &format, &ps_args)?;
            Ok(0)
        }
        Verb::Pause { id } => runtime::set_paused(root, &id, true).map(|()| 0),
        Verb::Resume { id } => runtime::set_paused(root, &id, false).map(|()| 0),
        Verb::List { format, quiet } => {
            let containers = runtime::list(root);
            if quiet {
                for c in &containers {
                    println!("{}", c["id"].as_str().unwrap_or_default());
                }
            } else if format == "json" {
                println!("{}", serde_json::Value::Array(containers));
            } else {
                println!(
                    "{:<24} {:<8} {:<10} {:<40} {:<32} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for c in &containers {
                    println!(
                        "{:<24} {:<8} {:<10} {:<40} {:<32} {}",
                        c["id"].as_str().unwrap_or_default(),
                        c["pid"],
                        c["status"].as_str().unwrap_or_default(),
                        c["bundle"].as_str().unwrap_or_default(),
                        c["created"].as_str().unwrap_or_default(),
                        c["owner"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        Verb::Spec { rootless, bundle } => {
            runtime::write_default_spec(&bundle.unwrap_or_else(|| PathBuf::from(".")), rootless)?;
            Ok(0)
        }
        Verb::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&runtime::features()).expect("plain data")
            );
            Ok(0)
        }
        Verb::Update { id, .. } => {
            root.open(&id)?;
            Err(LaunchError::Invalid(
                "update: changing a running container's resources is not supported by launch"
                    .into(),
            ))
        }
    }
}

fn parse_user(text: &str) -> Result<(u32, u32), LaunchError> {
    let invalid = || LaunchError::Invalid(format!("--user {text}: give UID or UID:GID (numbers)"));
    let (uid, gid) = text.split_once(':').unwrap_or((text, "0"));
    Ok((
        uid.parse().map_err(|_| invalid())?,
        gid.parse().map_err(|_| invalid())?,
    ))
}

/// `ps`: JSON, the PIDs; table, ps(1)'s own output cut to the container's processes.
fn print_processes(
    pids: &[libc::pid_t],
    format: &str,
    ps_args: &[String],
) -> Result<(), LaunchError> {
    match format {
        "json" => {
            println!("{}", serde_json::to_string(pids).expect("plain data"));
            Ok(())
        }
        "table" => {
            let args = if ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                ps_args.to_vec()
            };
            let output = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| LaunchError::Invalid(format!("running ps: {e}")))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_column = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| {
                    LaunchError::Invalid(
                        "ps: its output has no PID column; give options that show it".into(),
                    )
                })?;
            println!("{header}");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(pid_column)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
            Ok(())
        }
        other => Err(LaunchError::Invalid(format!(
            "--format {other}: give table or json"
        ))),
    }
}

/// Where errors go: stderr always, and the `--log` file.
struct Log {
    file: Option<PathBuf>,
    json: bool,
}

impl Log {
    fn error(&self, message: &str) {
        eprintln!("launch: {message}");
        let Some(path) = &self.file else {
            return;
        };
        let line = if self.json {
            serde_json::json!({
                "level": "error",
                "msg": message,
                "time": runtime::state::now_rfc3339(),
            })
            .to_string()
        } else {
            format!("{} error: {message}", runtime::state::now_rfc3339())
        };
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

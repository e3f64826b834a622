//! Part of the `launch` binary (main.rs), not of the library.
//!
//! The command lines a launch is usually started with, parsed without clap, whose
//! start-up (building the whole command definition, its allocations and the pages of
//! its code) is a good part of a cached launch's time before the clone. Anything this
//! does not know for certain (help, version, the subcommands, bundled short flags, a
//! value that starts with `-` or is empty, an option given twice that clap would
//! refuse, a number that does not parse) is left to clap, which then decides and
//! words the error. The tests check that every option of [`Cli`] is known here with the
//! same name and arity, and that whatever this accepts, clap parses to the same [`Cli`].
use crate::Cli;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cli;
    use clap::CommandFactory;
    use clap::Parser;

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
        let mut ours: Vec<(String, Option<char>, bool)> = OPTIONS
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
        for &(long, short, takes_value) in OPTIONS {
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
            let Some(fast) = parse(line) else {
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
            assert!(parse(&strings(line)).is_some(), "{line:?}");
        }
        for line in [
            &["--help"][..],
            &["cache", "ls"],
            &["-te", "A=1", "img.tgz"],
            &[],
        ] {
            assert!(parse(&strings(line)).is_none(), "{line:?}");
        }
    }
}

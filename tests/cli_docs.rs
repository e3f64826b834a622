//! End-to-end tests of the command-line polish of both programs: `--version`, `--help`
//! with examples, and the completion scripts and man pages generated from clap.

use mkroot_e2e::builder::{mkroot, target_dir};
use mkroot_e2e::oci_build::require_tool;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn launch() -> PathBuf {
    target_dir().join("launch")
}

fn stdout_of(program: &PathBuf, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `tool args` with `input` on stdin; what it did.
fn run_with_input(tool: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `tool args` with `input` on stdin; its status and stderr.
fn check_with(tool: &str, args: &[&str], input: &str) -> (bool, String) {
    let out = run_with_input(tool, args, input);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn both_programs_tell_their_version_and_show_examples() {
    for (program, name) in [(mkroot(), "mkroot"), (launch(), "launch")] {
        let version = stdout_of(&program, &["--version"]);
        assert_eq!(
            version.trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
        let help = stdout_of(&program, &["--help"]);
        let examples = help
            .split_once("Examples:")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("{name} --help: no examples"));
        assert!(
            examples.matches(&format!("\n  {name} ")).count() >= 4,
            "{help}"
        );
        // The documentation commands stay out of the command list, and the end of the
        // help says how to get them.
        let (listed, _) = help.split_once("Examples:").unwrap();
        assert!(!listed.contains("completions"), "{help}");
        assert!(
            help.contains(&format!("{name} completions bash|zsh|fish, {name} man")),
            "{help}"
        );
    }
}

#[test]
fn bash_completions_are_valid_scripts() {
    for (program, name) in [(mkroot(), "mkroot"), (launch(), "launch")] {
        let script = stdout_of(&program, &["completions", "bash"]);
        assert!(script.contains(&format!("complete -F _{name}")), "{script}");
        let (ok, stderr) = check_with("bash", &["-n"], &script);
        assert!(ok, "{name}: bash -n: {stderr}");
        // Flags of the program are offered.
        let flag = if name == "mkroot" {
            "bins"
        } else {
            "read-only"
        };
        assert!(script.contains(flag), "{name}: no {flag}");
        for shell in ["zsh", "fish", "elvish", "powershell"] {
            let other = stdout_of(&program, &["completions", shell]);
            assert!(other.contains(flag), "{name} {shell}: no {flag}");
        }
    }
}

#[test]
fn man_pages_render_without_warnings() {
    if !require_tool("groff", "groff-base") {
        return;
    }
    for (program, name) in [(mkroot(), "mkroot"), (launch(), "launch")] {
        let page = stdout_of(&program, &["man"]);
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
        // -ww: every warning; -z: check only. groff exits 0 even with warnings, so the
        // check is that it prints none.
        let (ok, stderr) = check_with("groff", &["-man", "-Tutf8", "-ww", "-z"], &page);
        assert!(ok && stderr.is_empty(), "{name}: groff: {stderr}");
        let rendered = run_with_input("groff", &["-man", "-Tutf8", "-P-cbou"], &page);
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("SYNOPSIS"), "{text}");
        assert!(
            text.contains("Examples:"),
            "{name}: the examples are in the page too"
        );
    }
}

#[test]
fn launch_usage_reads_image_then_command() {
    let help = stdout_of(&launch(), &["--help"]);
    let usage = help.split_once("Usage: ").unwrap().1;
    assert!(
        usage.starts_with("launch [OPTIONS] IMAGE [-- COMMAND [ARG]...]\n"),
        "{help}"
    );
    assert!(usage.contains("launch cache ls|prune|rm"), "{help}");
    assert!(!help.contains("<COMMAND>"), "{help}");
}

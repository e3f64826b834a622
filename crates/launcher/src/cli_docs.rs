//! What `launch --help` shows after the options, and the completion scripts and man page
//! generated from the clap definitions (`launch completions SHELL`, `launch man`).

use std::io::Write;

/// Examples for the common cases, shown at the end of `--help`.
pub const EXAMPLES: &str = "\
Examples:
  launch shell.tgz
      run the image's default command (an image mkroot built records it)
  launch shell.tgz -- ls -l /
      run another command in the image
  launch -t -e LANG=C.UTF-8 -v $PWD/data:/data:ro shell.tgz -- bash
      an interactive shell with a variable and a read-only bind mount
  launch --read-only --tmpfs /tmp -u 1000:1000 app.tgz
      a read-only root, a scratch /tmp, an unprivileged user
  launch web.oci.tar
      an OCI image (an oci-archive, a layout directory, or docker save output)
  launch cache ls
      the unpacked images kept for fast starts
  launch --root /run/x create --bundle DIR ID
      as an OCI runtime, runc's verbs: create, start, state, kill, delete, run, exec, ...

Shell completions and the man page: launch completions bash|zsh|fish, launch man";

/// The usage line: the image, then `--` and the command; the other forms apart.
pub const USAGE: &str = "\
launch [OPTIONS] IMAGE [-- COMMAND [ARG]...]
       launch cache ls|prune|rm DIGEST
       launch [--root DIR] [--log FILE] create|start|state|kill|delete|run|exec|ps|pause|resume|list|spec|features ...";

/// Writes the completion script for `shell` to stdout; the exit status.
pub fn print_completions(shell: clap_complete::Shell, mut command: clap::Command) -> i32 {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "launch", &mut out);
    print(&out)
}

/// Writes the man page (roff) to stdout; the exit status.
pub fn print_man(command: clap::Command) -> i32 {
    let mut out = Vec::new();
    match clap_mangen::Man::new(command).render(&mut out) {
        Ok(()) => print(&out),
        Err(e) => {
            eprintln!("launch: cannot render the man page: {e}");
            1
        }
    }
}

fn print(bytes: &[u8]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        // A reader that went away (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("launch: stdout: {e}");
            1
        }
    }
}

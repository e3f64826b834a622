//! terminfo entries for programs that link a terminal library (ncurses, tinfo).
//! They read `/usr/share/terminfo/x/xterm` (or a sibling directory) for `$TERM` at
//! start; without an entry `top` and friends refuse to run.

use super::PlanView;
use crate::addition::Addition;
use crate::resolve::Resolution;
use std::path::{Path, PathBuf};

/// Terminals common enough to expect: consoles, xterm-likes and multiplexers.
pub const TERMINALS: &[&str] = &[
    "dumb",
    "linux",
    "vt100",
    "xterm",
    "xterm-256color",
    "screen",
    "tmux",
];

/// ncurses' search order for compiled entries on Debian-like systems (and the other
/// common locations after it).
const TERMINFO_DIRS: &[&str] = &[
    "/etc/terminfo",
    "/lib/terminfo",
    "/usr/share/terminfo",
    "/usr/lib/terminfo",
];

/// Library names that mean a program reads terminfo.
fn is_terminal_library(name: &str) -> bool {
    ["libtinfo", "libncurses", "libtic", "libtermcap"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The first program that links a terminal library, as a path inside the root.
fn terminal_program(objects: &[Resolution]) -> Option<PathBuf> {
    objects
        .iter()
        .find(|r| r.libraries.iter().any(|l| is_terminal_library(&l.name)))
        .map(|r| r.program.clone())
}

/// The root's entries for the common [`TERMINALS`], when a program reads terminfo.
pub fn additions(view: &PlanView) -> Vec<Addition> {
    let Some(program) = terminal_program(view.objects) else {
        return Vec::new();
    };
    let reason = format!("terminfo entry for {}", program.display());
    TERMINALS
        .iter()
        .filter_map(|terminal| {
            let first = terminal.chars().next().unwrap_or('x');
            TERMINFO_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(first.to_string()).join(terminal))
                .find(|entry| view.root.resolve(entry).is_ok_and(|host| host.is_file()))
        })
        // A terminal the root has no entry for is left out, as on the host.
        .map(|entry| Addition::root_file(entry, reason.clone()))
        .collect()
}

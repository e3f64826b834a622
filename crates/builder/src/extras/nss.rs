//! NSS: `/etc/nsswitch.conf` and the `libnss_*` modules it names.
//!
//! libc dlopens `libnss_SERVICE.so.2` for each service a database line names, the
//! first time a program looks up a user, group or host; no DT_NEEDED names them.
//! The image's nsswitch.conf is the root's, minus services that only answer by
//! talking to a daemon (systemd's userdb, sssd, winbind, avahi): no such daemon runs
//! in an image, so their modules would be dead weight tried on every lookup.
//! `files` and `dns` are built into glibc since 2.34; their modules are copied only
//! for an older libc, one that lacks the built-in `_nss_files_*` functions.

use super::{ExtraError, PlanView};
use crate::addition::Addition;
use crate::symbols::SymbolCache;

const NSSWITCH: &str = "/etc/nsswitch.conf";

/// Services that need a daemon the image does not have.
const DAEMON_SERVICES: &[&str] = &[
    "systemd",
    "mymachines",
    "resolve",
    "sss",
    "winbind",
    "wins",
    "mdns",
    "mdns4",
    "mdns6",
    "mdns_minimal",
    "mdns4_minimal",
    "mdns6_minimal",
];

/// Used when the root has no nsswitch.conf: glibc's own defaults, written out.
const DEFAULT_NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n";

/// The services of one database line, `[STATUS=action]` items left out.
fn services(line: &str) -> Vec<&str> {
    let Some((_, rest)) = line.split_once(':') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut in_action = false;
    for word in rest.split_whitespace() {
        if word.starts_with('[') {
            in_action = !word.ends_with(']');
            continue;
        }
        if in_action {
            in_action = !word.ends_with(']');
            continue;
        }
        out.push(word);
    }
    out
}

/// The root's nsswitch.conf with daemon-backed services removed from each line.
pub fn image_nsswitch(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let content = line.split('#').next().unwrap_or("");
        let Some((database, rest)) = content.split_once(':') else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let kept: Vec<&str> = rest
            .split_whitespace()
            .filter(|word| !DAEMON_SERVICES.contains(word))
            .collect();
        // An action right after a removed service would now bind to another one;
        // `[NOTFOUND=return]` after `files` is the common case and stays correct.
        let kept = if kept.iter().all(|w| w.starts_with('[')) {
            vec!["files"]
        } else {
            kept
        };
        // Align like Debian's file: the services start in column 17.
        let pad = 16usize.saturating_sub(database.len() + 1).max(1);
        out.push_str(&format!(
            "{database}:{}{}\n",
            " ".repeat(pad),
            kept.join(" ")
        ));
    }
    out
}

/// The image's nsswitch.conf and the modules of the services it names.
pub fn additions(view: &PlanView, symbols: &mut SymbolCache) -> Result<Vec<Addition>, ExtraError> {
    let (text, reason) = match view.read_config(NSSWITCH)? {
        Some(text) => (
            image_nsswitch(&text),
            "NSS configuration: the root's, without daemon-backed services".to_string(),
        ),
        None => (
            DEFAULT_NSSWITCH.to_string(),
            "NSS configuration: glibc defaults".to_string(),
        ),
    };
    let libc = view.libc_path();
    let builtin = libc
        .as_ref()
        .and_then(|libc| view.root.resolve(libc).ok())
        .is_some_and(|libc| {
            let exports = &symbols.get(&libc).exports;
            exports.contains("_nss_files_getpwnam_r")
        });
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let content = line.split('#').next().unwrap_or("");
        for service in services(content) {
            if builtin && (service == "files" || service == "dns") {
                continue;
            }
            if !names.iter().any(|n| n == service) {
                names.push(service.to_string());
            }
        }
    }
    let mut additions = vec![Addition::generated(
        NSSWITCH,
        text.into_bytes(),
        0o644,
        reason,
    )];
    // Modules are only loaded by a dynamically linked libc.
    if libc.is_none() {
        return Ok(additions);
    }
    for service in names {
        let module = format!("libnss_{service}.so.2");
        // A service whose module is not installed is skipped by libc too.
        if let Some(path) = view.find_beside_libc(&module) {
            additions.push(Addition::elf(
                path,
                format!("NSS module for service `{service}`"),
            ));
        }
    }
    Ok(additions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_services_are_dropped_and_actions_skipped() {
        let text = "# comment\npasswd:         files systemd\nhosts: files [NOTFOUND=return] dns\nnetgroup: nis\n";
        let image = image_nsswitch(text);
        assert!(image.contains("passwd:         files\n"), "{image}");
        assert!(image.contains("[NOTFOUND=return] dns"));
        assert!(!image.contains("systemd"));
        assert_eq!(
            services("hosts: files [NOTFOUND=return] dns"),
            ["files", "dns"]
        );
        assert_eq!(services("passwd: systemd"), ["systemd"]);
        assert!(image_nsswitch("passwd: systemd\n").contains("passwd:"));
        assert!(image_nsswitch("passwd: systemd\n").ends_with("files\n"));
    }
}

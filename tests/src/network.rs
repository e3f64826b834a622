//! Support for the `launch --net` end-to-end tests: busybox images with the network
//! applets, and scenarios run whole inside a throwaway network namespace.
//!
//! Network safety: every bridged launch, its bridge, veths and NAT rules live in a
//! network namespace the scenario makes (`unshare --net`), with a private /run (so
//! the launcher's leases and any `ip netns add` stay inside too). The namespace dies
//! with the scenario's last process; nothing is sent outside it.

use std::os::unix::fs::symlink;
use std::process::{Command, Output, Stdio};

use crate::launch::{launch_bin, BusyboxImage};

/// A busybox image with nc, wget and friends besides the usual applets.
pub fn network_image() -> BusyboxImage {
    let image = BusyboxImage::new();
    let bin = image.root().join("bin");
    for applet in ["nc", "wget", "seq", "sort", "uniq", "printf", "tr"] {
        let _ = symlink("busybox", bin.join(applet));
    }
    image
}

/// Runs the shell `script` in a new network and mount namespace with `lo` up and a
/// tmpfs on /run. `$LAUNCH` is the launch binary and `$IMAGE` the image directory.
pub fn in_throwaway_network(image: &BusyboxImage, script: &str) -> Output {
    let prologue = "set -u; mount -t tmpfs tmpfs /run && ip link set lo up || exit 99\n";
    Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .args(["/bin/sh", "-c", &format!("{prologue}{script}")])
        .env("LAUNCH", launch_bin())
        .env("IMAGE", image.root())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare")
}

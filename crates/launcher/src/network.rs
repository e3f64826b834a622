//! The container's network namespace, in one of four modes (`--net`):
//!
//! - `none` (default): a namespace of its own with only `lo`, up. Done with one ioctl
//!   on a throwaway socket (no `ip` program, no netlink conversation).
//! - `host`: the host's namespace, shared (no CLONE_NEWNET).
//! - `bridge`: a namespace of its own joined to a host bridge ([`bridge`]): a veth
//!   pair, an address of the bridge's subnet ([`address_lease`]), a default route,
//!   NAT out and published ports ([`nat`], [`ports`]). Needs root.
//! - `ns:PATH` or `ns:NAME`: an existing namespace (`ip netns add NAME` makes
//!   /run/netns/NAME), entered by the launcher just for the clone.
//!
//! Making a network namespace is the costliest step of a launch (every protocol
//! registers its per-namespace state). For `none` without a user namespace, the
//! launcher makes it itself, on the other CPU, while the container builds its mounts,
//! and the container joins it ([`create_for_container`], [`join_launchers`]). In a
//! user namespace the container must own its network namespace, so it comes with the
//! clone. The kernel is spoken to through netlink ([`links`], [`nat`]) only for
//! `bridge`, so the other modes pay nothing for it.

pub mod address_lease;
pub mod bridge;
mod links;
mod nat;
mod netlink;
pub mod ports;

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;

use address_lease::Subnet;
use ports::PublishedPort;

use crate::error::LaunchError;

/// `--net`: where the container's network comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    #[default]
    None,
    Host,
    Bridge,
    /// An existing network namespace, by its path.
    Namespace(PathBuf),
}

impl FromStr for NetworkMode {
    type Err = LaunchError;

    fn from_str(text: &str) -> Result<NetworkMode, LaunchError> {
        match text {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "bridge" => Ok(NetworkMode::Bridge),
            _ => match text.strip_prefix("ns:") {
                Some(path) if path.contains('/') => Ok(NetworkMode::Namespace(path.into())),
                Some(name) if !name.is_empty() && name != "." && name != ".." => {
                    Ok(NetworkMode::Namespace(PathBuf::from("/run/netns").join(name)))
                }
                _ => Err(LaunchError::Invalid(format!(
                    "--net {text}: give none, host, bridge, or ns:PATH / ns:NAME of a network namespace"
                ))),
            },
        }
    }
}

/// The container's network, as asked for and checked.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    pub mode: NetworkMode,
    /// The bridge's subnet (`--subnet`, else $MKROOT_LAUNCH_SUBNET, else
    /// [`bridge::DEFAULT_SUBNET`]).
    pub subnet: Option<Subnet>,
    pub ports: Vec<PublishedPort>,
}

impl NetworkSpec {
    /// Checks the combination: bridge needs root; ports and a subnet need bridge.
    pub fn new(
        mode: NetworkMode,
        subnet: Option<Subnet>,
        ports: Vec<PublishedPort>,
        root: bool,
    ) -> Result<NetworkSpec, LaunchError> {
        if mode != NetworkMode::Bridge {
            if let Some(port) = ports.first() {
                return Err(LaunchError::Invalid(format!(
                    "-p {}:{}: publishing a port needs --net bridge",
                    port.host, port.container
                )));
            }
            if let Some(subnet) = subnet {
                return Err(LaunchError::Invalid(format!(
                    "--subnet {subnet}: a subnet is for --net bridge"
                )));
            }
            return Ok(NetworkSpec {
                mode,
                subnet: None,
                ports,
            });
        }
        if !root {
            return Err(LaunchError::Invalid(
                "--net bridge needs root (it makes a bridge, veth devices and NAT rules on the host); run launch as root, or use --net host or none".to_string(),
            ));
        }
        let subnet = match (subnet, std::env::var("MKROOT_LAUNCH_SUBNET")) {
            (Some(subnet), _) => subnet,
            (None, Ok(text)) => text.parse().map_err(|_| {
                LaunchError::Invalid(format!(
                    "MKROOT_LAUNCH_SUBNET={text}: give an IPv4 ADDRESS/PREFIX (prefix 8 to 29) such as 10.47.0.0/16"
                ))
            })?,
            (None, Err(_)) => bridge::DEFAULT_SUBNET.parse()?,
        };
        Ok(NetworkSpec {
            mode,
            subnet: Some(subnet),
            ports,
        })
    }

    /// Who makes the container's network namespace, for a container with a user
    /// namespace (`in_userns`) or without.
    pub fn source(&self, in_userns: bool) -> NamespaceSource {
        match (&self.mode, in_userns) {
            (NetworkMode::None, false) => NamespaceSource::Launcher,
            (NetworkMode::None, true) => NamespaceSource::Clone,
            (NetworkMode::Bridge, _) => NamespaceSource::CloneThenBridge,
            (NetworkMode::Host, _) | (NetworkMode::Namespace(_), _) => NamespaceSource::Inherited,
        }
    }
}

/// Where the container's network namespace comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceSource {
    /// The launcher makes it in parallel; the container joins it.
    Launcher,
    /// The clone makes it (CLONE_NEWNET); the container brings `lo` up.
    Clone,
    /// The clone makes it; the launcher joins it to the bridge meanwhile.
    CloneThenBridge,
    /// The container stays in the launcher's (the host's, or the one it entered for
    /// the clone with [`enter_for_clone`]).
    Inherited,
}

impl NamespaceSource {
    /// Whether the clone makes a new network namespace.
    pub fn with_clone(self) -> bool {
        matches!(
            self,
            NamespaceSource::Clone | NamespaceSource::CloneThenBridge
        )
    }

    /// Whether the container waits for the launcher's go-ahead for the network.
    pub fn launcher_prepares(self) -> bool {
        matches!(
            self,
            NamespaceSource::Launcher | NamespaceSource::CloneThenBridge
        )
    }
}

/// What the container's /etc/hosts and /etc/resolv.conf say about the network.
#[derive(Debug, Clone)]
pub struct NameFiles {
    /// The container's own address (bridge), else 127.0.1.1 names it.
    pub address: Option<Ipv4Addr>,
    pub resolv_conf: String,
}

/// The launcher's steps before the clone: the bridge address leased (the bridge made
/// on first use), and what the container's name files say.
pub fn prepare(
    spec: &NetworkSpec,
) -> Result<(Option<bridge::Reservation>, NameFiles), LaunchError> {
    let host_resolv = || std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    Ok(match (&spec.mode, spec.subnet) {
        (NetworkMode::Bridge, Some(subnet)) => {
            let reservation = bridge::reserve(&subnet, &spec.ports)?;
            let files = NameFiles {
                address: Some(reservation.address()),
                resolv_conf: without_loopback_servers(&host_resolv()),
            };
            (Some(reservation), files)
        }
        (NetworkMode::Host | NetworkMode::Namespace(_), _) => (
            None,
            NameFiles {
                address: None,
                resolv_conf: host_resolv(),
            },
        ),
        _ => (
            None,
            NameFiles {
                address: None,
                resolv_conf:
                    "# written by launch: the container has loopback only, no name server\n"
                        .to_string(),
            },
        ),
    })
}

/// The host's resolv.conf without name servers on its loopback (a local resolver such
/// as systemd-resolved's 127.0.0.53), which the container cannot reach.
fn without_loopback_servers(resolv_conf: &str) -> String {
    let mut kept = String::from("# written by launch: the host's, without loopback name servers\n");
    for line in resolv_conf.lines() {
        let server = line.trim().strip_prefix("nameserver").map(str::trim);
        let loopback = server
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if !loopback {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// `--net ns:PATH`: moves the launcher into that namespace for the clone, so the
/// container starts in it (the kernel lets a process in a new user namespace keep
/// its network namespace, not enter one). The launcher goes back when the returned
/// value is dropped; the clone never drops it (the child does not return).
pub fn enter_for_clone(spec: &NetworkSpec) -> Result<Option<ReturnToHost>, LaunchError> {
    let NetworkMode::Namespace(path) = &spec.mode else {
        return Ok(None);
    };
    let fail = |e: std::io::Error| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => ": joining a network namespace needs root",
            Some(libc::ENOENT) => ": no such namespace (`ip netns add NAME` makes one)",
            Some(libc::EINVAL) => ": not a network namespace",
            _ => "",
        };
        LaunchError::Invalid(format!("--net ns:{}: {e}{hint}", path.display()))
    };
    let host = enter_namespace(path).map_err(fail)?;
    Ok(Some(ReturnToHost(host)))
}

/// The launcher's own network namespace, entered again on drop.
pub struct ReturnToHost(OwnedFd);

impl Drop for ReturnToHost {
    fn drop(&mut self) {
        // Staying in the other namespace would only affect the launcher, which makes
        // no connection; the bridge path never runs with this value alive.
        let _ = set_namespace(&self.0);
    }
}

/// Moves the calling thread into the network namespace at `path` (`/proc/PID/ns/net`,
/// a bind mount of one); returns the one it was in, to go back to.
pub(crate) fn enter_namespace(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let ours = open_namespace(std::path::Path::new("/proc/self/ns/net"))?;
    set_namespace(&open_namespace(path)?)?;
    Ok(ours)
}

/// A network namespace file (`/proc/PID/ns/net`, a bind mount of one), opened.
pub(crate) fn open_namespace(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    let file = std::fs::File::open(path)?;
    Ok(OwnedFd::from(file))
}

/// Moves the calling thread into the network namespace `ns`.
pub(crate) fn set_namespace(ns: &OwnedFd) -> std::io::Result<()> {
    // The kernel checks that the fd is a network namespace.
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// The launcher's side: moves the launcher into a new network namespace with `lo` up,
/// for the container to join. The launcher itself has no use for the network after
/// this point.
pub fn create_for_container() -> Result<(), LaunchError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| LaunchError::setup("creating the network namespace", e.into()))?;
    bring_up_loopback()
}

/// The container's side: joins the network namespace the launcher (`launcher`, its PID
/// on the host) made with [`create_for_container`]. Called while the host's /proc is
/// still reachable, before pivot_root.
pub fn join_launchers(launcher: libc::pid_t) -> Result<(), LaunchError> {
    let path = std::path::PathBuf::from(format!("/proc/{launcher}/ns/net"));
    open_namespace(&path)
        .and_then(|ns| set_namespace(&ns))
        .map_err(|e| LaunchError::setup("joining the network namespace", e))
}

/// Brings `lo` up in the current (new, empty) network namespace.
pub fn bring_up_loopback() -> Result<(), LaunchError> {
    mkroot_common::loopback::bring_up().map_err(|e| LaunchError::setup("bringing up lo", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("none".parse::<NetworkMode>().unwrap(), NetworkMode::None);
        assert_eq!("host".parse::<NetworkMode>().unwrap(), NetworkMode::Host);
        assert_eq!(
            "bridge".parse::<NetworkMode>().unwrap(),
            NetworkMode::Bridge
        );
        assert_eq!(
            "ns:blue".parse::<NetworkMode>().unwrap(),
            NetworkMode::Namespace("/run/netns/blue".into())
        );
        assert_eq!(
            "ns:/tmp/x/net".parse::<NetworkMode>().unwrap(),
            NetworkMode::Namespace("/tmp/x/net".into())
        );
        for bad in ["", "ns:", "ns:..", "bridged"] {
            assert!(bad.parse::<NetworkMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bridge_needs_root_and_ports_need_bridge() {
        let port: PublishedPort = "80:80".parse().unwrap();
        assert!(NetworkSpec::new(NetworkMode::Bridge, None, vec![], false).is_err());
        assert!(NetworkSpec::new(NetworkMode::Host, None, vec![port], true).is_err());
        let spec = NetworkSpec::new(NetworkMode::Bridge, None, vec![port], true).unwrap();
        assert!(spec.subnet.is_some());
        assert!(NetworkSpec::new(NetworkMode::None, None, vec![], false).is_ok());
    }

    #[test]
    fn loopback_name_servers_are_dropped_for_the_bridge() {
        let out =
            without_loopback_servers("nameserver 127.0.0.53\nnameserver 9.9.9.9\nsearch lan\n");
        assert!(!out.contains("127.0.0.53"));
        assert!(out.contains("nameserver 9.9.9.9\nsearch lan\n"));
    }
}

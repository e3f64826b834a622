//! `--net bridge`: the container joins a host bridge through a veth pair, with an
//! address of the bridge's subnet, a default route through the bridge and NAT out.
//!
//! The bridge (`mkroot0`) is made by the first bridged launch and removed by the last
//! one to leave. After a launcher is killed with SIGKILL its veth dies with the
//! container's namespace and its NAT table with its netlink socket (see [`super::nat`]);
//! its lease is stale and reclaimed by the next launch, and the bridge stays until
//! the next bridged launch ends.
//!
//! What stays on the host by choice: `net.ipv4.ip_forward` is set to 1 when the
//! bridge is made and left so (other users of the host's routing may rely on it by
//! then), as docker does. What is not done: a connection from one container to
//! another's published port on the host's address is not masqueraded back (no
//! hairpin NAT; containers reach each other on the bridge directly), and a host
//! firewall whose forward policy drops packets blocks the containers' outbound
//! traffic (launch adds no filter rules).

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::address_lease::{self, AddressLease, PortClaim, StateLock, Subnet};
use super::links::{self, Links};
use super::nat::NatTable;
use super::ports::PublishedPort;
use super::{enter_namespace, set_namespace};
use crate::error::LaunchError;

/// The host bridge all bridged containers join.
pub const BRIDGE: &str = "mkroot0";
/// The container's end of its veth pair.
const CONTAINER_DEVICE: &str = "eth0";
/// Leases and the bridge's subnet; /run is a tmpfs, so a reboot, which removes the
/// bridge, also forgets them.
const STATE_DIR: &str = "/run/mkroot-launch/net";
/// Not docker's 172.17.0.0/16 (nor its 172.18-31 pools) nor podman's 10.88.0.0/16.
pub const DEFAULT_SUBNET: &str = "10.47.0.0/16";

/// An address (and the published host ports) reserved on the bridge, made if
/// missing, before the container exists. Dropping it gives them back and removes the
/// bridge if no other container is on it.
pub struct Reservation {
    lease: Option<AddressLease>,
    ports: Vec<PortClaim>,
    subnet: Subnet,
    bridge: u32,
}

impl Reservation {
    pub fn address(&self) -> Ipv4Addr {
        self.lease.as_ref().expect("held until drop").address
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let state = Path::new(STATE_DIR);
        let Ok(lock) = StateLock::acquire(state) else {
            return;
        };
        if let Some(lease) = self.lease.take() {
            lease.give_back(&lock);
        }
        for claim in self.ports.drain(..) {
            claim.give_back(&lock);
        }
        if let Ok(false) = address_lease::any_held(state, &lock) {
            if let (Some(index), Ok(mut links)) = (links::index_of(BRIDGE), Links::open()) {
                let _ = links.delete(index);
            }
            let _ = std::fs::remove_file(state.join("subnet"));
        }
    }
}

/// Makes the bridge if it is missing, leases an address on it and claims the host
/// ports to publish.
pub fn reserve(subnet: &Subnet, ports: &[PublishedPort]) -> Result<Reservation, LaunchError> {
    let fail = |step: &str, e| LaunchError::setup(format!("--net bridge: {step}"), e);
    let state = Path::new(STATE_DIR);
    let lock = StateLock::acquire(state).map_err(|e| fail(STATE_DIR, e))?;
    let subnet_file = state.join("subnet");
    let bridge = match links::index_of(BRIDGE) {
        Some(index) => {
            let recorded = std::fs::read_to_string(&subnet_file).unwrap_or_default();
            if !recorded.trim().is_empty() && recorded.trim() != subnet.to_string() {
                return Err(LaunchError::Invalid(format!(
                    "--subnet {subnet}: bridge {BRIDGE} is in use with subnet {}; give that subnet or wait until its containers end",
                    recorded.trim()
                )));
            }
            index
        }
        None => {
            let index = make_bridge(subnet).map_err(|e| {
                // A half-made bridge (no address, down) is no use to the next launch.
                if let (Some(index), Ok(mut links)) = (links::index_of(BRIDGE), Links::open()) {
                    let _ = links.delete(index);
                }
                fail("making bridge mkroot0", e)
            })?;
            std::fs::write(&subnet_file, format!("{subnet}\n")).map_err(|e| fail(STATE_DIR, e))?;
            index
        }
    };
    let lease =
        AddressLease::take(state, subnet, &lock).map_err(|e| fail("leasing an address", e))?;
    let mut claims = Vec::new();
    for port in ports {
        let name = format!("{}-{}", port.protocol.name(), port.host);
        let refusal = match PortClaim::take(state, &name, &lock) {
            Ok(Some(claim)) => {
                claims.push(claim);
                continue;
            }
            Ok(None) => LaunchError::Invalid(format!(
                "-p {}:{}/{}: host port {} is already published by another container",
                port.host,
                port.container,
                port.protocol.name(),
                port.host
            )),
            Err(e) => fail("claiming a host port", e),
        };
        lease.give_back(&lock);
        claims.into_iter().for_each(|c| c.give_back(&lock));
        return Err(refusal);
    }
    drop(lock);
    Ok(Reservation {
        lease: Some(lease),
        ports: claims,
        subnet: *subnet,
        bridge,
    })
}

fn make_bridge(subnet: &Subnet) -> io::Result<u32> {
    let mut links = Links::open()?;
    links.add_bridge(BRIDGE)?;
    let index =
        links::index_of(BRIDGE).ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
    links.add_address(index, subnet.gateway(), subnet.prefix)?;
    links.set_up(index)?;
    // Routing between the bridge and the host's other devices, for NAT out.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    // Published ports answer on the host's loopback too: DNAT sends such packets out
    // through the bridge with a 127.0.0.0/8 source, which the kernel drops elsewhere.
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet"),
        "1",
    )?;
    Ok(index)
}

/// A container joined to the bridge; undone on drop (the reservation last).
pub struct Attachment {
    nat: Option<NatTable>,
    host_end: String,
    _reservation: Reservation,
}

/// Joins `container` (its init's PID on the host) to the bridge with the reserved
/// address, and publishes `ports`.
pub fn attach(
    reservation: Reservation,
    container: libc::pid_t,
    ports: &[PublishedPort],
) -> Result<Attachment, LaunchError> {
    let fail = |step: &str, e| LaunchError::setup(format!("--net bridge: {step}"), e);
    let (address, subnet, bridge) = (
        reservation.address(),
        reservation.subnet,
        reservation.bridge,
    );
    let host_end = format!("mkr{}", std::process::id());
    let mut attachment = Attachment {
        nat: None,
        host_end: host_end.clone(),
        _reservation: reservation,
    };
    let mut links = Links::open().map_err(|e| fail("rtnetlink", e))?;
    links
        .add_veth(&host_end, bridge, CONTAINER_DEVICE, container)
        .map_err(|e| fail("making the veth pair", e))?;
    in_network_of(container, || {
        let mut inside = Links::open()?;
        let lo = links::index_of("lo").ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        inside.set_up(lo)?;
        let eth0 = links::index_of(CONTAINER_DEVICE)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        inside.add_address(eth0, address, subnet.prefix)?;
        inside.set_up(eth0)?;
        inside.add_default_route(subnet.gateway())
    })
    .map_err(|e| fail("configuring the container's eth0", e))?;
    let table = format!("mkroot-launch-{}", std::process::id());
    attachment.nat = Some(
        NatTable::create(&table, address, bridge, ports)
            .map_err(|e| fail("adding NAT rules (nf_tables)", e))?,
    );
    Ok(attachment)
}

impl Drop for Attachment {
    fn drop(&mut self) {
        drop(self.nat.take());
        // The veth would die with the container's namespace; deleting it now means it
        // is gone when `launch` returns, not some RCU grace periods later.
        if let (Some(index), Ok(mut links)) = (links::index_of(&self.host_end), Links::open()) {
            let _ = links.delete(index);
        }
    }
}

/// Runs `work` in the network namespace of process `pid`, then returns to ours. The
/// sockets `work` opens stay in that namespace.
fn in_network_of<T>(pid: libc::pid_t, work: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let ours = enter_namespace(&PathBuf::from(format!("/proc/{pid}/ns/net")))?;
    let result = work();
    // Failing to come back would leave the launcher in the container's network.
    set_namespace(&ours).expect("returning to the launcher's network namespace");
    result
}

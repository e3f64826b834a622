//! Container addresses on the bridge, handed out without collision by concurrent
//! launchers: one lease file per address under the state directory, held with
//! `flock` for as long as the launcher lives.
//!
//! The kernel drops a dead process's locks, so a lease file nobody holds locked is a
//! stale one (its launcher was killed) and is taken or removed by the next launcher.
//! Taking and giving back happen under the state directory's lock, so a lease file is
//! never removed while another launcher is about to lock it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::LaunchError;
use crate::file_lock;

/// An IPv4 subnet, `ADDRESS/PREFIX`, with room for a gateway and containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// The bridge's own address: the first in the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The addresses containers may get: from the second to the one before broadcast.
    pub fn container_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | (u32::MAX >> self.prefix);
        (first..broadcast).map(Ipv4Addr::from)
    }
}

impl FromStr for Subnet {
    type Err = LaunchError;

    fn from_str(text: &str) -> Result<Subnet, LaunchError> {
        let bad = |why: &str| {
            LaunchError::Invalid(format!(
                "--subnet {text}: {why}; give an IPv4 ADDRESS/PREFIX such as 10.47.0.0/16"
            ))
        };
        let (address, prefix) = text.split_once('/').ok_or_else(|| bad("no /PREFIX"))?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("not a prefix length"))?;
        if !(8..=29).contains(&prefix) {
            return Err(bad("the prefix must be 8 to 29"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(address) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The state directory's lock, held while leases are taken or given back and while
/// the bridge is made or removed.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state: &Path) -> io::Result<StateLock> {
        std::fs::create_dir_all(state.join("leases"))?;
        let file = file_lock::lock_file(&state.join("lock"))?;
        Ok(StateLock { _file: file })
    }
}

/// One address, ours while this value (and its locked file) lives.
pub struct AddressLease {
    pub address: Ipv4Addr,
    file: LeaseFile,
}

impl AddressLease {
    /// Takes the lowest free address of `subnet`, and removes the stale leases met.
    pub fn take(state: &Path, subnet: &Subnet, _lock: &StateLock) -> io::Result<AddressLease> {
        let leases = state.join("leases");
        for address in subnet.container_addresses() {
            if let Some(file) = LeaseFile::try_take(leases.join(address.to_string()))? {
                remove_stale(&leases, &file.path)?;
                return Ok(AddressLease { address, file });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("every address of {subnet} is taken"),
        ))
    }

    /// Gives the address back.
    pub fn give_back(self, _lock: &StateLock) {
        self.file.remove();
    }
}

/// A published host port (`ports/tcp-8080`), so that two containers cannot publish
/// the same one (the second DNAT rule would be shadowed without a word).
pub struct PortClaim {
    file: LeaseFile,
}

impl PortClaim {
    /// Claims `name`; `None` when a live launcher holds it.
    pub fn take(state: &Path, name: &str, _lock: &StateLock) -> io::Result<Option<PortClaim>> {
        let ports = state.join("ports");
        std::fs::create_dir_all(&ports)?;
        Ok(LeaseFile::try_take(ports.join(name))?.map(|file| PortClaim { file }))
    }

    pub fn give_back(self, _lock: &StateLock) {
        self.file.remove();
    }
}

/// A file held locked by its launcher for as long as the lease lasts.
struct LeaseFile {
    path: PathBuf,
    _file: File,
}

impl LeaseFile {
    /// Opens (or makes) `path` and locks it, unless a live launcher holds it. A file
    /// nobody holds is stale: its launcher died, and it is ours now.
    fn try_take(path: PathBuf) -> io::Result<Option<LeaseFile>> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        if !file_lock::try_lock(&file, libc::LOCK_EX)? {
            return Ok(None);
        }
        file.set_len(0)?;
        // For people reading the directory: whose lease this is.
        writeln!(file, "{}", std::process::id())?;
        Ok(Some(LeaseFile { path, _file: file }))
    }

    /// The file goes before its lock is dropped (under the state lock, so nobody
    /// opened it meanwhile).
    fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether any launcher still holds a lease in `state` (stale leases are removed).
pub fn any_held(state: &Path, _lock: &StateLock) -> io::Result<bool> {
    let leases = state.join("leases");
    remove_stale(&leases, Path::new(""))?;
    Ok(std::fs::read_dir(&leases)?.next().is_some())
}

/// Removes every lease file in `leases` but `keep` that nobody holds locked.
fn remove_stale(leases: &Path, keep: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(leases)? {
        let path = entry?.path();
        if path == keep {
            continue;
        }
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if file_lock::try_lock(&file, libc::LOCK_EX)? {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_give_gateway_and_addresses() {
        let subnet: Subnet = "10.47.3.9/24".parse().unwrap();
        assert_eq!(subnet.to_string(), "10.47.3.0/24");
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 47, 3, 1));
        let all: Vec<_> = subnet.container_addresses().collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all[0], Ipv4Addr::new(10, 47, 3, 2));
        assert_eq!(all[252], Ipv4Addr::new(10, 47, 3, 254));
        for bad in [
            "10.47.0.0",
            "10.47.0.0/33",
            "10.47.0.0/30",
            "x/16",
            "10.47.0/16",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn leases_are_distinct_reused_once_given_back_and_reclaimed_when_stale() {
        let state = tempfile::tempdir().unwrap();
        let subnet: Subnet = "10.1.0.0/29".parse().unwrap();
        let lock = StateLock::acquire(state.path()).unwrap();
        let a = AddressLease::take(state.path(), &subnet, &lock).unwrap();
        let b = AddressLease::take(state.path(), &subnet, &lock).unwrap();
        assert_ne!(a.address, b.address);
        let a_address = a.address;
        a.give_back(&lock);
        let c = AddressLease::take(state.path(), &subnet, &lock).unwrap();
        assert_eq!(c.address, a_address);
        // A lease whose holder died: its file is there, unlocked.
        std::fs::write(state.path().join("leases/10.1.0.9"), "1\n").unwrap();
        assert!(any_held(state.path(), &lock).unwrap());
        assert!(!state.path().join("leases/10.1.0.9").exists());
        b.give_back(&lock);
        c.give_back(&lock);
        assert!(!any_held(state.path(), &lock).unwrap());
    }
}

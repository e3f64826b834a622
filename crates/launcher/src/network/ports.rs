//! `-p HOSTPORT:CONTAINERPORT[/tcp|udp]`: a port of the host forwarded to the container.

use std::str::FromStr;

use crate::error::LaunchError;

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IP protocol number, as the packet carries it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

/// A host port whose traffic goes to a port of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedPort {
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

impl FromStr for PublishedPort {
    type Err = LaunchError;

    fn from_str(text: &str) -> Result<PublishedPort, LaunchError> {
        let bad = || {
            LaunchError::Invalid(format!(
                "-p {text}: give HOSTPORT:CONTAINERPORT[/tcp|udp], ports 1-65535"
            ))
        };
        let (ports, protocol) = match text.split_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (text, Protocol::Tcp),
        };
        let (host, container) = ports.split_once(':').ok_or_else(bad)?;
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        Ok(PublishedPort {
            host: port(host)?,
            container: port(container)?,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_with_tcp_as_default() {
        let p: PublishedPort = "8080:80".parse().unwrap();
        assert_eq!((p.host, p.container, p.protocol), (8080, 80, Protocol::Tcp));
        let p: PublishedPort = "53:5353/udp".parse().unwrap();
        assert_eq!((p.host, p.container, p.protocol), (53, 5353, Protocol::Udp));
        for bad in ["80", "0:80", "80:70000", "80:80/sctp", "a:b", ""] {
            assert!(bad.parse::<PublishedPort>().is_err(), "{bad}");
        }
    }
}

//! A netlink socket that sends requests and waits for the kernel's answers (acks or
//! errors), with no async runtime: the launcher talks to the kernel one request at a
//! time. Used for both rtnetlink ([`super::links`]) and nf_tables ([`super::nat`]).

use std::io;

use netlink_packet_core::{NetlinkBuffer, NLMSG_DONE, NLMSG_ERROR};
use netlink_sys::Socket;

/// The length of the header every netlink message starts with (`struct nlmsghdr`).
pub const HEADER_LEN: usize = 16;

/// One netlink socket, bound to the network namespace the caller was in when it was
/// opened (the kernel ties a socket to its namespace for life).
pub struct NetlinkSocket {
    socket: Socket,
    sequence: u32,
}

impl NetlinkSocket {
    pub fn open(protocol: libc::c_int) -> io::Result<NetlinkSocket> {
        let mut socket = Socket::new(protocol as isize)?;
        socket.bind_auto()?;
        Ok(NetlinkSocket {
            socket,
            sequence: 0,
        })
    }

    /// The next sequence number, for a message about to be sent.
    pub fn next_sequence(&mut self) -> u32 {
        self.sequence += 1;
        self.sequence
    }

    /// Sends `bytes` (one or more whole messages) and waits until the kernel has
    /// answered each sequence number in `awaited`: Ok once all are acked, or the first
    /// error. Answers to older requests still in the queue are skipped.
    pub fn send_and_wait(&mut self, bytes: &[u8], awaited: &[u32]) -> io::Result<()> {
        self.socket.send(bytes, 0)?;
        let mut pending: Vec<u32> = awaited.to_vec();
        while !pending.is_empty() {
            let (reply, _) = self.socket.recv_from_full()?;
            for (kind, sequence, payload) in messages(&reply) {
                if !pending.contains(&sequence) {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .unwrap_or(-libc::EPROTO);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        pending.retain(|&s| s != sequence);
                    }
                    NLMSG_DONE => pending.retain(|&s| s != sequence),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The messages in one datagram, as (type, sequence number, payload); a truncated or
/// malformed message ends the list.
fn messages(mut bytes: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while let Ok(message) = NetlinkBuffer::new_checked(bytes) {
        let len = message.length() as usize;
        if len < HEADER_LEN {
            break;
        }
        out.push((
            message.message_type(),
            message.sequence_number(),
            &bytes[HEADER_LEN..len],
        ));
        bytes = &bytes[align(len).min(bytes.len())..];
    }
    out
}

/// Netlink's 4-byte alignment.
pub fn align(len: usize) -> usize {
    (len + 3) & !3
}

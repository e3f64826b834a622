//! The container's NAT rules in nf_tables: masquerade for its outbound traffic and DNAT
//! for its published ports, in one table of its own.
//!
//! The table is made with `NFT_TABLE_F_OWNER`: the kernel ties it to the netlink socket
//! that made it and deletes it when that socket closes, so the rules go when the
//! launcher goes, even when it is killed with SIGKILL; no sweep is needed.
//!
//! Why hand-encoded messages: the maintained Rust nftables crates either wrap the C
//! library libnftnl (`nftnl`), are GPL-licensed (`rustables`), or run the `nft` program
//! (`nftables`, JSON). The few messages needed here (a table, three chains, a few rules
//! of fixed shape) are plain netlink attributes, encoded below against the kernel's
//! uapi `linux/netfilter/nf_tables.h`.
//!
//! Published ports are DNAT rules, not a userspace proxy: the kernel forwards without a
//! copy through the launcher, UDP works the same as TCP, and the container sees the
//! client's own address (except for connections from the host's loopback, which are
//! masqueraded, as the bridge must not carry 127.0.0.0/8 source addresses back).

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};

use super::netlink::{self, NetlinkSocket};
use super::ports::PublishedPort;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;
const NFT_TABLE_F_OWNER: u32 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;

/// Netfilter hooks (`enum nf_inet_hooks`).
const HOOK_PREROUTING: u32 = 0;
const HOOK_OUTPUT: u32 = 3;
const HOOK_POSTROUTING: u32 = 4;

/// The 16-byte registers expressions load into and compare from.
const REG_1: u32 = 1;
const REG_2: u32 = 2;

/// One container's NAT table; the rules live as long as this value (or the process).
pub struct NatTable {
    socket: NetlinkSocket,
    name: String,
}

impl NatTable {
    /// Makes table `name` in the caller's network namespace: `container` masqueraded
    /// when it leaves through any device but `bridge`, and each of `ports` forwarded
    /// from the host's local addresses (loopback included) to `container`.
    pub fn create(
        name: &str,
        container: Ipv4Addr,
        bridge: u32,
        ports: &[PublishedPort],
    ) -> io::Result<NatTable> {
        let mut socket = NetlinkSocket::open(libc::NETLINK_NETFILTER)?;
        let mut batch = Batch::new(&mut socket);
        batch.add(NFT_MSG_NEWTABLE, NLM_F_CREATE, |a| {
            a.string(1, name); // NFTA_TABLE_NAME
            a.be32(2, NFT_TABLE_F_OWNER); // NFTA_TABLE_FLAGS
        });
        batch.chain(name, "postrouting", HOOK_POSTROUTING, 100);
        // ip saddr CONTAINER oif != BRIDGE masquerade
        batch.rule(
            name,
            "postrouting",
            &[
                load_network_header(12, 4),
                compare(CMP_EQ, &container.octets()),
                meta(META_OIF),
                compare(CMP_NEQ, &bridge.to_ne_bytes()),
                expression("masq", |_| {}),
            ],
        );
        if !ports.is_empty() {
            batch.chain(name, "prerouting", HOOK_PREROUTING, -100);
            batch.chain(name, "output", HOOK_OUTPUT, -100);
            // ip saddr 127.0.0.0/8 ip daddr CONTAINER masquerade
            batch.rule(
                name,
                "postrouting",
                &[
                    load_network_header(12, 1),
                    compare(CMP_EQ, &[127]),
                    load_network_header(16, 4),
                    compare(CMP_EQ, &container.octets()),
                    expression("masq", |_| {}),
                ],
            );
        }
        for port in ports {
            let rule = forward_port(port, container);
            batch.rule(name, "prerouting", &rule);
            batch.rule(name, "output", &rule);
        }
        batch.commit()?;
        Ok(NatTable {
            socket,
            name: name.to_string(),
        })
    }
}

impl Drop for NatTable {
    /// Deletes the table now rather than when the socket closes, so it is gone before
    /// the launcher reports the container's exit.
    fn drop(&mut self) {
        let mut batch = Batch::new(&mut self.socket);
        batch.add(NFT_MSG_DELTABLE, 0, |a| a.string(1, &self.name));
        let _ = batch.commit();
    }
}

/// `fib daddr type local meta l4proto PROTO th dport HOST dnat to CONTAINER:PORT`
fn forward_port(port: &PublishedPort, container: Ipv4Addr) -> Vec<Vec<u8>> {
    vec![
        expression("fib", |a| {
            a.be32(1, REG_1); // NFTA_FIB_DREG
            a.be32(2, 3); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
            a.be32(3, 1 << 1); // NFTA_FIB_FLAGS: NFTA_FIB_F_DADDR
        }),
        compare(CMP_EQ, &(libc::RTN_LOCAL as u32).to_ne_bytes()),
        meta(META_L4PROTO),
        compare(CMP_EQ, &[port.protocol.number()]),
        load(PAYLOAD_TRANSPORT_HEADER, 2, 2),
        compare(CMP_EQ, &port.host.to_be_bytes()),
        immediate(REG_1, &container.octets()),
        immediate(REG_2, &port.container.to_be_bytes()),
        expression("nat", |a| {
            a.be32(1, 1); // NFTA_NAT_TYPE: NFT_NAT_DNAT
            a.be32(2, NFPROTO_IPV4 as u32); // NFTA_NAT_FAMILY
            a.be32(3, REG_1); // NFTA_NAT_REG_ADDR_MIN
            a.be32(5, REG_2); // NFTA_NAT_REG_PROTO_MIN
        }),
    ]
}

const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const META_OIF: u32 = 5;
const META_L4PROTO: u32 = 16;
const PAYLOAD_NETWORK_HEADER: u32 = 1;
const PAYLOAD_TRANSPORT_HEADER: u32 = 2;

fn load_network_header(offset: u32, len: u32) -> Vec<u8> {
    load(PAYLOAD_NETWORK_HEADER, offset, len)
}

/// `payload load LEN bytes at OFFSET of BASE into REG_1`
fn load(base: u32, offset: u32, len: u32) -> Vec<u8> {
    expression("payload", |a| {
        a.be32(1, REG_1); // NFTA_PAYLOAD_DREG
        a.be32(2, base); // NFTA_PAYLOAD_BASE
        a.be32(3, offset); // NFTA_PAYLOAD_OFFSET
        a.be32(4, len); // NFTA_PAYLOAD_LEN
    })
}

/// `meta load KEY into REG_1`
fn meta(key: u32) -> Vec<u8> {
    expression("meta", |a| {
        a.be32(1, REG_1); // NFTA_META_DREG
        a.be32(2, key); // NFTA_META_KEY
    })
}

/// `cmp OP REG_1 VALUE`
fn compare(op: u32, value: &[u8]) -> Vec<u8> {
    expression("cmp", |a| {
        a.be32(1, REG_1); // NFTA_CMP_SREG
        a.be32(2, op); // NFTA_CMP_OP
        a.nest(3, |d| d.bytes(1, value)); // NFTA_CMP_DATA { NFTA_DATA_VALUE }
    })
}

/// `immediate REG = VALUE`
fn immediate(register: u32, value: &[u8]) -> Vec<u8> {
    expression("immediate", |a| {
        a.be32(1, register); // NFTA_IMMEDIATE_DREG
        a.nest(2, |d| d.bytes(1, value)); // NFTA_IMMEDIATE_DATA { NFTA_DATA_VALUE }
    })
}

/// One `NFTA_LIST_ELEM` of a rule: the expression's name and its attributes.
fn expression(name: &str, data: impl FnOnce(&mut Attributes)) -> Vec<u8> {
    let mut element = Attributes::default();
    element.nest(1, |e| {
        e.string(1, name); // NFTA_EXPR_NAME
        let mut inner = Attributes::default();
        data(&mut inner);
        if !inner.0.is_empty() {
            e.put(2 | NLA_F_NESTED, &inner.0); // NFTA_EXPR_DATA
        }
    });
    element.0
}

/// Netlink attributes, each a (length, type) header and a value padded to 4 bytes.
#[derive(Default)]
struct Attributes(Vec<u8>);

impl Attributes {
    fn put(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(netlink::align(self.0.len()), 0);
    }
    fn bytes(&mut self, kind: u16, value: &[u8]) {
        self.put(kind, value);
    }
    fn string(&mut self, kind: u16, value: &str) {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.put(kind, &bytes);
    }
    fn be32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }
    fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Attributes)) {
        let mut nested = Attributes::default();
        inner(&mut nested);
        self.put(kind | NLA_F_NESTED, &nested.0);
    }
}

/// An nf_tables transaction: the kernel applies all its messages or none.
struct Batch<'s> {
    socket: &'s mut NetlinkSocket,
    bytes: Vec<u8>,
    awaited: Vec<u32>,
}

impl<'s> Batch<'s> {
    fn new(socket: &'s mut NetlinkSocket) -> Batch<'s> {
        let mut batch = Batch {
            socket,
            bytes: Vec::new(),
            awaited: Vec::new(),
        };
        batch.message(NFNL_MSG_BATCH_BEGIN, 0, 0, |_| {});
        batch
    }

    /// An nf_tables message of type `kind`, acknowledged by the kernel.
    fn add(&mut self, kind: u16, flags: u16, attributes: impl FnOnce(&mut Attributes)) {
        let sequence = self.message(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NFPROTO_IPV4,
            NLM_F_ACK | flags,
            attributes,
        );
        self.awaited.push(sequence);
    }

    /// A base chain of type nat at `hook`.
    fn chain(&mut self, table: &str, name: &str, hook: u32, priority: i32) {
        self.add(NFT_MSG_NEWCHAIN, NLM_F_CREATE, |a| {
            a.string(1, table); // NFTA_CHAIN_TABLE
            a.string(3, name); // NFTA_CHAIN_NAME
            a.nest(4, |h| {
                h.be32(1, hook); // NFTA_HOOK_HOOKNUM
                h.be32(2, priority as u32); // NFTA_HOOK_PRIORITY
            });
            a.string(7, "nat"); // NFTA_CHAIN_TYPE
        });
    }

    fn rule(&mut self, table: &str, chain: &str, expressions: &[Vec<u8>]) {
        self.add(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, |a| {
            a.string(1, table); // NFTA_RULE_TABLE
            a.string(2, chain); // NFTA_RULE_CHAIN
            a.put(4 | NLA_F_NESTED, &expressions.concat()); // NFTA_RULE_EXPRESSIONS
        });
    }

    /// Appends one message (header, `struct nfgenmsg`, attributes); returns its
    /// sequence number.
    fn message(
        &mut self,
        kind: u16,
        family: u8,
        flags: u16,
        attributes: impl FnOnce(&mut Attributes),
    ) -> u32 {
        let mut body = Attributes::default();
        attributes(&mut body);
        let sequence = self.socket.next_sequence();
        let len = netlink::HEADER_LEN + 4 + body.0.len();
        let bytes = &mut self.bytes;
        bytes.extend_from_slice(&(len as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        // struct nfgenmsg: family, version, res_id (the subsystem, for batch messages).
        let batch_edge = kind == NFNL_MSG_BATCH_BEGIN || kind == NFNL_MSG_BATCH_END;
        let resource: u16 = if batch_edge { NFNL_SUBSYS_NFTABLES } else { 0 };
        bytes.extend_from_slice(&[family, 0]);
        bytes.extend_from_slice(&resource.to_be_bytes());
        bytes.extend_from_slice(&body.0);
        sequence
    }

    fn commit(mut self) -> io::Result<()> {
        self.message(NFNL_MSG_BATCH_END, 0, 0, |_| {});
        self.socket.send_and_wait(&self.bytes, &self.awaited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_length_type_value_padded_to_four_bytes() {
        let mut a = Attributes::default();
        a.string(1, "ab");
        a.be32(2, 0x0102_0304);
        let mut expected = Vec::new();
        expected.extend_from_slice(&7u16.to_ne_bytes());
        expected.extend_from_slice(&1u16.to_ne_bytes());
        expected.extend_from_slice(b"ab\0\0");
        expected.extend_from_slice(&8u16.to_ne_bytes());
        expected.extend_from_slice(&2u16.to_ne_bytes());
        expected.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(a.0, expected);
    }

    #[test]
    fn an_expression_without_data_has_only_its_name() {
        // NFTA_LIST_ELEM (nested) { NFTA_EXPR_NAME "masq" }
        let masq = expression("masq", |_| {});
        assert_eq!(masq.len(), 4 + 4 + 8);
        assert_eq!(u16::from_ne_bytes([masq[2], masq[3]]), 1 | NLA_F_NESTED);
        assert_eq!(&masq[8..13], b"masq\0");
    }
}

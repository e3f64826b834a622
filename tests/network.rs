//! End-to-end tests of `launch --net`: real containers on a real bridge, each
//! scenario inside a network namespace of its own (see `mkroot_e2e::network`). They
//! need root, iproute2's `ip` and nftables' `nft` (to see the rules from outside).

use std::process::Output;

use mkroot_e2e::launch::{describe, stdout, BusyboxImage, TestUser};
use mkroot_e2e::network::{in_throwaway_network, network_image};

/// What a scenario checks after its containers have ended: no link but lo, no
/// nf_tables rule, no lease; printed between markers for the test to compare.
const LEFTOVERS: &str = r#"
echo "links: $(ip -o link | cut -d: -f2 | tr -d ' \n')"
echo "rules: $(nft list ruleset | tr -d '\n')"
echo "leases: $(ls /run/mkroot-launch/net/leases 2>/dev/null | tr -d '\n')"
"#;

/// Runs the shell `script` in a throwaway network (see [`in_throwaway_network`]), then
/// [`LEFTOVERS`], for [`assert_nothing_left`] to check once the test has read the rest.
fn in_throwaway_network_listing_leftovers(image: &BusyboxImage, script: &str) -> Output {
    in_throwaway_network(image, &format!("{script}{LEFTOVERS}"))
}

/// The scenario printed `expected` (whole lines, newline included); fails the test with
/// all of the output otherwise.
#[track_caller]
fn assert_printed(out: &Output, expected: &str) {
    assert!(stdout(out).contains(expected), "{}", describe(out));
}

/// The scenario's [`LEFTOVERS`] show no link but lo, no nf_tables rule and no lease.
fn assert_nothing_left(out: &Output) {
    let text = stdout(out);
    assert!(text.contains("links: lo\n"), "only lo remains: {text}");
    assert!(
        text.contains("rules: \n"),
        "no nf_tables rule remains: {text}"
    );
    assert!(text.contains("leases: \n"), "no lease remains: {text}");
}

#[test]
fn two_containers_on_the_bridge_talk_over_tcp() {
    let image = network_image();
    let out = in_throwaway_network_listing_leftovers(
        &image,
        r#"
"$LAUNCH" --net bridge "$IMAGE" -- sh -c 'echo "pong from $(hostname)" | nc -l -p 7000' &
server=$!
# The server's address: its lease, once its NAT table shows it attached.
for i in $(seq 300); do [ "$(nft list tables | wc -l)" = 1 ] && break; sleep 0.1; done
address=$(ls /run/mkroot-launch/net/leases)
"$LAUNCH" --net bridge --hostname client -e "SERVER=$address" "$IMAGE" -- sh -c '
  for i in $(seq 300); do nc "$SERVER" 7000 </dev/null && exit 0; sleep 0.1; done; exit 1'
echo "client: $?"
kill $server 2>/dev/null
wait $server
echo "server: $?"
"#,
    );
    assert_printed(&out, "pong from");
    assert_printed(&out, "client: 0\n");
    assert_printed(&out, "server: 0\n");
    assert_nothing_left(&out);
}

#[test]
fn the_host_reaches_a_published_port_on_loopback_and_its_own_address() {
    let image = network_image();
    let out = in_throwaway_network_listing_leftovers(
        &image,
        r#"
"$LAUNCH" --net bridge -p 8080:80 -p 8081:81 "$IMAGE" -- sh -c '
  echo one | nc -l -p 80 & echo two | nc -l -p 81; wait' &
server=$!
get() { for i in $(seq 300); do busybox nc "$1" "$2" </dev/null && return; sleep 0.1; done; }
for i in $(seq 300); do nft list ruleset | grep -q 'dport 8080' && break; sleep 0.1; done
"$LAUNCH" --net bridge -p 8080:90 "$IMAGE" -- true 2>/run/conflict
echo "second publisher of 8080: $? $(cat /run/conflict)"
echo "loopback: $(get 127.0.0.1 8080)"
echo "bridge address: $(get 10.47.0.1 8081)"
wait $server
echo "server: $?"
"#,
    );
    assert_printed(&out, "loopback: one\n");
    assert_printed(&out, "second publisher of 8080: 125 launch: -p 8080:90/tcp: host port 8080 is already published by another container\n");
    assert_printed(&out, "bridge address: two\n");
    assert_printed(&out, "server: 0\n");
    assert_nothing_left(&out);
}

#[test]
fn none_has_no_route_out() {
    let image = network_image();
    // No route: the kernel refuses the connect at once (ENETUNREACH); nothing is sent.
    let out = image.launch(
        &["--net", "none"],
        &[
            "sh",
            "-c",
            "echo \"routes: [$(ip route)]\"; nc 192.0.2.1 80 </dev/null; echo \"nc: $?\"",
        ],
    );
    assert_printed(&out, "routes: []\n");
    assert_printed(&out, "nc: 1\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Network is unreachable"), "{}", describe(&out));
}

/// The host's own network namespaces and the links launch would name: the
/// scenarios must not touch them.
fn host_network_names() -> (String, Vec<String>) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        stdout(&out)
    };
    let ours = run(&["-o", "link"])
        .lines()
        .filter(|l| l.contains("mkr"))
        .map(str::to_string)
        .collect();
    (run(&["netns", "list"]), ours)
}

#[test]
fn twenty_concurrent_launches_get_twenty_distinct_addresses() {
    let image = network_image();
    let host_before = host_network_names();
    let out = in_throwaway_network_listing_leftovers(
        &image,
        r#"
mkdir /run/out
for i in $(seq 20); do
  "$LAUNCH" --net bridge "$IMAGE" -- sh -c 'ip -o -4 addr show eth0; sleep 0.5' \
    > /run/out/$i 2>&1 &
done
wait
echo "addresses: $(cat /run/out/* | grep -o 'inet [0-9.]*' | sort -u | wc -l)"
echo "launches: $(cat /run/out/* | grep -c 'inet ')"
cat /run/out/*
"#,
    );
    assert_printed(&out, "launches: 20\n");
    assert_printed(&out, "addresses: 20\n");
    assert_nothing_left(&out);
    let host_after = host_network_names();
    assert_eq!(
        host_after, host_before,
        "the host's netns list and links unchanged"
    );
    assert!(host_after.1.is_empty(), "no mkroot link on the host");
}

#[test]
fn sigkill_of_launch_leaves_no_rule_and_the_next_launch_cleans_the_rest() {
    let image = network_image();
    let out = in_throwaway_network_listing_leftovers(
        &image,
        r#"
"$LAUNCH" --net bridge -p 9000:80 "$IMAGE" -- sleep 60 &
launcher=$!
for i in $(seq 300); do nft list ruleset | grep -q 'dport 9000' && break; sleep 0.1; done
echo "table while running: $(nft list tables | wc -l)"
kill -KILL $launcher
wait $launcher
# The container dies with its launcher; its veth with its namespace.
for i in $(seq 300); do [ "$(ip -o link | wc -l)" -le 2 ] && break; sleep 0.1; done
echo "rules after kill: [$(nft list ruleset)]"
"$LAUNCH" --net bridge "$IMAGE" -- true
echo "next: $?"
"#,
    );
    assert_printed(&out, "table while running: 1\n");
    assert_printed(&out, "rules after kill: []\n");
    assert_printed(&out, "next: 0\n");
    assert_nothing_left(&out);
}

#[test]
fn host_mode_shares_the_hosts_network_and_name_servers() {
    let image = network_image();
    let out = in_throwaway_network(
        &image,
        r#"
ip link add mkrtest0 type bridge
"$LAUNCH" --net host "$IMAGE" -- sh -c 'ip -o link | cut -d: -f2 | tr -d " \n"; echo'
cmp -s /etc/resolv.conf /etc/resolv.conf && "$LAUNCH" --net host "$IMAGE" -- cat /etc/resolv.conf > /run/resolv
cmp /run/resolv /etc/resolv.conf && echo "resolv.conf: the host's"
"#,
    );
    assert_printed(&out, "lomkrtest0\n");
    assert_printed(&out, "resolv.conf: the host's\n");
}

#[test]
fn ns_joins_a_named_network_namespace_by_name_or_path() {
    let image = network_image();
    let out = in_throwaway_network(
        &image,
        r#"
ip netns add mkrtest
ip -n mkrtest link add mkrtest1 type bridge
"$LAUNCH" --net ns:mkrtest "$IMAGE" -- sh -c 'ip -o link | cut -d: -f2 | tr -d " \n"; echo'
"$LAUNCH" --net ns:/run/netns/mkrtest "$IMAGE" -- sh -c 'ip -o link | cut -d: -f2 | tr -d " \n"; echo'
"$LAUNCH" --net ns:nosuch "$IMAGE" -- true
echo "missing: $?"
ip netns del mkrtest
"#,
    );
    let text = stdout(&out);
    assert_eq!(
        text.matches("lomkrtest1\n").count(),
        2,
        "{}",
        describe(&out)
    );
    assert_printed(&out, "missing: 125\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--net ns:/run/netns/nosuch"),
        "{}",
        describe(&out)
    );
}

#[test]
fn rootless_host_works_and_bridge_says_it_needs_root() {
    let image = network_image();
    let user = TestUser::create("net");
    image.give_to(&user);
    let root = image.root();
    let root = root.to_str().unwrap();
    let host = user.launch(&[
        root,
        "--net",
        "host",
        "--",
        "sh",
        "-c",
        "ip -o link | wc -l",
    ]);
    let host_links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let expected = stdout(&host_links).lines().count();
    assert_eq!(
        stdout(&host).trim(),
        expected.to_string(),
        "{}",
        describe(&host)
    );

    let none = user.launch(&[root, "--", "sh", "-c", "ip -o link | wc -l"]);
    assert_eq!(stdout(&none).trim(), "1", "{}", describe(&none));

    let bridge = user.launch(&[root, "--net", "bridge", "--", "true"]);
    assert_eq!(bridge.status.code(), Some(125), "{}", describe(&bridge));
    let err = String::from_utf8_lossy(&bridge.stderr);
    assert_eq!(err.lines().count(), 1, "{}", describe(&bridge));
    assert!(
        err.contains("--net bridge needs root"),
        "{}",
        describe(&bridge)
    );
}

/// A static UDP program: `udp serve PORT` prints the first datagram it gets, `udp
/// send ADDRESS PORT` sends "ping" (busybox nc has no UDP).
const UDP_PROGRAM: &str = r#"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    char buf[256];
    if (argc == 3 && !strcmp(argv[1], "serve")) {
        a.sin_port = htons(atoi(argv[2]));
        if (bind(s, (void *)&a, sizeof a)) { perror("bind"); return 1; }
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n < 0) { perror("recv"); return 1; }
        buf[n] = 0;
        printf("got %s\n", buf);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "send")) {
        a.sin_port = htons(atoi(argv[3]));
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        return sendto(s, "ping", 4, 0, (void *)&a, sizeof a) == 4 ? 0 : 1;
    }
    return 2;
}
"#;

#[test]
fn a_published_udp_port_reaches_the_container() {
    let image = network_image();
    let build = tempfile::tempdir().unwrap();
    let udp = mkroot_e2e::builder::compile_c(build.path(), "udp", UDP_PROGRAM, &["-static"]);
    std::fs::copy(&udp, image.root().join("bin/udp")).unwrap();
    let out = in_throwaway_network_listing_leftovers(
        &image,
        r#"
"$LAUNCH" --net bridge -p 8053:53/udp "$IMAGE" -- udp serve 53 &
server=$!
# A datagram sent before the server binds is lost: send until it has one.
for i in $(seq 300); do
  kill -0 $server 2>/dev/null || break
  "$IMAGE/bin/udp" send 127.0.0.1 8053; sleep 0.1
done
wait $server
echo "server: $?"
"#,
    );
    assert_printed(&out, "got ping\n");
    assert_printed(&out, "server: 0\n");
    assert_nothing_left(&out);
}

#[test]
fn outbound_traffic_leaves_masqueraded_as_the_hosts_address() {
    let image = network_image();
    // "Outside" is one more namespace inside the scenario's, joined by a veth pair:
    // the container's connection must reach it from the scenario's own address.
    let out = in_throwaway_network_listing_leftovers(
        &image,
        r#"
ip netns add outside
ip link add up0 type veth peer name out0 netns outside
ip addr add 192.0.2.1/24 dev up0 && ip link set up0 up
ip -n outside addr add 192.0.2.2/24 dev out0 && ip -n outside link set out0 up
ip netns exec outside sh -c 'sleep 10 | busybox nc -l -p 80' > /run/received &
server=$!
"$LAUNCH" --net bridge "$IMAGE" -- sh -c '
  for i in $(seq 200); do (echo hello; sleep 2) | nc 192.0.2.2 80 && exit 0; sleep 0.1; done; exit 1' &
client=$!
for i in $(seq 300); do
  peer=$(ip netns exec outside ss -Htn state established | awk '{print $4}')
  [ -n "$peer" ] && break; sleep 0.1
done
echo "peer seen outside: $peer"
wait $client
echo "client: $?"
wait $server
echo "received: $(cat /run/received)"
ip link del up0 && ip netns del outside
"#,
    );
    let text = stdout(&out);
    assert!(
        text.contains("peer seen outside: [::ffff:192.0.2.1]:")
            || text.contains("peer seen outside: 192.0.2.1:"),
        "{}",
        describe(&out)
    );
    assert_printed(&out, "client: 0\n");
    assert_printed(&out, "received: hello\n");
    assert_nothing_left(&out);
}

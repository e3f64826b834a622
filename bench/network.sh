#!/usr/bin/env bash
# The bridge's setup cost, in one hyperfine run: a cached busybox image launched
#   --net none    (the default: a namespace with lo only)
#   --net bridge  (veth, address lease, routes, NAT table; the bridge made and
#                  removed by each launch, as nothing else holds it)
#   --net bridge  with the bridge held by a long-running container (the per-
#                  container cost alone)
# All inside a throwaway network namespace (unshare --net, private /run), so the
# bridge, veths and rules never touch the host's network. Needs root, hyperfine,
# busybox-static and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-100}
cargo build --release -q -p mkroot-launcher
launch=$PWD/target/release/launch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
ln -s busybox "$work/rootfs/bin/true"
ln -s busybox "$work/rootfs/bin/sleep"
tar czf "$work/img.tgz" -C "$work/rootfs" .
cmd="$launch --cache-dir $work/cache"

unshare --net --mount --propagation private -- bash -c '
    set -e
    mount -t tmpfs tmpfs /run
    ip link set lo up
    work=$1 runs=$2 cmd=$3
    hyperfine -N --warmup 5 --runs "$runs" \
        -n none "$cmd --net none $work/img.tgz -- /bin/true" \
        -n bridge "$cmd --net bridge $work/img.tgz -- /bin/true"
    $cmd --net bridge "$work/img.tgz" -- sleep 1000 &
    holder=$!
    sleep 1
    hyperfine -N --warmup 5 --runs "$runs" \
        -n "bridge (bridge kept by another container)" \
        "$cmd --net bridge $work/img.tgz -- /bin/true"
    kill "$holder"
    wait "$holder" || true
' bench "$work" "$runs" "$cmd"

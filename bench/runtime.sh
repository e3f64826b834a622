#!/usr/bin/env bash
# launch as an OCI runtime against runc and crun, side by side in one run, ratios printed
# (ours / theirs: below 1 is faster). Not part of CI.
#
#   sudo bench/runtime.sh
#
# Two figures: `podman run --rm IMAGE /bin/true` with each runtime (what a podman user
# waits for), and create + start + delete --force of one bundle with each runtime called
# directly (the figure youki and crun publish). crun is measured where it runs: it refuses
# hybrid cgroup hosts, and is then reported as such. Needs: hyperfine, podman, runc, crun
# (optional), busybox-static; installs them with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

# shellcheck source=bench/lib.sh
. ./bench/lib.sh # (the cd above made the repository the working directory)
need hyperfine podman runc crun busybox-static

cargo build --release --quiet -p mkroot-launcher
launch=$top/target/release/launch
runs=${RUNS:-30}

work=$(mktemp -d /tmp/mkroot-bench-runtime.XXXXXX)
podman_args=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs
    --cgroup-manager cgroupfs --events-backend file --tmpdir "$work/libpod"
    --network-config-dir "$work/networks" --volumepath "$work/volumes")
cleanup() {
    podman "${podman_args[@]}" rm --all --force --time 0 >/dev/null 2>&1 || true
    for rt in "$launch" runc crun; do
        "$rt" --root "$work/state-$(basename "$rt")" delete --force bench >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# The bundle: busybox with /bin/true, and launch's default config running it.
mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
ln -s busybox "$work/bundle/rootfs/bin/true"
ln -s busybox "$work/bundle/rootfs/bin/sh"
(cd "$work/bundle" && "$launch" spec)
sed -i -e 's|"sh"|"/bin/true"|' -e 's|"ociVersion": "1.2.0"|"ociVersion": "1.0.2"|' "$work/bundle/config.json"
tar -C "$work/bundle/rootfs" -cf "$work/image.tar" .
podman "${podman_args[@]}" import "$work/image.tar" localhost/bench-true:1 >/dev/null

mean() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"])' "$1" "$2"; }
ms() { python3 -c 'import sys; print(f"{float(sys.argv[1])*1000:.1f} ms")' "$1"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}")' "$1" "$2"; }

# Which runtimes run here at all (crun: not on a hybrid cgroup host).
runtimes=("$launch" runc)
cd "$work/bundle"
if crun --root "$work/state-crun" run bench >/dev/null 2>&1; then
    runtimes+=(crun)
else
    echo "crun: refuses this host ($(crun --root "$work/state-crun" run bench 2>&1 | head -n 1)); left out"
fi
crun --root "$work/state-crun" delete --force bench >/dev/null 2>&1 || true

echo "== create + start + delete --force of one bundle, each runtime directly ($runs runs)"
cmds=()
for rt in "${runtimes[@]}"; do
    state="$work/state-$(basename "$rt")"
    cmds+=("$rt --root $state create --bundle $work/bundle bench && $rt --root $state start bench && $rt --root $state delete --force bench")
done
hyperfine --warmup 3 --runs "$runs" --export-json "$work/direct.json" "${cmds[@]}" >/dev/null
t_launch=$(mean "$work/direct.json" 0)
t_runc=$(mean "$work/direct.json" 1)
echo "launch: $(ms "$t_launch")   runc: $(ms "$t_runc")   launch/runc: $(ratio "$t_launch" "$t_runc")   (target <= 0.5)"
if [ ${#runtimes[@]} -gt 2 ]; then
    t_crun=$(mean "$work/direct.json" 2)
    echo "crun: $(ms "$t_crun")   launch/crun: $(ratio "$t_launch" "$t_crun")   (target < 1)"
fi

echo "== podman run --rm IMAGE /bin/true with each runtime ($runs runs)"
cmds=()
for rt in "${runtimes[@]}"; do
    cmds+=("podman ${podman_args[*]} --runtime $(command -v "$rt") run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 localhost/bench-true:1 /bin/true")
done
hyperfine --warmup 2 --runs "$runs" --export-json "$work/podman.json" "${cmds[@]}" >/dev/null
p_launch=$(mean "$work/podman.json" 0)
p_runc=$(mean "$work/podman.json" 1)
echo "launch: $(ms "$p_launch")   runc: $(ms "$p_runc")   launch/runc: $(ratio "$p_launch" "$p_runc")   (target <= 0.5)"
if [ ${#runtimes[@]} -gt 2 ]; then
    p_crun=$(mean "$work/podman.json" 2)
    echo "crun: $(ms "$p_crun")   launch/crun: $(ratio "$p_launch" "$p_crun")"
fi

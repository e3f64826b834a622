#!/usr/bin/env bash
# Benchmarks mkroot and launch against the peers a user would otherwise reach for, side by
# side in one run, and prints ratios (ours / theirs: below 1 is faster). Not part of CI.
#
#   sudo bench/run.sh            # all sections
#   sudo bench/run.sh builder    # one of: builder resolve launch network
#
# Needs: hyperfine, pax-utils (lddtree) with python3-pyelftools, bubblewrap, crun (optional),
# GNU time. Installs them with apt-get when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
sections=${*:-builder resolve launch network}

# shellcheck source=bench/lib.sh
. ./bench/lib.sh # (the cd above made the repository the working directory)
need hyperfine pax-utils python3-pyelftools bubblewrap crun time busybox-static gcc libc6-dev

cargo build --release --quiet
mkroot=$top/target/release/mkroot
launch=$top/target/release/launch

work=$(mktemp -d /tmp/mkroot-bench.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

# mean seconds of command N in a hyperfine JSON export
mean() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"])' "$1" "$2"; }
ratio() { /usr/bin/python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.3f}")' "$1" "$2"; }
ms() { /usr/bin/python3 -c 'import sys; print(f"{float(sys.argv[1])*1000:.1f} ms")' "$1"; }
peak_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }

bins="$(command -v bash) $(command -v ps) $(command -v top)"

if [[ " $sections " == *" builder "* ]]; then
    echo "== builder: mkroot --bins bash,ps,top -o x.tgz vs lddtree --copy-to-tree + tar -czf"
    hand='rm -rf tree hand.tgz && /usr/bin/python3 /usr/bin/lddtree --copy-to-tree tree '"$bins"' >/dev/null && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -czf hand.tgz -C tree .'
    ours="$mkroot -q --bins bash,ps,top -o x.tgz"
    hyperfine -N --warmup 2 --runs "${RUNS:-15}" --export-json builder.json "$ours" "bash -c '$hand'" >/dev/null
    t_ours=$(mean builder.json 0); t_hand=$(mean builder.json 1)
    echo "mkroot:          $(ms "$t_ours")   image $(stat -c %s x.tgz) bytes, peak memory $(peak_kib $ours) KiB"
    echo "hand pipeline:   $(ms "$t_hand")   image $(stat -c %s hand.tgz) bytes"
    echo "time ratio mkroot/hand: $(ratio "$t_ours" "$t_hand")   (target <= 0.2)"
    echo "size ratio mkroot/hand: $(ratio "$(stat -c %s x.tgz)" "$(stat -c %s hand.tgz)")   (target <= 1.0)"
fi

if [[ " $sections " == *" resolve "* ]]; then
    echo "== resolve: every ELF file under /usr/bin at once vs ldd on each"
    find /usr/bin -maxdepth 1 -type f -print0 | xargs -0 file -N --mime-type 2>/dev/null |
        awk -F': ' '$2 ~ /x-(pie-)?executable|x-sharedlib/ {print $1}' | sort >elves
    echo "$(wc -l <elves) ELF files"
    printf '%s\n' "$mkroot -q --dry-run --json --allow-missing --bins $(paste -sd, elves) >/dev/null" >ours.sh
    printf '%s\n' "xargs -a elves -n1 ldd >/dev/null 2>&1 || true" >ldd.sh
    hyperfine -N --warmup 1 --runs "${RUNS:-5}" --export-json resolve.json "bash ours.sh" "bash ldd.sh" >/dev/null
    t_ours=$(mean resolve.json 0); t_ldd=$(mean resolve.json 1)
    echo "mkroot --dry-run: $(ms "$t_ours")   (target < 1000 ms)"
    echo "ldd on each:      $(ms "$t_ldd")"
    echo "time ratio mkroot/ldd: $(ratio "$t_ours" "$t_ldd")"
fi

if [[ " $sections " == *" launch "* ]]; then
    echo "== launch: cached launch of /bin/true vs bwrap, unshare+chroot, crun"
    "$mkroot" -q --bins bash,true,ps -o img.tgz
    mkdir -p root && tar xzf img.tgz -C root
    cache=$work/cache
    "$launch" --cache-dir "$cache" img.tgz -- /bin/true # unpack into the cache once
    cmds=(
        "$launch --cache-dir $cache img.tgz -- /bin/true"
        "bwrap --unshare-all --bind $work/root / --proc /proc --dev /dev /bin/true"
        "unshare --uts --ipc --pid --mount --net --fork chroot $work/root /bin/true"
    )
    names=("launch (cached)" "bwrap" "unshare+chroot")
    # The yardstick: clone into the same namespaces + chroot + exec, nothing else.
    gcc -O2 -static -o floor "$top/bench/floor.c"
    cmds+=("$work/floor $work/root /bin/true")
    names+=("floor (clone+chroot+exec)")
    # The second yardstick: the same namespaces plus exactly the mounts, pivot_root,
    # network and init the issue's isolation checks need, in plain C (no hardening).
    gcc -O2 -static -o floor-mounts "$top/bench/floor_mounts.c"
    cmds+=("$work/floor-mounts $work/root /bin/true")
    names+=("floor + the issue's mounts")
    mkdir -p bundle && ln -s ../root bundle/rootfs
    (cd bundle && crun spec >/dev/null 2>&1 && /usr/bin/python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"]["readonly"] = True
json.dump(c, open("config.json", "w"))
PY
    ) || true
    if crun run --bundle bundle bench-probe-$$ >/dev/null 2>&1; then
        cmds+=("crun run --bundle $work/bundle bench-$$")
        names+=("crun")
    else
        echo "(crun does not run on this host: $(crun run --bundle bundle bench-probe-$$ 2>&1 | head -n 1))"
    fi
    hyperfine -N --warmup 5 --runs "${RUNS:-50}" --export-json launch.json "${cmds[@]}" >/dev/null
    t_ours=$(mean launch.json 0)
    for i in "${!names[@]}"; do
        echo "${names[$i]}: $(ms "$(mean launch.json "$i")")"
    done
    echo "time ratio launch/bwrap: $(ratio "$t_ours" "$(mean launch.json 1)")   (target <= 0.6)"
    echo "time ratio floor/bwrap:  $(ratio "$(mean launch.json 3)" "$(mean launch.json 1)")   (what no launcher can go below)"
    echo "time ratio floor+mounts/bwrap: $(ratio "$(mean launch.json 4)" "$(mean launch.json 1)")   (plain C doing only what the isolation checks need)"
    echo "time ratio launch/floor+mounts: $(ratio "$t_ours" "$(mean launch.json 4)")   (target <= 1.05: what the hardening, the cache and start-up add)"
    echo "launch peak memory: $(peak_kib "$launch" --cache-dir "$cache" img.tgz -- /bin/true) KiB"

    echo "== launch: first launch (unpack included) vs mkdir + tar xzf + bwrap + rm -rf"
    first="rm -rf $work/fresh && $launch --cache-dir $work/fresh img.tgz -- /bin/true"
    pipeline="d=\$(mktemp -d) && tar xzf img.tgz -C \$d && bwrap --unshare-all --bind \$d / --proc /proc --dev /dev /bin/true && rm -rf \$d"
    hyperfine --warmup 2 --runs "${RUNS:-15}" --export-json first.json "$first" "$pipeline" >/dev/null
    echo "launch (first):  $(ms "$(mean first.json 0)")"
    echo "tar + bwrap:     $(ms "$(mean first.json 1)")"
    echo "time ratio first-launch/pipeline: $(ratio "$(mean first.json 0)" "$(mean first.json 1)")   (target <= 0.5)"
fi

if [[ " $sections " == *" network "* ]]; then
    echo "== network: cached launch --net bridge vs --net none (inside a throwaway network namespace)"
    RUNS=${RUNS:-50} bash "$top/bench/network.sh" | grep -E 'Time|±|^Benchmark'
fi

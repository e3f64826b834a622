#!/usr/bin/env bash
# Image benchmark, side by side in one run:
#   mkroot --bins bash,ps,top -o x.tgz
# against what a user does by hand:
#   lddtree --copy-to-tree T $(which bash ps top)
#   tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -czf hand.tgz -C T .
# Prints the best wall time of each over RUNS runs (alternating, so both see the same
# machine load), the ratio, both image sizes and mkroot's peak memory.
# Needs pax-utils, python3-pyelftools and GNU time (apt-get install pax-utils
# python3-pyelftools time).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-7}
programs=(bash ps top)
cargo build --release -q -p mkroot-builder
mkroot=$PWD/target/release/mkroot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
paths=()
for p in "${programs[@]}"; do paths+=("$(command -v "$p")"); done
csv=$(IFS=,; echo "${programs[*]}")

mkroot_cmd=("$mkroot" -q --bins "$csv" -o "$work/x.tgz")
# lddtree is a Python script; the system python has pyelftools (a pyenv one may not).
hand_cmd=(bash -c '
    rm -rf "$1/tree" "$1/hand.tgz"
    /usr/bin/python3 /usr/bin/lddtree --copy-to-tree "$1/tree" "${@:2}" >/dev/null
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -czf "$1/hand.tgz" -C "$1/tree" .
' hand "$work" "${paths[@]}")

# Runs a command under GNU time; prints "wall cpu peak_kib".
measure() {
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$@" >/dev/null
    awk '{ print $1, $2 + $3, $4 }' "$work/time"
}

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }

best_mkroot=999; best_hand=999; cpu_mkroot=999; cpu_hand=999; peak=0
for _ in $(seq "$runs"); do
    read -r wall cpu kib < <(measure "${mkroot_cmd[@]}")
    best_mkroot=$(min "$best_mkroot" "$wall"); cpu_mkroot=$(min "$cpu_mkroot" "$cpu")
    peak=$(awk -v a="$peak" -v b="$kib" 'BEGIN { print (a > b) ? a : b }')
    read -r wall cpu _ < <(measure "${hand_cmd[@]}")
    best_hand=$(min "$best_hand" "$wall"); cpu_hand=$(min "$cpu_hand" "$cpu")
done
peak="$peak KiB"

size_mkroot=$(stat -c %s "$work/x.tgz")
size_hand=$(stat -c %s "$work/hand.tgz")
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'mkroot --bins %s -o x.tgz      best of %s: %.3f s wall, %.3f s CPU, %s bytes, peak RSS %s\n' \
    "$csv" "$runs" "$best_mkroot" "$cpu_mkroot" "$size_mkroot" "$peak"
printf 'lddtree --copy-to-tree + tar -czf  best of %s: %.3f s wall, %.3f s CPU, %s bytes\n' \
    "$runs" "$best_hand" "$cpu_hand" "$size_hand"
printf 'wall ratio (hand / mkroot): %.1fx (target >= 5x); CPU ratio %.1fx; size: mkroot %s hand (target <=)\n' \
    "$(echo "$best_hand / $best_mkroot" | bc -l)" \
    "$(echo "$cpu_hand / $cpu_mkroot" | bc -l)" \
    "$( [ "$size_mkroot" -le "$size_hand" ] && echo '<=' || echo '>' )"

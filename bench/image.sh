#!/usr/bin/env bash
# Image benchmark, side by side in one run:
#   mkroot --bins bash,ps,top -o x.tgz
# against what a user does by hand:
#   lddtree --copy-to-tree T $(which bash ps top)
#   tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -czf hand.tgz -C T .
# Prints the best wall time of each over RUNS runs (alternating, so both see the same
# machine load), the ratio, both image sizes and mkroot's peak memory.
# Needs pax-utils and python3-pyelftools (apt-get install pax-utils python3-pyelftools).
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

now() { date +%s.%N; }

mkroot_run() {
    rm -f "$work/x.tgz"
    "$mkroot" -q --bins "$csv" -o "$work/x.tgz"
}

# lddtree is a Python script; the system python has pyelftools (a pyenv one may not).
hand_run() {
    rm -rf "$work/tree" "$work/hand.tgz"
    /usr/bin/python3 /usr/bin/lddtree --copy-to-tree "$work/tree" "${paths[@]}" >/dev/null
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -czf "$work/hand.tgz" -C "$work/tree" .
}

best_mkroot=999
best_hand=999
for _ in $(seq "$runs"); do
    t0=$(now); mkroot_run; t1=$(now); hand_run; t2=$(now)
    best_mkroot=$(echo "$t1 - $t0" | bc -l | awk -v b="$best_mkroot" '{print ($1 < b) ? $1 : b}')
    best_hand=$(echo "$t2 - $t1" | bc -l | awk -v b="$best_hand" '{print ($1 < b) ? $1 : b}')
done

peak=unknown
if [ -x /usr/bin/time ]; then
    peak=$( { /usr/bin/time -f '%M' "$mkroot" -q --bins "$csv" -o "$work/peak.tgz" >/dev/null; } 2>&1 | tail -1 )" KiB"
fi

size_mkroot=$(stat -c %s "$work/x.tgz")
size_hand=$(stat -c %s "$work/hand.tgz")
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'mkroot --bins %s -o x.tgz      best of %s: %.3f s, %s bytes, peak RSS %s\n' "$csv" "$runs" "$best_mkroot" "$size_mkroot" "$peak"
printf 'lddtree --copy-to-tree + tar -czf  best of %s: %.3f s, %s bytes\n' "$runs" "$best_hand" "$size_hand"
printf 'time ratio (hand / mkroot): %.1fx (target >= 5x); size: mkroot %s hand (target <=)\n' \
    "$(echo "$best_hand / $best_mkroot" | bc -l)" \
    "$( [ "$size_mkroot" -le "$size_hand" ] && echo '<=' || echo '>' )"

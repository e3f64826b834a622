#!/usr/bin/env bash
# Runs every fuzz target for a set time (not part of CI):
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, all targets)
# Needs cargo-fuzz and a nightly toolchain. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The unpacker starts from a few real tarballs (plain, gzip, PAX) with a directory, a file,
# a symlink and a hard link: the fuzzer mutates from there faster than from nothing.
seed_unpack() {
    local corpus=corpus/unpack tree
    [ -n "$(ls -A "$corpus" 2>/dev/null)" ] && return
    mkdir -p "$corpus"
    tree=$(mktemp -d)
    mkdir -p "$tree/a/b"
    echo hi >"$tree/a/b/f"
    ln -s ../x "$tree/a/l"
    ln "$tree/a/b/f" "$tree/a/h"
    tar -cf "$corpus/plain.tar" -C "$tree" .
    tar -czf "$corpus/gzip.tgz" -C "$tree" .
    tar --format=pax -cf "$corpus/pax.tar" -C "$tree" .
    rm -rf "$tree"
}

for target in "${targets[@]}"; do
    extra=()
    if [ "$target" = unpack ]; then
        seed_unpack
    fi
    if [ "$target" = unpack ] || [ "$target" = gunzip ]; then
        # These decompress on threads; LeakSanitizer counts glibc's per-thread
        # destructor list (32 bytes) as a leak.
        extra=(-detect_leaks=0)
    fi
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 "${extra[@]}"
done

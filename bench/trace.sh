#!/usr/bin/env bash
# Tracing's cost: each probe run traced (the sandbox, ptrace behind the seccomp filter,
# the record) against the same command run plainly, side by side in one run, with
# ratios (traced / untraced; the issue's target is <= 1.5 for the Python import and the
# gcc compile). Not part of CI.
#
#   sudo bench/trace.sh
#
# Needs: hyperfine, python3, gcc (perl and a JDK for their image sizes). Installs them with apt-get when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

# shellcheck source=bench/lib.sh
. ./bench/lib.sh # (the cd above made the repository the working directory)
need hyperfine python3 gcc libc6-dev

cargo build --release --quiet -p mkroot-builder --example trace_probe
probe=$top/target/release/examples/trace_probe

work=$(mktemp -d /tmp/mkroot-bench-trace.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
printf '#include <stdio.h>\n#include <math.h>\nint main(void) { printf("%%f\\n", sqrt(2.0)); return 0; }\n' >h.c

mean() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"])' "$1" "$2"; }
ratio() { /usr/bin/python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.3f}")' "$1" "$2"; }
# The untraced run gets the environment the sandbox gives a probe, so both find the same
# programs (a caller's PATH may hold shims, a virtualenv).
plain="env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=${TERM:-xterm} /bin/sh -c"
ms() { /usr/bin/python3 -c 'import sys; print(f"{float(sys.argv[1])*1000:.1f} ms")' "$1"; }

echo "== the sandbox alone: trace of /bin/true"
hyperfine -N --warmup 3 --runs "${RUNS:-30}" --export-json true.json "$probe true" "$plain true" >/dev/null
echo "traced:   $(ms "$(mean true.json 0)")   untraced: $(ms "$(mean true.json 1)")"

bench() {
    local name=$1 command=$2
    echo "== $name: $command"
    hyperfine -N --warmup 2 --runs "${RUNS:-20}" --export-json "$name.json" \
        "$probe '$command'" "$plain '$command'" >/dev/null
    local traced untraced
    traced=$(mean "$name.json" 0); untraced=$(mean "$name.json" 1)
    echo "traced:   $(ms "$traced")   untraced: $(ms "$untraced")"
    echo "time ratio traced/untraced: $(ratio "$traced" "$untraced")   (target <= 1.5)"
    "$probe" "$command" 2>&1 >/dev/null | tail -n 1 | sed 's/^/record: /'
}
[ -n "${SIZES_ONLY:-}" ] || bench python 'python3 -c "import json,sqlite3,hashlib"'
[ -n "${SIZES_ONLY:-}" ] || bench gcc 'gcc -c -o h.o h.c'

# Image sizes: each family traced against the image a user makes today by adding the
# interpreter's whole tree with --add, built side by side; with mkroot's peak memory.
(cd "$top" && cargo build --release --quiet -p mkroot-builder --bin mkroot)
mkroot=$top/target/release/mkroot
# mkroot's own peak RSS (VmHWM, read until it exits; the probes are other processes).
peak() {
    /usr/bin/python3 - "$@" <<'PY'
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
hwm = 0
while child.poll() is None:
    try:
        for line in open(f"/proc/{child.pid}/status"):
            if line.startswith("VmHWM:"):
                hwm = max(hwm, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.002)
if child.returncode != 0:
    sys.exit(child.returncode)
print(f"{hwm / 1024:.1f} MiB")
PY
}
size() { stat -c %s "$1"; }
mib() { /usr/bin/python3 -c 'import sys; print(f"{int(sys.argv[1])/2**20:.1f} MiB")' "$1"; }
family() {
    local name=$1 bins=$2 probe=$3; shift 3
    echo "== image of $name: --trace '$probe' against --add $*"
    local traced_mem whole_mem adds=()
    traced_mem=$(peak "$mkroot" -q --bins "$bins" --trace "$probe" -o "$name-traced.tgz")
    for tree in "$@"; do adds+=(--add "$tree"); done
    # --allow-missing: a JDK's libraries name libjvm.so, which the JVM has loaded from
    # lib/server/ before them; the resolver, reading each file alone, does not find it.
    whole_mem=$(peak "$mkroot" -q --allow-missing --bins "$bins" "${adds[@]}" -o "$name-whole.tgz")
    local t w
    t=$(size "$name-traced.tgz"); w=$(size "$name-whole.tgz")
    echo "traced: $(mib "$t") (mkroot peak $traced_mem)   --add: $(mib "$w") (mkroot peak $whole_mem)   size ratio: $(ratio "$t" "$w")"
}
python=$(readlink -f /usr/bin/python3)
family python "$python" "$python -c 'import json,sqlite3,hashlib'" "/usr/lib/$(basename "$python")"
if [ -d /usr/share/perl/5.36 ]; then
    family perl perl "perl -MPOSIX -e 'print floor(2.5)'" /usr/share/perl/5.36 /usr/lib/x86_64-linux-gnu/perl/5.36
fi
if [ -d /usr/lib/jvm/java-17-openjdk-amd64 ] && command -v javac >/dev/null; then
    printf 'public class H { public static void main(String[] a) { System.out.println(1); } }\n' >H.java
    javac H.java
    family java java "java -cp $work H" /usr/lib/jvm/java-17-openjdk-amd64
fi

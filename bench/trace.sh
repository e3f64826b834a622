#!/usr/bin/env bash
# Tracing's cost: each probe run traced (the sandbox, ptrace behind the seccomp filter,
# the record) against the same command run plainly, side by side in one run, with
# ratios (traced / untraced; the issue's target is <= 1.5 for the Python import and the
# gcc compile). Not part of CI.
#
#   sudo bench/trace.sh
#
# Needs: hyperfine, python3, gcc. Installs them with apt-get when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

need() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
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
bench python 'python3 -c "import json,sqlite3,hashlib"'
bench gcc 'gcc -c -o h.o h.c'

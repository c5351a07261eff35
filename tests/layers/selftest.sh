#!/bin/sh
# layers.selftest: scripts/check-layers.py on a made-up two-module tree must find what is wrong
# with it (a file cycle in schedule/, core calling up into schedule/ through a header), and pass
# once that is fixed. Usage: selftest.sh CHECKER CC WORKDIR
set -eu
checker=$1 cc=$2 work=$3
rm -rf "$work"
src=$work/src build=$work/build
mkdir -p "$src/core" "$src/schedule" "$src/include/pipetrain" \
         "$build/core/CMakeFiles/pt_core.dir" "$build/schedule/CMakeFiles/pt_schedule.dir"
cat > "$src/include/pipetrain/schedule.h" <<'H'
int pt_sched_a(int n);
int pt_sched_b(int n);
H
cat > "$src/schedule/a.c" <<'C'
#include "pipetrain/schedule.h"
int pt_sched_a(int n) { return n > 0 ? pt_sched_b(n - 1) : 0; }
C
cat > "$src/schedule/b.c" <<'C'
#include "pipetrain/schedule.h"
int pt_sched_b(int n) { return n > 0 ? pt_sched_a(n - 1) : 1; }
C
cat > "$src/core/status.c" <<'C'
#include "pipetrain/schedule.h"
int pt_core_x(void) { return pt_sched_a(3); }
C
compile() {
    for f in core/status.c:core/CMakeFiles/pt_core.dir/status.c.o schedule/a.c:schedule/CMakeFiles/pt_schedule.dir/a.c.o \
             schedule/b.c:schedule/CMakeFiles/pt_schedule.dir/b.c.o; do
        "$cc" -c -I"$src/include" "$src/${f%%:*}" -o "$build/${f#*:}"
    done
}
compile
set +e
out=$(python3 "$checker" "$build" "$src" --json-only)
rc=$?
set -e
echo "broken tree: rc=$rc $out"
[ "$rc" = 1 ] || { echo "selftest: expected exit 1 for the broken tree"; exit 1; }
echo "$out" | grep -q '"file_cycles": 1' || { echo "selftest: the a.c <-> b.c cycle was not found"; exit 1; }
echo "$out" | grep -q '"upward_edges": 2' || { echo "selftest: core -> schedule (call and include) not found"; exit 1; }
# fixed: b.c no longer calls back, core no longer uses schedule
cat > "$src/schedule/b.c" <<'C'
#include "pipetrain/schedule.h"
int pt_sched_b(int n) { return n; }
C
cat > "$src/core/status.c" <<'C'
int pt_core_x(void) { return 3; }
C
compile
out=$(python3 "$checker" "$build" "$src" --json-only)
echo "fixed tree: $out"
echo "$out" | grep -q '"file_cycles": 0' && echo "$out" | grep -q '"upward_edges": 0'

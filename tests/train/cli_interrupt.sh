#!/bin/bash
# train.interrupt_*: SIGINT / SIGTERM to a pipelined `pipetrain train` (its launcher, the launcher's
# process group as a terminal's Ctrl-C sends it, or one rank) stops every rank after the same step,
# writes a checkpoint, exits 130 / 143 with the "interrupted after step N; checkpoint ...; continue
# with the same command and --resume" line, and --resume finishes the run; a second signal ends it
# at once. Every wait is bounded; the launcher (and through it the ranks) is killed on the way out.
# usage: cli_interrupt.sh MODE PIPETRAIN
#   group        SIGINT to the launcher's process group -> 130; the resumed run's losses and gradient
#                norms equal an uninterrupted run's, bit for bit
#   launcher     SIGTERM to the launcher -> 143, resume finishes
#   rank         SIGTERM to rank 1 only -> every rank stops, 143, the profile is written, resume
#                finishes
#   launch       SIGTERM to `pipetrain launch --nproc 2 -- pipetrain train ...` -> 143, resume finishes
#   second       SIGINT to the launcher during a long step, another 1.5 s later -> the ranks are
#                killed at once, 130, one line saying so, nothing saved, no rank left; a rank still
#                waiting at the rendezvous ends at once on its first SIGTERM
#   nosave       one process, SIGTERM -> 143 with a checkpoint; a pipeline with --no-save-on-signal,
#                SIGINT -> 130, the line says it was not saved, no checkpoint
set -u
mode=$1
pt=$2
W=int_$mode
rm -rf "$W"
mkdir -p "$W"
LP=
cleanup() {
    if [ -n "$LP" ] && kill -0 "$LP" 2>/dev/null; then
        kill -KILL -- "-$LP" 2>/dev/null || kill -KILL "$LP" 2>/dev/null # the ranks die with it (PDEATHSIG)
    fi
}
trap cleanup EXIT
fail() {
    echo "FAIL ($mode): $1"
    for f in "$W"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }; done
    exit 1
}

# start CMD... in its own process group (setsid), output to $W/$LOG; sets LP
start() {
    log=$1
    shift
    setsid "$@" >"$W/$log" 2>&1 &
    LP=$!
}
# waits up to $2 s (in tenths) for a line matching $1 in the current log
wait_line() {
    for _ in $(seq $(($2 * 10))); do
        grep -q -- "$1" "$W/$log" 2>/dev/null && return 0
        kill -0 "$LP" 2>/dev/null || break
        sleep 0.1
    done
    grep -q -- "$1" "$W/$log" 2>/dev/null || fail "no line '$1' in $log"
}
# waits up to $1 s for the launcher to end; sets rc
wait_end() {
    for _ in $(seq $(($1 * 10))); do
        kill -0 "$LP" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$LP" 2>/dev/null && fail "still running $1 s after the signal"
    wait "$LP"
    rc=$?
    LP=
}
ranks_of() { ps -o pid= --ppid "$1" 2>/dev/null; }
rank_pid() { # the child of launcher $1 whose RANK is $2
    for c in $(ranks_of "$1"); do
        tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx "RANK=$2" && { echo "$c"; return; }
    done
}
check_stopped() { # $1: expected exit status, $2: run dir
    [ "$rc" = "$1" ] || fail "exit status $rc, expected $1"
    grep -q '^interrupted after step [0-9]*; checkpoint .*; continue with the same command and --resume$' "$W/$log" ||
        fail "no unprefixed 'interrupted after step N; checkpoint ...' line from the launcher"
    n=$(sed -n 's/^interrupted after step \([0-9]*\);.*/\1/p' "$W/$log")
    [ -d "$2/ckpt/step_$(printf %06d "$n")" ] && [ -f "$2/ckpt/latest" ] || fail "no checkpoint of step $n in $2/ckpt"
    grep -q '"step":'"$n"',' "$2/metrics.jsonl" || fail "metrics.jsonl has no step $n"
    grep -q '"step":'"$((n + 1))"',' "$2/metrics.jsonl" && fail "metrics.jsonl goes on past step $n"
    [ "$n" -lt "$steps" ] || fail "the run ended (step $n) before the signal: nothing was tested"
}
resume() { # $1: run dir; the same command with --resume finishes the run
    "$pt" train $common --run-dir "$1" --resume >"$W/resume.log" 2>&1 || fail "--resume failed"
    grep -q "resuming after step $n" "$W/resume.log" || fail "the resumed run did not start after step $n"
    grep -q "done: $steps steps" "$W/resume.log" || fail "the resumed run did not finish $steps steps"
    [ "$(grep -c '"loss"' "$1/metrics.jsonl")" = "$steps" ] || fail "$1/metrics.jsonl has not $steps step lines"
}

steps=40
common="--stages 2 --steps $steps --seq-len 64 --threads 1 --eval-batches 0 --log-every 1 --comm-timeout 60"
case $mode in
group)
    start run.log "$pt" train $common --run-dir "$W/run"
    wait_line "step      2/$steps" 60
    kill -INT -- "-$LP" # what Ctrl-C in a terminal sends: the whole foreground process group
    wait_end 60
    check_stopped 130 "$W/run"
    resume "$W/run"
    "$pt" train $common --run-dir "$W/ref" >"$W/ref.log" 2>&1 || fail "the uninterrupted run failed"
    python3 - "$W/run/metrics.jsonl" "$W/ref/metrics.jsonl" "$steps" <<'EOF' || fail "the resumed run differs from the uninterrupted one"
import json, sys
def steps(p):
    return {o["step"]: (o["loss"], o["grad_norm"], o["lr"]) for o in map(json.loads, open(p)) if "loss" in o}
a, b = steps(sys.argv[1]), steps(sys.argv[2])
n = int(sys.argv[3])
assert sorted(a) == list(range(1, n + 1)) and sorted(b) == list(range(1, n + 1)), (sorted(a), sorted(b))
bad = [s for s in a if a[s] != b[s]]
if bad:
    print("steps differ:", [(s, a[s], b[s]) for s in bad[:5]])
    sys.exit(1)
EOF
    ;;
launcher)
    start run.log "$pt" train $common --run-dir "$W/run"
    wait_line "step      2/$steps" 60
    kill -TERM "$LP"
    wait_end 60
    check_stopped 143 "$W/run"
    resume "$W/run"
    ;;
rank)
    start run.log "$pt" train $common --run-dir "$W/run" --profile "$W/prof"
    wait_line "step      2/$steps" 60
    r1=$(rank_pid "$LP" 1)
    [ -n "$r1" ] || fail "cannot find rank 1 among the launcher's children: $(ranks_of "$LP")"
    kill -TERM "$r1"
    wait_end 60
    check_stopped 143 "$W/run"
    for f in trace.json timeline.svg summary.json; do [ -s "$W/prof/$f" ] || fail "--profile: no $f after the stop"; done
    grep -q '"signal":"SIGTERM"' "$W/run/interrupted.json" || fail "interrupted.json does not name SIGTERM"
    resume "$W/run"
    ;;
launch)
    # `pipetrain launch` starting the ranks of `pipetrain train` itself
    start run.log "$pt" launch --nproc 2 -- "$pt" train $common --run-dir "$W/run"
    wait_line "step      2/$steps" 60
    kill -TERM "$LP"
    wait_end 60
    [ "$rc" = 143 ] || fail "exit status $rc, expected 143"
    grep -q '^pipetrain launch: the ranks stopped on SIGTERM (exit 143).*--resume$' "$W/run.log" ||
        fail "no line from pipetrain launch about the stop"
    n=$(sed -n 's/^\[rank 0\] interrupted after step \([0-9]*\); checkpoint .*/\1/p' "$W/run.log")
    [ -n "$n" ] && [ -f "$W/run/ckpt/latest" ] || fail "rank 0 names no checkpoint"
    "$pt" launch --nproc 2 -- "$pt" train $common --run-dir "$W/run" --resume >"$W/resume.log" 2>&1 ||
        fail "--resume under pipetrain launch failed"
    grep -q "resuming after step $n" "$W/resume.log" && grep -q "done: $steps steps" "$W/resume.log" ||
        fail "the resumed run did not continue after step $n to $steps"
    ;;
second)
    # steps of 1536 sequences: several seconds each, so the second signal comes during the first step
    start run.log "$pt" train --stages 2 --steps 3 --micro-batches 192 --micro-batch-size 8 --threads 1 \
        --eval-batches 0 --comm-timeout 60 --run-dir "$W/run"
    wait_line 'transfers:' 60
    sleep 1 # into the first step (its loop begins a few ms after that line; the step lasts seconds)
    ranks=$(ranks_of "$LP")
    kill -INT "$LP"
    sleep 1.5
    kill -INT "$LP"
    wait_end 20
    [ "$rc" = 130 ] || fail "exit status $rc after two SIGINTs, expected 130"
    grep -q 'a second SIGINT: the ranks were killed at once' "$W/run.log" || fail "no line about the second SIGINT"
    grep -q '^interrupted after step' "$W/run.log" && fail "the first SIGINT's stop completed: the test did not test"
    [ -e "$W/run/ckpt/latest" ] && fail "a checkpoint was written"
    for r in $ranks; do kill -0 "$r" 2>/dev/null && fail "rank process $r left running"; done
    # before the loop (here: rank 0 waiting at the rendezvous for a rank 1 that never comes, up to
    # --comm-timeout 60) there is nothing to save: the first signal ends the rank at once
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log=alone.log
    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port setsid "$pt" train --stages 2 --steps 3 \
        --comm-timeout 60 --run-dir "$W/alone" >"$W/alone.log" 2>&1 &
    LP=$!
    sleep 1
    kill -TERM "$LP"
    wait_end 10
    [ "$rc" = 143 ] || fail "a rank at the rendezvous: exit status $rc after SIGTERM, expected 143"
    grep -q 'SIGTERM before the first step: ending at once' "$W/alone.log" || fail "no line about ending before the first step"
    ;;
nosave)
    start one.log "$pt" train ${common/--stages 2/--stages 1} --run-dir "$W/one"
    wait_line "step      2/$steps" 60
    kill -TERM "$LP"
    wait_end 60
    [ "$rc" = 143 ] || fail "one process: exit status $rc after SIGTERM, expected 143"
    grep -q '^interrupted after step [0-9]*; checkpoint .*/ckpt/step_0000[0-9]*; continue' "$W/one.log" ||
        fail "one process: no 'interrupted after step N; checkpoint' line"
    [ -f "$W/one/ckpt/latest" ] || fail "one process: no checkpoint after SIGTERM"
    start pp.log "$pt" train $common --no-save-on-signal --run-dir "$W/pp"
    wait_line "step      2/$steps" 60
    kill -INT "$LP"
    wait_end 60
    [ "$rc" = 130 ] || fail "--no-save-on-signal: exit status $rc after SIGINT, expected 130"
    grep -q '^interrupted after step [0-9]* by SIGINT; not saved (--no-save-on-signal)' "$W/pp.log" ||
        fail "--no-save-on-signal: no 'not saved' line"
    [ -e "$W/pp/ckpt/latest" ] && fail "--no-save-on-signal: a checkpoint was written"
    ;;
*)
    fail "unknown mode $mode"
    ;;
esac
echo "ok: $mode"

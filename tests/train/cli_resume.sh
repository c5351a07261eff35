#!/bin/sh
# `train --resume` takes the model, data and schedule of the checkpoint's run and its learning-rate
# schedule (--steps, --lr, --lr-min, --warmup) unless the command gives them, and says so in one
# 'resume:' line: --model need not be repeated (llama-tiny here, not the default gpt2-tiny), in one
# process and on 2 stages, and the resumed steps are bitwise the uninterrupted run's. A different
# --steps is refused with the fix (exit 2, before anything starts); with --reset-schedule the
# learning rate is re-planned: each step's rate is a fresh run's of the new --steps.
#   cli_resume.sh PIPETRAIN
PT=$1
D=cli_resume
rm -rf $D && mkdir -p $D && cd $D || exit 1
fail() { echo "FAIL: $*"; cat out.txt err.txt 2>/dev/null; exit 1; }
small="--threads 1 --micro-batches 2 --micro-batch-size 2 --seq-len 32 --eval-batches 0 --comm-timeout 60"
# field FILE STEP KEY: the KEY of STEP's metrics line
field() { sed -n "s/.*\"step\":$2,\"loss\":.*\"$3\":\([^,}]*\).*/\1/p" "$1" | head -n 1; }
field_loss() { sed -n "s/.*\"step\":$2,\"loss\":\([^,]*\),.*/\1/p" "$1" | head -n 1; }
"$PT" train --model llama-tiny --stages 1 $small --steps 4 --ckpt-every 2 --lr 1e-3 --run-dir a > out.txt 2> err.txt ||
    fail "the first run failed"
restart() { # restart DIR: DIR/ckpt holds only a's step 2
    rm -rf "$1" && mkdir -p "$1/ckpt" && cp -r a/ckpt/step_000002 "$1/ckpt/" && echo step_000002 > "$1/ckpt/latest"
}
# --resume alone: llama-tiny, lr 1e-3 over 4 steps from the checkpoint; steps 3 and 4 as in a
restart b
"$PT" train --stages 1 $small --resume --run-dir b > out.txt 2> err.txt || fail "--resume without --model failed"
grep -q '^resume: step 2 from b/ckpt/step_000002: model llama-tiny, data builtin' out.txt || fail "no resume: line"
grep -q 'over 4 steps' out.txt || fail "the resume line does not give the checkpoint's --steps"
grep -q '^training llama-tiny' out.txt || fail "the resumed run is not llama-tiny"
for s in 3 4; do
    [ -n "$(field_loss a/metrics.jsonl $s)" ] && [ "$(field_loss a/metrics.jsonl $s)" = "$(field_loss b/metrics.jsonl $s)" ] ||
        fail "step $s: loss $(field_loss b/metrics.jsonl $s), uninterrupted $(field_loss a/metrics.jsonl $s)"
    [ "$(field a/metrics.jsonl $s lr)" = "$(field b/metrics.jsonl $s lr)" ] || fail "step $s: the learning rate changed"
done
# on 2 stages, still without --model
restart p
"$PT" train --stages 2 $small --resume --run-dir p > out.txt 2> err.txt || fail "--resume on 2 stages failed"
grep -q '^resume: step 2 .*changes: 2 stages (was 1)' out.txt || fail "the resume line does not say the layout changes"
[ "$(field_loss a/metrics.jsonl 4)" = "$(field_loss p/metrics.jsonl 4)" ] || fail "2 stages: step 4 loss differs"
# another --steps: refused before anything starts, with the fix
restart c
"$PT" train --stages 2 $small --resume --run-dir c --steps 8 > out.txt 2> err.txt
[ $? -eq 2 ] || fail "a different --steps was not refused with exit 2"
grep -q "the checkpoint's run has --steps 4; pass --steps 4, or --reset-schedule to re-plan the learning rate over 8 steps" err.txt ||
    fail "the refusal does not give the fix"
! grep -q launching out.txt || fail "ranks were launched"
"$PT" train --stages 1 $small --resume --run-dir c --lr 3e-3 > out.txt 2> err.txt
[ $? -eq 2 ] && grep -q "has --lr 0.001; pass --lr 0.001" err.txt || fail "a different --lr was not refused"
# with --reset-schedule: the rate of a fresh 8-step run at every step from 3 on
"$PT" train --stages 1 $small --resume --run-dir c --steps 8 --reset-schedule > out.txt 2> err.txt ||
    fail "--reset-schedule failed"
grep -q 'changes: --steps 8 (was 4); the learning rate is re-planned over 8 steps' out.txt || fail "no re-plan line"
"$PT" train --model llama-tiny --stages 1 $small --steps 8 --lr 1e-3 --no-ckpt --run-dir f > /dev/null 2>&1 ||
    fail "the fresh 8-step run failed"
for s in 3 5 8; do
    [ -n "$(field f/metrics.jsonl $s lr)" ] && [ "$(field f/metrics.jsonl $s lr)" = "$(field c/metrics.jsonl $s lr)" ] ||
        fail "step $s: lr $(field c/metrics.jsonl $s lr), a fresh --steps 8 run's $(field f/metrics.jsonl $s lr)"
done
# a checkpoint at the end of its run: nothing to continue without a new schedule
"$PT" train --stages 1 $small --resume --run-dir a > out.txt 2> err.txt
[ $? -eq 2 ] && grep -q 'the end of a run of --steps 4' err.txt || fail "resuming a finished run was not refused"
echo "ok: --resume takes the checkpoint's model and schedule; --steps changes need --reset-schedule"

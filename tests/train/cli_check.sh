#!/bin/sh
# `pipetrain train` and `pipetrain launch -- pipetrain train` check the whole job in the process
# that would start the ranks (src/cli/job_check.c): a bad model, data, schedule, plan, backend or
# checkpoint with --stages 2 is ONE error line and exit status 2, and no rank is started (no
# 'launching' line, no '[rank N]' output); more threads than 4x the cores, or more predicted memory
# than the RAM, is refused unless --force. `pipetrain plan` refuses bad inputs the same way, and
# `pipetrain prepare` an --output that is its own input.
#   cli_check.sh PIPETRAIN SOURCE_DIR
PT=$1
SRC=$2
D=cli_check
rm -rf $D && mkdir -p $D && cd $D || exit 1
fail() { echo "FAIL: $*"; cat out.txt err.txt 2>/dev/null; exit 1; }
small="--steps 2 --seq-len 32 --eval-batches 0 --comm-timeout 30"
# refused: exit 2, one line on stderr naming the fix, nothing started
refused() { # refused NEEDLE ARGS...
    needle=$1
    shift
    timeout 60 "$PT" "$@" > out.txt 2> err.txt
    code=$?
    [ $code -eq 2 ] || fail "$* exited $code, not 2"
    [ "$(wc -l < err.txt)" -eq 1 ] || fail "$*: $(wc -l < err.txt) error lines, not one"
    grep -q -- "$needle" err.txt || fail "$*: the error does not say '$needle'"
    ! grep -q launching out.txt || fail "$*: ranks were launched"
    ! grep -q '^\[rank' out.txt err.txt || fail "$*: a rank ran"
}
refused "cannot open token file nosuch.bin" train --stages 2 $small --data nosuch.bin --run-dir r1
refused "is not one of: gpipe, 1f1b" train --stages 2 $small --schedule foo --run-dir r2
printf '{"n_layer": 2, "n_head": 3, "n_embd": 64}' > bad_model.json
refused "bad_model.json" train --stages 2 $small --model bad_model.json --run-dir r3
refused "make the counts sum to 6" train --stages 2 $small --layout 3,2 --run-dir r4
refused "fits 2 device" train --stages 2 $small --mem-limit 1K --run-dir r5
refused "nosuch-costs.json" train --stages 2 $small --layer-costs nosuch-costs.json --run-dir r6
refused "backend" train --stages 2 $small --backend foo --run-dir r7
refused "--resume: r8/ckpt" train --stages 2 $small --resume --run-dir r8
refused "needs --seq-len of at least" train --stages 2 --steps 2 --seq-len 16 --eval-batches 0 --run-dir r17
refused "the final learning rate" train --stages 2 $small --lr-min 1 --run-dir r9
# a schedule file of 3 ranks: the ranks it needs are the file's
refused "has 3 ranks" train --stages 2 $small --schedule "$SRC/tests/schedule/golden/1f1b_p3_m4.txt" --nproc 2 --run-dir r10
# the machine: threads x local ranks more than 4x the cores, and memory past the RAM, need --force
refused "--force" train --stages 2 $small --threads 64 --run-dir r11
refused "local ranks on a machine with" train --dp 64 $small --run-dir r12
# 8 ranks of gpt2-xl (1.5B parameters) are predicted at about 105 GiB (skipped on a machine that has that)
mem_kib=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
if [ "${mem_kib:-0}" -lt 100000000 ]; then
    refused "GiB (the planner's prediction" train --stages 2 --dp 4 $small --model gpt2-xl --run-dir r13
fi
# a one-process run is checked the same way
refused "--force" train --stages 1 $small --threads 64 --run-dir r14
refused "cannot open token file" train --stages 1 $small --data nosuch.bin --run-dir r15
# pipetrain launch checks the train command it would start
refused "cannot open token file nosuch.bin" launch --nproc 2 -- "$PT" train --stages 2 $small --data nosuch.bin
refused "--force" launch --nproc 2 -- "$PT" train --stages 2 $small --threads 64
refused "need 2 ranks but the job has 3" launch --nproc 3 -- "$PT" train --stages 2 $small
# pipetrain plan refuses the same inputs the same way
refused "nosuch-costs.json" plan --model gpt2-tiny --stages 2 --layer-costs nosuch-costs.json
refused "neither a preset nor a readable JSON config" plan --model nosuch.json --stages 2
# settings that were accepted silently (issue 21): a negative --grad-clip or --warmup, and a
# --micro-batches that a schedule file of another micro-batch count overrode
refused "--grad-clip -1: must be >= 0 (0 turns clipping off)" train --stages 2 $small --grad-clip -1 --run-dir r18
refused "--grad-clip -1: must be >= 0" train --stages 1 $small --grad-clip -1 --run-dir r19
refused "--warmup -5: give 0 or more steps" train --stages 2 $small --warmup -5 --run-dir r20
refused "--micro-batches 8 disagrees with --schedule .*zbv_p2_m4.txt, which has 4 micro-batches; drop --micro-batches, or make the file for 8: pipetrain simulate --schedule zbv --stages 2 --chunks 2 --micro-batches 8" \
    train --stages 2 $small --schedule "$SRC/tests/schedule/golden/zbv_p2_m4.txt" --micro-batches 8 --run-dir r21
refused "--micro-batches 8 disagrees with --schedule" \
    launch --nproc 2 -- "$PT" train --stages 2 $small --schedule "$SRC/tests/schedule/golden/zbv_p2_m4.txt" --micro-batches 8
# --zero takes 0 or 1 (issue 17); --zero 1 with one replica says there is nothing to shard and runs
refused "--zero 2: give 0 (every replica holds its stage's whole optimizer state) or 1" train --stages 2 --dp 2 $small --zero 2 --run-dir r22
timeout 120 "$PT" train --stages 2 --zero 1 $small --no-ckpt --run-dir r23 > out.txt 2> err.txt || fail "--zero 1 --dp 1 did not run"
grep -q -- '--zero 1 with one replica (--dp 1): nothing to shard' out.txt || fail "--zero 1 --dp 1 did not say there is nothing to shard"
# pipetrain prepare refuses an --output that is its input (by name, by another name, or its sidecar)
printf 'the source text, which prepare must not overwrite\n' > src.bin
cp src.bin src.orig
ln src.bin link.bin
refused "--output src.bin is the input src.bin (the same file)" prepare --input src.bin --output src.bin --quiet
refused "is the input ./src.bin (the same file)" prepare --input ./src.bin --output link.bin --quiet
cp src.orig side.bin.json
refused "would write its sidecar side.bin.json over the input side.bin.json" prepare --input side.bin.json --format text --output side.bin --quiet
cmp -s src.bin src.orig || fail "prepare changed its input src.bin"
cmp -s side.bin.json src.orig || fail "prepare changed its input side.bin.json"
[ ! -e src.bin.json ] || fail "prepare wrote a sidecar for a refused output"
# --force goes on, saying what it let through
timeout 120 "$PT" train --stages 1 --threads 16 --force --steps 1 --seq-len 32 --micro-batch-size 1 --eval-batches 0 \
    --no-ckpt --run-dir r16 > out.txt 2> err.txt || fail "--force did not run"
grep -q -- '--force: 16 threads on' out.txt || fail "--force did not say what it let through"
grep -q '^done: 1 steps' out.txt || fail "the forced run did not finish"
echo "ok: every bad job refused in one line, exit 2, before any rank started"

#!/bin/sh
# --resume over a checkpoint whose tensor data is damaged (the manifest is fine, so only decoding
# finds it): the run falls back to the newest older checkpoint that loads, says so, and goes on.
set -e
B=$1
D=resume_damaged
rm -rf $D
opts="--stages 1 --eval-batches 0 --micro-batch-size 2 --seq-len 32 --threads 1 --run-dir $D"
"$B" train $opts --steps 4 --ckpt-every 2 > /dev/null
test "$(cat $D/ckpt/latest)" = step_000004
# damage four bytes inside the first tensor's stored data
printf '\377\377\377\377' | dd of=$D/ckpt/step_000004/shard-0.ptz bs=1 seek=200 conv=notrunc 2> /dev/null
"$B" train $opts --steps 6 --reset-schedule --resume > out.txt 2>&1 || { cat out.txt; exit 1; }
grep -q 'resuming after step 2' out.txt || { cat out.txt; exit 1; }
grep -q 'step_000004/shard-0.ptz: tensor .* damaged.*resumed from step_000002 instead' out.txt || { cat out.txt; exit 1; }
grep -q 'done: 6 steps' out.txt || { cat out.txt; exit 1; }
# a step directory named explicitly is not second-guessed: its damage is an error
if "$B" train $opts --steps 6 --reset-schedule --resume --ckpt-dir $D/ckpt/step_000004 > out2.txt 2>&1; then
  cat out2.txt; exit 1
fi
grep -q 'damaged' out2.txt || { cat out2.txt; exit 1; }
echo "resume falls back past a damaged checkpoint"

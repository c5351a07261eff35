#!/bin/sh
# train.cli_head_split: `pipetrain train --head-split auto` on a model whose LM head is most of the
# work (wide-vocab.json: 2 blocks of width 64, 4096 words) splits the head for 2 stages, trains,
# and evaluates exactly as one process with the same split; its checkpoint resumes in one process
# with the head whole (same parameters: the split only changes how the head is computed).
# usage: cli_head_split.sh PIPETRAIN SOURCE_DIR
set -u
pt=$1
model=$2/wide-vocab.json
rm -rf hs_pp hs_1 hs_r hs_out.txt hs1_out.txt hs_resume.txt
fail() { echo "FAIL: $1"; cat hs_out.txt hs1_out.txt hs_resume.txt 2>/dev/null; exit 1; }
common="--model $model --steps 3 --seq-len 64 --eval-batches 1 --comm-timeout 120"
$pt train $common --head-split auto --run-dir hs_pp > hs_out.txt 2>&1 || fail "the pipeline run failed"
k=$(sed -n 's/.*head split: auto chose \([0-9]*\) LM-head layers.*/\1/p' hs_out.txt | head -n 1)
[ -n "$k" ] && [ "$k" -gt 1 ] || fail "auto did not split the head (got '$k')"
grep -q 'rank 0. done: 3 steps' hs_out.txt || fail "the pipeline did not finish 3 steps"
$pt train $common --stages 1 --threads 1 --head-split "$k" --run-dir hs_1 --no-ckpt > hs1_out.txt 2>&1 ||
    fail "the one-process run failed"
grep 'eval at step 3' hs_out.txt | sed 's/^.rank 0. //' > hs_eval.txt
grep 'eval at step 3' hs1_out.txt > hs1_eval.txt
[ -s hs_eval.txt ] && cmp -s hs_eval.txt hs1_eval.txt || fail "the pipeline's eval differs from one process with --head-split $k"
$pt train --model $model --steps 4 --seq-len 64 --eval-batches 1 --stages 1 --threads 1 --head-split 1 --resume --reset-schedule \
    --run-dir hs_r --ckpt-dir hs_pp/ckpt > hs_resume.txt 2>&1 || fail "resuming the split-head checkpoint with one head layer failed"
grep -q 'resuming after step 3' hs_resume.txt || fail "the resume did not start after step 3"
echo "ok: auto chose $k head layers; pipeline eval == one process; the checkpoint resumes with the head whole"

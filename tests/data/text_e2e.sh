#!/bin/sh
# Real text end to end, as the README shows it: prepare this project's own documentation (real
# English text, in the tree) with GPT-2's tokenizer, train gpt2-tiny on it through two pipeline
# stages, and sample from the checkpoint in one process and through two stages.
#   text_e2e.sh PIPETRAIN SOURCE_DIR
set -eu
B=$1
SRC=$2
rm -rf e2e_data e2e_run
fail() { echo "text_e2e: $*" >&2; for f in prep.txt train.txt sample.txt sample2.txt; do [ -f $f ] && cat $f >&2; done; exit 1; }

# 1. prepare: a folder of markdown files, gpt2 BPE, small shards so the val split and several
#    train shards exist
$B prepare --tokenizer gpt2 --input "$SRC/docs" --output e2e_data --shard-tokens 8192 --val-tokens 4096 \
    > prep.txt 2>&1 || fail "prepare failed"
ls e2e_data/*_val_000000.bin > /dev/null 2>&1 || fail "no val shard"
test "$(ls e2e_data/*_train_*.bin | wc -l)" -ge 2 || fail "expected several train shards"
# the ids of the README's first line are GPT-2's (checked against the reference encoder in data.golden_*)

# 2. train: the data's tokenizer sets the vocabulary (50257), 2 pipeline stages, 1F1B
$B train --model gpt2-tiny --data e2e_data --stages 2 --steps 30 --micro-batch-size 4 --micro-batches 2 \
    --seq-len 64 --lr 3e-3 --warmup 3 --eval-every 30 --eval-batches 2 --run-dir e2e_run --comm-timeout 120 \
    > train.txt 2>&1 || fail "train failed"
grep -q 50257 train.txt || fail "train did not take the tokenizer's vocabulary"
test -f e2e_run/ckpt/latest || fail "no checkpoint"
first=$(grep -o '"loss":[0-9.e+-]*' e2e_run/metrics.jsonl | head -n 1 | cut -d: -f2)
last=$(grep -o '"loss":[0-9.e+-]*' e2e_run/metrics.jsonl | tail -n 1 | cut -d: -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' || fail "loss did not fall (first $first, last $last)"

# 3. sample: text out, with the checkpoint's tokenizer; one process and two stages agree
$B sample --ckpt e2e_run/ckpt --prompt "The pipeline" --max-new-tokens 16 --temperature 0 \
    > sample.txt 2> sample_err.txt || { cat sample_err.txt >&2; fail "sample failed"; }
grep -q '^The pipeline' sample.txt || fail "the sample does not start with the prompt"
test "$(wc -c < sample.txt)" -gt 16 || fail "the sample is empty"
grep -q 'tokens/s' sample_err.txt || fail "sample printed no tokens/s"
$B sample --ckpt e2e_run/ckpt --prompt "The pipeline" --max-new-tokens 16 --temperature 0 --stages 2 \
    > sample2.txt 2> sample2_err.txt || { cat sample2_err.txt >&2; fail "2-stage sample failed"; }
cmp sample.txt sample2.txt || fail "2-stage greedy sample differs from one process"
# a tokenizer that is not the data's is refused
if $B sample --ckpt e2e_run/ckpt --prompt "x" --tokenizer byte > /dev/null 2> mismatch.txt; then fail "tokenizer mismatch accepted"; fi
echo "text_e2e: ok: loss $first -> $last; sample: $(head -c 120 sample.txt | tr '\n' ' ')"

#!/bin/bash
# train.head_chunk: the chunked LM head (`train --head-chunk ROWS|auto|off`, issue 19 "the
# cross-entropy with the LM head's logits never all held at once"; docs/training.md):
#  - every schedule x stage count gives the bits of the one-process run with the same chunks
#    (64 tokens a micro-batch in chunks of 24, 24 and 16 rows; 5 steps): each step's loss, the
#    final weights (`ckpt export`, byte for byte) and the held-out eval; gpt2-tiny P 2 on 1f1b,
#    gpipe, interleaved, zb-h1, zbv; llama-tiny P 2; bf16 P 2; 2 replicas with --zero 1;
#  - chunked is not the whole head (the head's weight gradient sums over the chunks) but within
#    1e-5 of it in every step's loss; one chunk of all rows is the whole head's bits;
#  - auto chunks nothing on these small heads (one chunk: the same bits as off); the run says when
#    it chunks;
#  - with a split head or tensor parallelism, and for a bad value: one line, exit 2, nothing started.
# About 30 s on 2 cores.
set -u
here=$(cd "$(dirname "$0")" && pwd)
PT=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common="--steps 5 --seq-len 64 --micro-batch-size 1 --micro-batches 4 --eval-every 0 --eval-batches 2"
common="$common --comm-timeout 120 --threads 1"
. "$here/runs.sh"

evals() { grep -o 'eval at step [0-9]*: loss [0-9.]*' "$out/$1.log"; }

# same_eval REF NAME: same, and the held-out eval too
same_eval() {
    same "$1" "$2"
    test -n "$(evals "$1")" && test "$(evals "$1")" = "$(evals "$2")" || fail "$2's eval differs from $1's"
}

# one process, chunks of 24 rows; the log says so
run g1 --model gpt2-tiny --stages 1 --head-chunk 24
grep -q "LM head in chunks of 24 of the 64 token rows" "$out/g1.log" || fail "g1: no chunk line"
for s in 1f1b gpipe interleaved zbv zb-h1; do
    run "g2_$s" --model gpt2-tiny --stages 2 --schedule "$s" --head-chunk 24
    same_eval g1 "g2_$s"
done
run l1 --model llama-tiny --stages 1 --head-chunk 24
run l2 --model llama-tiny --stages 2 --head-chunk 24
same_eval l1 l2
run b1 --model gpt2-tiny --stages 1 --head-chunk 24 --precision bf16
run b2 --model gpt2-tiny --stages 2 --head-chunk 24 --precision bf16 --schedule zb-h1
same_eval b1 b2
run d1 --model gpt2-tiny --stages 1 --dp 2 --head-chunk 24
run d2 --model gpt2-tiny --stages 2 --dp 2 --zero 1 --head-chunk 24
same_eval d1 d2

# chunked vs the whole head: close, not equal; one chunk of all rows and auto: the whole head's bits
run off --model gpt2-tiny --stages 1 --head-chunk off
run all --model gpt2-tiny --stages 1 --head-chunk 64
run auto --model gpt2-tiny --stages 1
same_eval off all
same_eval off auto
grep -q "LM head in chunks" "$out/auto.log" && fail "auto: chunked a 64-row micro-batch"
steps off >"$out/off.steps"
python3 - "$out/off.steps" "$out/g1.steps" <<'PY' || fail "chunked vs whole head"
import sys
a = [l.split() for l in open(sys.argv[1])]
b = [l.split() for l in open(sys.argv[2])]
worst = max(abs(float(x[1]) - float(y[1])) / float(x[1]) for x, y in zip(a, b))
if worst > 1e-5:
    sys.exit("chunked loss differs from the whole head's by %.3g (> 1e-5)" % worst)
if all(x[1] == y[1] for x, y in zip(a, b)) and open(sys.argv[1]).read() == open(sys.argv[2]).read():
    sys.exit("chunked gives the whole head's bits: was it chunked?")
print("chunks of 24 vs the whole head: loss within %.3g" % worst)
PY

# refused in one line, exit 2, before anything starts
refuse() {
    local want=$1
    shift
    "$PT" train $common --run-dir "$out/refused" "$@" >"$out/refused.out" 2>&1
    local rc=$?
    test "$rc" -eq 2 || fail "train $*: exit $rc, not 2: $(cat "$out/refused.out")"
    test "$(wc -l <"$out/refused.out")" -eq 1 || fail "train $*: not one line: $(cat "$out/refused.out")"
    grep -q -- "$want" "$out/refused.out" || fail "train $*: '$want' not in: $(cat "$out/refused.out")"
    test ! -e "$out/refused" || fail "train $*: made its run dir"
    echo "refused: $(cat "$out/refused.out")"
}
refuse "head-split" --model gpt2-tiny --stages 2 --head-split 2 --head-chunk 24
refuse "tp" --model gpt2-tiny --tp 2 --head-chunk 24
refuse "head-chunk: 'many'" --model gpt2-tiny --head-chunk many
refuse "head-chunk: '0'" --model gpt2-tiny --head-chunk 0
echo "PASS"

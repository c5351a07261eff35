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
fail() { echo "FAIL: $*"; for f in "$out"/*.log; do echo "== $f"; tail -n 5 "$f"; done; exit 1; }

common="--steps 5 --seq-len 64 --micro-batch-size 1 --micro-batches 4 --eval-every 0 --eval-batches 2"
common="$common --comm-timeout 120 --threads 1"

# run NAME ARGS...: trains into $out/NAME (checkpoint at the end), exports its weights to $out/NAME.st
run() {
    local name=$1
    shift
    "$PT" train $common --run-dir "$out/$name" "$@" >"$out/$name.log" 2>&1 || fail "$name: train $* failed"
    "$PT" ckpt export "$out/$name/ckpt" --format safetensors "$out/$name.st" >>"$out/$name.log" 2>&1 ||
        fail "$name: ckpt export failed"
}

steps() { python3 "$here/metrics_steps.py" "$out/$1/metrics.jsonl"; }
evals() { grep -o 'eval at step [0-9]*: loss [0-9.]*' "$out/$1.log"; }

# same REF NAME: NAME has REF's bits (every step's loss, the weights, the eval)
same() {
    steps "$1" >"$out/$1.steps"
    steps "$2" >"$out/$2.steps"
    test "$(wc -l <"$out/$1.steps")" -eq 5 || fail "$1: $(wc -l <"$out/$1.steps") steps in metrics.jsonl, not 5"
    python3 - "$out/$1.steps" "$out/$2.steps" <<'PY' || fail "$2's losses or norms differ from $1's"
import sys
a = [l.split() for l in open(sys.argv[1])]
b = [l.split() for l in open(sys.argv[2])]
for x, y in zip(a, b):
    if x[1] != y[1] or abs(float(x[2]) - float(y[2])) > 1e-12 * float(x[2]):
        sys.exit("step %s: loss %s norm %s vs loss %s norm %s" % (x[0], x[1], x[2], y[1], y[2]))
PY
    diff -q "$out/$1.st" "$out/$2.st" >/dev/null || fail "$2's weights differ from $1's"
    test -n "$(evals "$1")" && test "$(evals "$1")" = "$(evals "$2")" || fail "$2's eval differs from $1's"
    echo "$2: the bits of $1"
}

# one process, chunks of 24 rows; the log says so
run g1 --model gpt2-tiny --stages 1 --head-chunk 24
grep -q "LM head in chunks of 24 of the 64 token rows" "$out/g1.log" || fail "g1: no chunk line"
for s in 1f1b gpipe interleaved zbv zb-h1; do
    run "g2_$s" --model gpt2-tiny --stages 2 --schedule "$s" --head-chunk 24
    same g1 "g2_$s"
done
run l1 --model llama-tiny --stages 1 --head-chunk 24
run l2 --model llama-tiny --stages 2 --head-chunk 24
same l1 l2
run b1 --model gpt2-tiny --stages 1 --head-chunk 24 --precision bf16
run b2 --model gpt2-tiny --stages 2 --head-chunk 24 --precision bf16 --schedule zb-h1
same b1 b2
run d1 --model gpt2-tiny --stages 1 --dp 2 --head-chunk 24
run d2 --model gpt2-tiny --stages 2 --dp 2 --zero 1 --head-chunk 24
same d1 d2

# chunked vs the whole head: close, not equal; one chunk of all rows and auto: the whole head's bits
run off --model gpt2-tiny --stages 1 --head-chunk off
run all --model gpt2-tiny --stages 1 --head-chunk 64
run auto --model gpt2-tiny --stages 1
same off all
same off auto
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

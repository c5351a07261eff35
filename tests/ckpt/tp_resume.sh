#!/bin/sh
# ckpt.tp_resume: `train --tp` checkpoints end to end (llama-tiny, 2 stages x 2 replicas x 2
# tensor-parallel ranks, --zero 1: 8 ranks).
#  - an uninterrupted run of 4 steps saves after steps 2 and 4: manifest format 4, the column
#    slices as boxes (`ckpt inspect` prints rows x cols), every rank's shard, `ckpt verify --all`
#    passes and `ckpt export` writes the whole model from the slices
#  - its step-2 checkpoint resumed on the same layout gives the uninterrupted run's losses (steps 3,
#    4), final weights (exported) and final moments (every block's value checksum) bit for bit
#  - resumed with --tp 4 on 1 stage x 1 replica (4 micro-batches: the same global batch) it runs to
#    the end from step 2 and its checkpoint (T = 4 boxes) verifies; that step-4 checkpoint resumed
#    with --tp 1 for one more step
set -eu
PT="$1"
dir=$(mktemp -d /tmp/pt_ckpt_tp_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "ckpt.tp_resume: $*" >&2; exit 1; }
common="--model llama-tiny --steps 4 --micro-batch-size 1 --seq-len 32 --eval-every 0 --eval-batches 0 --threads 1
        --data builtin:sort --ckpt-every 2 --comm-timeout 120"
layout="--stages 2 --dp 2 --tp 2 --zero 1 --micro-batches 2"
loss_at() { # loss_at METRICS STEP
    sed -n "s/^{\"step\":$2,\"loss\":\([^,]*\),.*/\1/p" "$1"
}
hashes() { # hashes MANIFEST: every block's value checksum, in the manifest's order
    grep -o '"xxh3":[^,]*' "$1"
}
train() { # train NAME ARGS...: a run in $dir/NAME
    name="$1"
    shift
    "$PT" train $common --run-dir "$dir/$name" "$@" >"$dir/$name.log" 2>&1 || fail "train $name $*: $(tail -3 "$dir/$name.log")"
}
from_step() { # from_step SRC STEP NAME: a root holding only SRC's step_00000STEP, as $dir/NAME-ckpt
    mkdir -p "$dir/$3-ckpt" && cp -r "$1/step_00000$2" "$dir/$3-ckpt/"
}

train t2 $layout --ckpt-dir "$dir/t2/ckpt"
m="$dir/t2/ckpt/step_000002/manifest.json"
grep -q '"version":[[:space:]]*4' "$m" || fail "a --tp 2 checkpoint is not format 4"
grep -q '"box"' "$m" || fail "a --tp 2 checkpoint has no box"
grep -q '"shard":[[:space:]]*"shard-7.ptz"' "$m" || fail "rank 7 (replica 1's slices) stored nothing"
"$PT" ckpt verify "$dir/t2/ckpt" --all >"$dir/verify.txt" 2>&1 || fail "verify: $(cat "$dir/verify.txt")"
"$PT" ckpt inspect "$dir/t2/ckpt" | grep -q 'blocks.0.attn.proj.weight .* rows 0:128 cols 64:128 ' ||
    fail "inspect shows no box of blocks.0.attn.proj.weight: $("$PT" ckpt inspect "$dir/t2/ckpt" | grep attn.proj.weight | head -3)"
"$PT" ckpt export "$dir/t2/ckpt" --format safetensors "$dir/t2.hf" >/dev/null || fail "export t2"

# same layout: bitwise, moments included
from_step "$dir/t2/ckpt" 2 r2
train r2 $layout --resume --ckpt-dir "$dir/r2-ckpt"
grep -q 'resuming after step 2' "$dir/r2.log" || fail "r2 did not resume after step 2: $(cat "$dir/r2.log")"
for s in 3 4; do
    a=$(loss_at "$dir/t2/metrics.jsonl" $s)
    b=$(loss_at "$dir/r2/metrics.jsonl" $s)
    [ -n "$a" ] && [ "$a" = "$b" ] || fail "r2: step $s loss $b, uninterrupted $a"
done
"$PT" ckpt export "$dir/r2-ckpt" --format safetensors "$dir/r2.hf" >/dev/null || fail "export r2"
for f in $(cd "$dir/t2.hf" && ls); do
    cmp -s "$dir/t2.hf/$f" "$dir/r2.hf/$f" || fail "r2: exported $f differs from the uninterrupted run's"
done
[ "$(hashes "$dir/t2/ckpt/step_000004/manifest.json")" = "$(hashes "$dir/r2-ckpt/step_000004/manifest.json")" ] ||
    fail "resumed on the same layout: the final moments (block checksums) differ from the uninterrupted run's"

# T 2 -> 4 on 1 stage x 1 replica, then that checkpoint -> T 1
from_step "$dir/t2/ckpt" 2 r4
train r4 --stages 1 --tp 4 --micro-batches 4 --resume --ckpt-dir "$dir/r4-ckpt"
grep -q 'resuming after step 2' "$dir/r4.log" || fail "r4 did not resume after step 2: $(cat "$dir/r4.log")"
[ -n "$(loss_at "$dir/r4/metrics.jsonl" 4)" ] || fail "r4 has no step 4 loss"
"$PT" ckpt verify "$dir/r4-ckpt" --all >"$dir/verify4.txt" 2>&1 || fail "verify r4: $(cat "$dir/verify4.txt")"
grep -q '"box"' "$dir/r4-ckpt/step_000004/manifest.json" || fail "r4's step 4 (T = 4) has no box"
from_step "$dir/r4-ckpt" 4 r1
train r1 --stages 1 --tp 1 --micro-batches 4 --steps 5 --reset-schedule --resume --ckpt-dir "$dir/r1-ckpt"
grep -q 'resuming after step 4' "$dir/r1.log" || fail "r1 did not resume after step 4: $(cat "$dir/r1.log")"
[ -n "$(loss_at "$dir/r1/metrics.jsonl" 5)" ] || fail "r1 has no step 5 loss"
echo "ckpt.tp_resume: ok (P2 x D2 x T2 --zero 1 resumed bitwise, moments included; T 2 -> 4 -> 1 resumed)"

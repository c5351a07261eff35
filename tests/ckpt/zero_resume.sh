#!/bin/sh
# ckpt.zero_resume: `train --zero 1` checkpoints end to end (gpt2-tiny, 1 stage x 2 replicas).
#  - an uninterrupted --zero 1 run of 4 steps saves after steps 2 and 4; each replica stores its
#    slice of the AdamW moments (pieces, manifest format 3) and `ckpt verify` passes
#  - its step-2 checkpoint resumed with --zero 1 on the same layout gives the uninterrupted run's
#    losses (steps 3, 4), final weights (exported) and final moments (every block's value checksum)
#    bit for bit
#  - resumed with --zero 0 (whole moments on each replica) it gives the same losses and final
#    weights bit for bit too (--zero 0 and 1 compute the same bits); and a --zero 0 checkpoint
#    resumed with --zero 1 likewise
#  - resumed on 2 stages x 1 replica (4 micro-batches: the same global batch) it gives step 3's
#    loss bit for bit and step 4's to rounding (relative 1e-5; the gradient sums go in another order)
set -eu
PT="$1"
dir=$(mktemp -d /tmp/pt_ckpt_zero_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "ckpt.zero_resume: $*" >&2; exit 1; }
common="--model gpt2-tiny --steps 4 --micro-batch-size 2 --micro-batches 2 --seq-len 32 --eval-batches 0 --threads 1
        --data builtin:sort --stages 1 --dp 2 --ckpt-every 2"
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
from_step2() { # from_step2 SRC NAME: a root holding only SRC's step_000002, as $dir/NAME-ckpt
    mkdir -p "$dir/$2-ckpt" && cp -r "$dir/$1/ckpt/step_000002" "$dir/$2-ckpt/"
}
same_run() { # same_run A B: B (resumed after step 2) ended as A did
    for s in 3 4; do
        a=$(loss_at "$dir/$1/metrics.jsonl" $s)
        b=$(loss_at "$dir/$2/metrics.jsonl" $s)
        [ -n "$a" ] && [ "$a" = "$b" ] || fail "$2: step $s loss $b, uninterrupted $1 $a"
    done
    "$PT" ckpt export "$dir/$1/ckpt" --format safetensors "$dir/$1.safetensors" >/dev/null || fail "export $1"
    "$PT" ckpt export "$dir/$2-ckpt" --format safetensors "$dir/$2.safetensors" >/dev/null || fail "export $2"
    cmp -s "$dir/$1.safetensors" "$dir/$2.safetensors" || fail "$2: final weights differ from $1's"
}

train z1 --zero 1 --ckpt-dir "$dir/z1/ckpt"
m="$dir/z1/ckpt/step_000002/manifest.json"
grep -q '"version":[[:space:]]*3' "$m" || fail "a --zero 1 checkpoint is not format 3"
grep -q '"range"' "$m" || fail "a --zero 1 checkpoint has no pieces"
grep -q '"shard":[[:space:]]*"shard-1.ptz"' "$m" || fail "replica 1 stored nothing"
"$PT" ckpt verify "$dir/z1/ckpt" >"$dir/verify.txt" 2>&1 || fail "verify: $(cat "$dir/verify.txt")"
"$PT" ckpt inspect "$dir/z1/ckpt" | grep -q 'adam_m .* [0-9]*:[0-9]* ' || fail "inspect shows no piece"

# --zero 1 -> --zero 1, same layout: bitwise, moments included
from_step2 z1 r11
train r11 --zero 1 --resume --ckpt-dir "$dir/r11-ckpt"
grep -q 'resuming after step 2' "$dir/r11.log" || fail "r11 did not resume after step 2: $(cat "$dir/r11.log")"
same_run z1 r11
[ "$(hashes "$dir/z1/ckpt/step_000004/manifest.json")" = "$(hashes "$dir/r11-ckpt/step_000004/manifest.json")" ] ||
    fail "--zero 1 resumed: the final moments (block checksums) differ from the uninterrupted run's"

# --zero 1 -> --zero 0: the replicas assemble whole moments from both slices
from_step2 z1 r10
train r10 --zero 0 --resume --ckpt-dir "$dir/r10-ckpt"
same_run z1 r10

# --zero 0 -> --zero 1: each replica takes its slice of the whole moments
train z0 --zero 0 --ckpt-dir "$dir/z0/ckpt"
from_step2 z0 r01
train r01 --zero 1 --resume --ckpt-dir "$dir/r01-ckpt"
same_run z0 r01
# --zero 1, 1 x 2 -> 2 stages x 1 replica: the slices assembled into each stage's whole moments
from_step2 z1 rp2
"$PT" train $(echo "$common" | sed 's/--micro-batches 2/--micro-batches 4/; s/--stages 1 --dp 2/--stages 2 --dp 1/') \
    --resume --run-dir "$dir/rp2" --ckpt-dir "$dir/rp2-ckpt" >"$dir/rp2.log" 2>&1 || fail "rp2: $(tail -3 "$dir/rp2.log")"
[ "$(loss_at "$dir/z1/metrics.jsonl" 3)" = "$(loss_at "$dir/rp2/metrics.jsonl" 3)" ] ||
    fail "1 x 2 -> 2 x 1: step 3 loss $(loss_at "$dir/rp2/metrics.jsonl" 3), uninterrupted $(loss_at "$dir/z1/metrics.jsonl" 3)"
a=$(loss_at "$dir/z1/metrics.jsonl" 4)
b=$(loss_at "$dir/rp2/metrics.jsonl" 4)
awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-5 * a) }' ||
    fail "1 x 2 -> 2 x 1: step 4 loss $b, uninterrupted $a"
echo "ckpt.zero_resume: ok (--zero 1 resumed bitwise, moments included; 1 -> 0 and 0 -> 1 bitwise; D 2 -> 1 x P 1 -> 2 to rounding)"

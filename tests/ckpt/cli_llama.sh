#!/bin/sh
# ckpt.cli_llama: Hugging Face Llama checkpoints through the `pipetrain ckpt` tools and --init-from,
# on llama-tiny (untied) and a tied llama written below.
#  - export writes config.json + model.safetensors; import -> export gives the same bytes, in F32
#    and BF16, and from a sharded export (--shard-size: model-0000i-of-0000n + index); sample
#    --init-from the export (1 and 2 stages) continues a prompt as sample --ckpt does
#  - train --init-from DIR takes the model config from DIR, and starts from its weights in one
#    process and in a 2-stage pipeline alike (same first loss, not a fresh initialisation's)
#  - reshard: a checkpoint of 2 stages x 2 replicas resumes on 3 stages and on 1 process; one of 2
#    stages resumes on 3 with the uninterrupted run's loss, bit for bit
#  - refusals: --dtype/--shard-size for gpt2, an unknown --dtype, a bad --shard-size, an unsupported
#    config.json field, each one line with exit status 2
set -eu
PT="$1"
dir=$(mktemp -d /tmp/pt_ckpt_llama_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "ckpt.cli_llama: $*" >&2; exit 1; }
common="--micro-batch-size 2 --micro-batches 4 --seq-len 32 --eval-batches 0 --threads 1 --data builtin:sort"
loss_at() { # loss_at METRICS STEP
    sed -n "s/^{\"step\":$2,\"loss\":\([^,]*\),.*/\1/p" "$1"
}

cat >"$dir/tied.json" <<'EOF'
{ "name": "llama-tied-mini", "architecture": "llama", "n_layer": 3, "n_head": 4, "n_kv_head": 1, "n_embd": 64,
  "intermediate_size": 96, "vocab_size": 256, "max_seq_len": 64, "rms_norm_eps": 1e-6, "rope_theta": 500000,
  "tie_word_embeddings": true,
  "rope_scaling": { "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64 } }
EOF

for model in llama-tiny "$dir/tied.json"; do
    t=$(basename "$model" .json)
    d="$dir/$t"
    "$PT" train --model "$model" --steps 2 $common --run-dir "$d/run" --ckpt-dir "$d/a" >/dev/null 2>&1 ||
        fail "$t: train failed"
    "$PT" ckpt export "$d/a" --format safetensors "$d/hf" >/dev/null || fail "$t: export failed"
    [ -f "$d/hf/config.json" ] && [ -f "$d/hf/model.safetensors" ] || fail "$t: export wrote no config.json + model.safetensors"
    grep -q '"LlamaForCausalLM"' "$d/hf/config.json" || fail "$t: config.json names no LlamaForCausalLM"
    if [ "$t" = tied ]; then
        grep -q '"tie_word_embeddings":[[:space:]]*true' "$d/hf/config.json" || fail "tied: config.json is not tied"
        grep -q '"rope_type":[[:space:]]*"llama3"' "$d/hf/config.json" || fail "tied: config.json lost rope_scaling"
    fi
    "$PT" ckpt import "$d/hf" "$d/b" >/dev/null || fail "$t: import of the directory failed"
    "$PT" ckpt export "$d/b" --format safetensors "$d/hf2" >/dev/null || fail "$t: second export failed"
    cmp -s "$d/hf/model.safetensors" "$d/hf2/model.safetensors" || fail "$t: export -> import -> export changed the weights"
    cmp -s "$d/hf/config.json" "$d/hf2/config.json" || fail "$t: export -> import -> export changed config.json"
    # the exported directory generates what the checkpoint generates (greedy, 1 and 2 stages)
    want=$("$PT" sample --ckpt "$d/a" --prompt-ids "65 66 67" --temperature 0 --ids --max-new-tokens 8 --threads 1 2>/dev/null)
    for P in 1 2; do
        got=$("$PT" sample --init-from "$d/hf" --prompt-ids "65 66 67" --temperature 0 --ids --max-new-tokens 8 \
            --threads 1 --stages $P 2>"$dir/err") || fail "$t: sample --init-from the export failed: $(cat "$dir/err")"
        [ -n "$want" ] && [ "$got" = "$want" ] || fail "$t: sample --init-from the export ($P stages): '$got', the checkpoint '$want'"
    done

    # bf16
    "$PT" ckpt export "$d/a" --format safetensors "$d/hfb" --dtype bf16 >/dev/null || fail "$t: bf16 export failed"
    "$PT" ckpt import "$d/hfb" "$d/c" >/dev/null || fail "$t: bf16 import failed"
    "$PT" ckpt export "$d/c" --format safetensors "$d/hfb2" --dtype bf16 >/dev/null || fail "$t: second bf16 export failed"
    cmp -s "$d/hfb/model.safetensors" "$d/hfb2/model.safetensors" || fail "$t: bf16 export -> import -> export differs"
    size32=$(wc -c <"$d/hf/model.safetensors")
    size16=$(wc -c <"$d/hfb/model.safetensors")
    [ $((size16 * 2)) -lt $((size32 + 8192)) ] || fail "$t: the bf16 file ($size16 bytes) is not half the f32 one ($size32)"

    # sharded
    "$PT" ckpt export "$d/a" --format safetensors "$d/hfs" --shard-size $((size32 / 4)) >/dev/null || fail "$t: sharded export failed"
    [ -f "$d/hfs/model.safetensors.index.json" ] && [ ! -f "$d/hfs/model.safetensors" ] ||
        fail "$t: --shard-size $((size32 / 4)) wrote no index (or also model.safetensors)"
    n=$(ls "$d/hfs" | grep -c '^model-[0-9]\{5\}-of-[0-9]\{5\}\.safetensors$' || true)
    [ "$n" -ge 4 ] || fail "$t: --shard-size $((size32 / 4)) made $n shards"
    "$PT" ckpt import "$d/hfs" "$d/e" >/dev/null || fail "$t: import of the sharded export failed"
    "$PT" ckpt export "$d/e" --format safetensors "$d/hf3" >/dev/null || fail "$t: export of the sharded import failed"
    cmp -s "$d/hf/model.safetensors" "$d/hf3/model.safetensors" || fail "$t: sharded export -> import -> export differs"
done

# --init-from DIR: the model from DIR, the same start in one process and in 2 stages
h="$dir/llama-tiny/hf"
"$PT" train --init-from "$h" --steps 1 $common --no-ckpt --stages 1 --run-dir "$dir/i1" >/dev/null 2>&1 ||
    fail "train --init-from failed"
"$PT" train --init-from "$h" --steps 1 $common --no-ckpt --stages 2 --run-dir "$dir/i2" >/dev/null 2>"$dir/err" ||
    fail "train --init-from --stages 2 failed: $(cat "$dir/err")"
"$PT" train --model llama-tiny --steps 1 $common --no-ckpt --stages 1 --run-dir "$dir/i0" >/dev/null 2>&1 ||
    fail "train failed"
l1=$(loss_at "$dir/i1/metrics.jsonl" 1)
l2=$(loss_at "$dir/i2/metrics.jsonl" 1)
l0=$(loss_at "$dir/i0/metrics.jsonl" 1)
[ -n "$l1" ] && [ "$l1" = "$l2" ] || fail "--init-from: first loss $l1 in one process, $l2 in 2 stages"
[ "$l1" != "$l0" ] || fail "--init-from: the first loss $l1 is a fresh initialisation's"
grep -q '"name":[[:space:]]*"hf"' "$dir/i1/config.json" || fail "--init-from DIR did not take the model config from DIR"

# reshard: P and D. Runs of 3 steps (the lr schedule spans the 3) save after step 2; a copy of that
# checkpoint resumes on another layout for step 3.
r="$dir/reshard"
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-5 * (b < 0 ? -b : b)) }'; }
step2() { # step2 NAME LAYOUT...: train 3 steps on LAYOUT, keep a root holding only step_000002 as $r/NAME-2
    name="$1"
    shift
    "$PT" train --model llama-tiny --steps 3 $common "$@" --ckpt-every 2 --run-dir "$r/$name" --ckpt-dir "$r/$name/ckpt" \
        >/dev/null 2>"$dir/err" || fail "train $*: $(tail -3 "$dir/err")"
    mkdir -p "$r/$name-2" && cp -r "$r/$name/ckpt/step_000002" "$r/$name-2/"
}
"$PT" train --model llama-tiny --steps 3 $common --stages 1 --run-dir "$r/full" --no-ckpt >/dev/null 2>&1 ||
    fail "the uninterrupted run failed"
want=$(loss_at "$r/full/metrics.jsonl" 3)
step2 p2 --stages 2
"$PT" train --model llama-tiny --steps 3 $common --stages 3 --resume --run-dir "$r/p3" --ckpt-dir "$r/p2-2" \
    >/dev/null 2>"$dir/err" || fail "resume of 2 stages on 3 failed: $(tail -3 "$dir/err")"
got=$(loss_at "$r/p3/metrics.jsonl" 3)
[ -n "$want" ] && [ "$want" = "$got" ] || fail "2 stages -> 3: step 3 loss $got, uninterrupted $want"
# the same global batch (16 sequences) as 2 replicas x 4 micro-batches, and as 1 x 8
"$PT" train --model llama-tiny --steps 3 $common --stages 1 --micro-batches 8 --run-dir "$r/full8" --no-ckpt \
    >/dev/null 2>&1 || fail "the uninterrupted run (M 8) failed"
want=$(loss_at "$r/full8/metrics.jsonl" 3)
step2 pd --stages 2 --dp 2
for layout in 3 1; do
    cp -r "$r/pd-2" "$r/pd-2-$layout" # each resume saves its own step 3
    "$PT" train --model llama-tiny --steps 3 $common --stages $layout --micro-batches 8 --resume --run-dir "$r/pd-$layout" \
        --ckpt-dir "$r/pd-2-$layout" >/dev/null 2>"$dir/err" ||
        fail "resume of 2 stages x 2 replicas on --stages $layout failed: $(tail -3 "$dir/err")"
    got=$(loss_at "$r/pd-$layout/metrics.jsonl" 3)
    close "$got" "$want" || fail "2 stages x 2 replicas -> $layout: step 3 loss $got, uninterrupted $want"
done

# refusals
"$PT" train --model gpt2-tiny --steps 1 $common --run-dir "$dir/g" --ckpt-dir "$dir/g/ckpt" >/dev/null 2>&1 || fail "gpt2 train failed"
expect_usage() { # expect_usage NEEDLE CMD...
    needle="$1"
    shift
    if "$@" >/dev/null 2>"$dir/err"; then fail "$* should have failed"; else code=$?; fi
    [ "$code" = 2 ] || fail "$*: exit $code, want 2 ($(cat "$dir/err"))"
    grep -q -- "$needle" "$dir/err" || fail "$*: the error does not name $needle: $(cat "$dir/err")"
    [ "$(wc -l <"$dir/err")" -eq 1 ] || fail "$*: more than one line: $(cat "$dir/err")"
}
expect_usage "--dtype bf16" "$PT" ckpt export "$dir/g/ckpt" --format safetensors "$dir/g.safetensors" --dtype bf16
expect_usage "f16" "$PT" ckpt export "$dir/llama-tiny/a" --format safetensors "$dir/x" --dtype f16
expect_usage "--shard-size" "$PT" ckpt export "$dir/llama-tiny/a" --format safetensors "$dir/x" --shard-size lots
sed 's/"silu"/"gelu"/' "$h/config.json" >"$dir/cfg.json"
mkdir -p "$dir/gelu" && cp "$dir/cfg.json" "$dir/gelu/config.json" && cp "$h/model.safetensors" "$dir/gelu/"
expect_usage "hidden_act" "$PT" ckpt import "$dir/gelu" "$dir/y"
echo "ckpt.cli_llama: ok"

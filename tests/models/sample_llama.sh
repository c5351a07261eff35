#!/bin/sh
# models.sample_llama: `pipetrain sample` of Llama checkpoints end to end.
#  - llama-tiny (untied LM head, 2 kv heads of 4) trained a few steps through 2 stages, with
#    greedy --sample-every samples: sample --ckpt (its recorded byte tokenizer) continues the
#    prompt; greedy and seeded ids equal in 1, 2 and 3 stages; the last step's greedy training
#    sample (generated through the 2 training stages) is sample --ckpt's greedy text; the same run in
#    one process prints the same samples and trains the same losses
#  - a tied llama with one kv head (a JSON config, Llama 3.1 rope scaling) trained through 3
#    stages, so the head's chunk holds a copy of wte that the checkpoint does not save: sampled in 1
#    and 2 stages alike
#  - llama-tiny trained with its LM head split into 2 shards through 3 stages samples in 1 and 2
#    stages alike
#  - refusals: prompt + --max-new-tokens past the context exit 2 in one line
set -eu
PT="$1"
dir=$(mktemp -d /tmp/pt_sample_llama_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "models.sample_llama: $*" >&2; exit 1; }

prompt="sort:dcab="
ltrain="--model llama-tiny --steps 12 --micro-batches 2 --micro-batch-size 4 --seq-len 32 --eval-batches 0 --threads 1"
"$PT" train $ltrain --stages 2 --sample-every 6 --sample-prompt "$prompt" --sample-tokens 8 --sample-temperature 0 \
    --run-dir "$dir/run" --ckpt-dir "$dir/ck" >"$dir/train.log" 2>&1 || fail "train llama-tiny failed: $(tail -3 "$dir/train.log")"
"$PT" train $ltrain --stages 1 --sample-every 6 --sample-prompt "$prompt" --sample-tokens 8 --sample-temperature 0 \
    --run-dir "$dir/run1" --no-ckpt >"$dir/train1.log" 2>&1 || fail "one-process train llama-tiny failed: $(tail -3 "$dir/train1.log")"
samples() { sed 's/^\[rank 0\] //' "$1" | awk '/^sample at step/ { on = 1; n = 0 } on { print } on && /^---$/ { if (++n == 2) on = 0 }'; }
samples "$dir/train.log" >"$dir/s2"
samples "$dir/train1.log" >"$dir/s1"
[ "$(grep -c '^sample at step' "$dir/s2")" -eq 2 ] || fail "expected samples at steps 6 and 12: $(cat "$dir/train.log")"
cmp -s "$dir/s1" "$dir/s2" || fail "pipelined llama samples differ from one process's: $(cat "$dir/s2") vs $(cat "$dir/s1")"
for r in run run1; do grep -o '"loss":[^,]*' "$dir/$r/metrics.jsonl" >"$dir/$r.loss"; done
cmp -s "$dir/run.loss" "$dir/run1.loss" || fail "2 stages and one process trained different llama losses"
grep -q '"architecture":.*"llama"' "$dir"/ck/step_*/manifest.json || fail "the checkpoint does not record a llama config"

out=$("$PT" sample --ckpt "$dir/ck" --prompt "$prompt" --temperature 0 --max-new-tokens 8 --threads 1 2>"$dir/err") ||
    fail "sample --ckpt of llama-tiny failed: $(cat "$dir/err")"
case "$out" in "$prompt"?*) ;; *) fail "sample --ckpt printed '$out'" ;; esac
grep -q "8 new tokens.*greedy" "$dir/err" || fail "no tokens/s line on stderr: $(cat "$dir/err")"
# the step-12 greedy sample of the training run (through its 2 stages, the final weights) is the same text
# (the text between the "---" lines under the step's header; $(...) drops trailing newlines on both sides)
sed 's/^\[rank 0\] //' "$dir/train.log" |
    awk '/^sample at step 12 \(8 tokens, greedy\):$/ { on = 1; next } on && /^---$/ { if (++n == 2) exit; next } on { print }' >"$dir/s12"
[ -s "$dir/s12" ] || fail "no greedy sample at step 12 in the training log: $(tail -5 "$dir/train.log")"
[ "$prompt$(cat "$dir/s12")" = "$out" ] || fail "training's step-12 sample '$(cat "$dir/s12")' differs from sample --ckpt '$out'"

for mode in "--temperature 0" "--temperature 0.9 --top-k 20 --seed 5"; do
    one=$("$PT" sample --ckpt "$dir/ck" --prompt "$prompt" $mode --ids --max-new-tokens 16 --threads 1 2>"$dir/err") ||
        fail "sample $mode failed: $(cat "$dir/err")"
    [ "$(echo "$one" | wc -w)" -eq 16 ] || fail "sample $mode: expected 16 ids, got '$one'"
    for P in 2 3; do
        got=$("$PT" sample --ckpt "$dir/ck" --prompt "$prompt" $mode --ids --max-new-tokens 16 --threads 1 --stages $P 2>"$dir/err") ||
            fail "sample $mode --stages $P failed: $(cat "$dir/err")"
        [ "$got" = "$one" ] || fail "sample $mode: $P stages gave '$got', one process '$one'"
    done
done

# tied, one kv head, rope scaling; trained through 3 stages (the head chunk's wte is a copy)
cat >"$dir/tied.json" <<'EOF'
{ "name": "llama-tied-mqa", "architecture": "llama", "n_layer": 3, "n_head": 4, "n_kv_head": 1,
  "n_embd": 64, "intermediate_size": 176, "vocab_size": 256, "max_seq_len": 64,
  "rope_theta": 500000, "tie_word_embeddings": true,
  "rope_scaling": { "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4,
                    "original_max_position_embeddings": 16, "rope_type": "llama3" } }
EOF
"$PT" train --model "$dir/tied.json" --stages 3 --steps 4 --micro-batches 3 --micro-batch-size 2 --seq-len 32 \
    --eval-batches 0 --threads 1 --run-dir "$dir/run_t" --ckpt-dir "$dir/ck_t" >"$dir/train_t.log" 2>&1 ||
    fail "train of the tied llama failed: $(tail -3 "$dir/train_t.log")"
one=$("$PT" sample --ckpt "$dir/ck_t" --prompt "$prompt" --temperature 0.8 --seed 2 --ids --max-new-tokens 20 --threads 1 2>"$dir/err") ||
    fail "sample of the tied llama failed: $(cat "$dir/err")"
two=$("$PT" sample --ckpt "$dir/ck_t" --prompt "$prompt" --temperature 0.8 --seed 2 --ids --max-new-tokens 20 --threads 1 --stages 2 2>"$dir/err") ||
    fail "sample --stages 2 of the tied llama failed: $(cat "$dir/err")"
[ "$one" = "$two" ] || fail "tied llama: 2 stages gave '$two', one process '$one'"

# llama-tiny with its untied LM head split into 2 vocabulary shards, through 3 stages: the checkpoint
# saves lm_head.weight once (pt_model_tensor_is_copy); sample reads it by name into one head layer
"$PT" train --model llama-tiny --steps 3 --stages 3 --micro-batches 3 --micro-batch-size 2 --seq-len 32 --eval-batches 0 \
    --threads 1 --head-split 2 --run-dir "$dir/run_h" --ckpt-dir "$dir/ck_h" >"$dir/train_h.log" 2>&1 ||
    fail "train with --head-split 2 failed: $(tail -3 "$dir/train_h.log")"
one=$("$PT" sample --ckpt "$dir/ck_h" --prompt "$prompt" --temperature 0.7 --seed 3 --ids --max-new-tokens 12 --threads 1 2>"$dir/err") ||
    fail "sample of the split-head checkpoint failed: $(cat "$dir/err")"
two=$("$PT" sample --ckpt "$dir/ck_h" --prompt "$prompt" --temperature 0.7 --seed 3 --ids --max-new-tokens 12 --threads 1 --stages 2 2>"$dir/err") ||
    fail "sample --stages 2 of the split-head checkpoint failed: $(cat "$dir/err")"
[ "$one" = "$two" ] || fail "split-head checkpoint: 2 stages gave '$two', one process '$one'"

set +e
"$PT" sample --ckpt "$dir/ck_t" --prompt "$prompt" --max-new-tokens 60 >/dev/null 2>"$dir/err"
rc=$?
set -e
[ $rc -eq 2 ] || fail "prompt + --max-new-tokens past the context: exit $rc, want 2"
grep -q "context of 64; use --max-new-tokens 54" "$dir/err" || fail "no fix in: $(cat "$dir/err")"
[ "$(wc -l <"$dir/err")" -eq 1 ] || fail "more than one line: $(cat "$dir/err")"
echo "models.sample_llama: ok"

#!/bin/sh
# models.sample_cli: `pipetrain sample` end to end.
#  - PyTorch's greedy ids of reference/gpt2-greedy.safetensors, from the prompt ids and from the
#    prompt text through the gpt2 tokenizer
#  - the same seed gives the same sampled text; --top-k 1 equals greedy
#  - a checkpoint of a two-stage training run (built-in task) samples in one process, with the
#    tokenizer it records (byte); another --tokenizer is refused naming both
#  - --stages 2 (one rank per layer range, the hidden state rank to rank) gives the same ids, greedy
#    and sampled with a seed, from the file and from the checkpoint (resharded to 3 stages)
#  - a pipelined checkpoint of a preset fitted to GPT-2 tokens samples with its recorded gpt2 tokenizer
#  - end-of-text: a model trained on many short GPT-2 documents ends its greedy continuation with the
#    end-of-text token; sample stops there (1, 2 and 3 stages alike), --no-stop / --ignore-eot go on
#  - train --sample-every prints samples in one process and through 2 stages (also with --dp 2)
#    without changing the losses; the pipelined samples equal one process's; refused in one line
#    for several chunks per rank or a split LM head
#  - refusals exit 2 with one line: a prompt + --max-new-tokens beyond the context, a prompt longer
#    than the context
set -eu
PT="$1"
TG="$2"
REF="$3"
dir=$(mktemp -d /tmp/pt_sample_cli_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "models.sample_cli: $*" >&2; exit 1; }

[ -f "$REF" ] || fail "missing $REF; make it with /usr/bin/python3 tests/models/make_generate_ref.py --out $REF"
want=$("$TG" ids "$REF" expected.greedy_ids)
prompt_ids=$("$TG" ids "$REF" prompt_ids)
prompt=$("$TG" meta "$REF" prompt)
n=$(echo "$want" | wc -w)
got=$("$PT" sample --init-from "$REF" --prompt-ids "$prompt_ids" --temperature 0 --ids --max-new-tokens "$n" --threads 1 2>"$dir/err") ||
    fail "sample --prompt-ids failed: $(cat "$dir/err")"
[ "$got" = "$want" ] || fail "greedy ids from the prompt ids: got '$got', PyTorch '$want'"
grep -q "prefill .* tokens/s.*decode .* tokens/s" "$dir/err" || fail "no tokens/s line on stderr: $(cat "$dir/err")"
got=$("$PT" sample --init-from "$REF" --prompt "$prompt" --temperature 0 --ids --max-new-tokens "$n" --threads 1 2>"$dir/err") ||
    fail "sample --prompt failed: $(cat "$dir/err")"
[ "$got" = "$want" ] || fail "greedy ids from the prompt text '$prompt': got '$got', PyTorch '$want'"
got=$("$PT" sample --init-from "$REF" --prompt "$prompt" --temperature 1.5 --top-k 1 --seed 3 --ids --max-new-tokens "$n" --threads 1 2>/dev/null)
[ "$got" = "$want" ] || fail "--top-k 1 is not greedy: got '$got'"

got=$("$PT" sample --init-from "$REF" --prompt-ids "$prompt_ids" --temperature 0 --ids --max-new-tokens "$n" --threads 1 --stages 2 2>"$dir/err") ||
    fail "sample --stages 2 failed: $(cat "$dir/err")"
[ "$got" = "$want" ] || fail "greedy ids through 2 stages: got '$got', PyTorch '$want'"
grep -q "2 stages" "$dir/err" || fail "no 2-stage tokens/s line on stderr: $(cat "$dir/err")"

a=$("$PT" sample --init-from "$REF" --prompt "$prompt" --temperature 1 --top-p 0.9 --seed 7 --max-new-tokens 20 --threads 1 2>/dev/null)
b=$("$PT" sample --init-from "$REF" --prompt "$prompt" --temperature 1 --top-p 0.9 --seed 7 --max-new-tokens 20 --threads 2 2>/dev/null)
[ "$a" = "$b" ] || fail "the same seed gave different text: '$a' vs '$b'"
case "$a" in "$prompt"*) ;; *) fail "the text does not start with the prompt: '$a'" ;; esac

# refusals: exit 2, one line naming the fix
set +e
"$PT" sample --init-from "$REF" --prompt-ids "$prompt_ids" --max-new-tokens 64 >/dev/null 2>"$dir/err"
rc=$?
set -e
[ $rc -eq 2 ] || fail "prompt + --max-new-tokens past the context: exit $rc, want 2"
grep -q "context of 64; use --max-new-tokens 58" "$dir/err" || fail "no fix in: $(cat "$dir/err")"
long=$(seq 1 70 | tr '\n' ' ')
set +e
"$PT" sample --init-from "$REF" --prompt-ids "$long" --max-new-tokens 1 >/dev/null 2>"$dir/err"
rc=$?
set -e
[ $rc -eq 2 ] || fail "a prompt longer than the context: exit $rc, want 2"
grep -q "shorten the prompt" "$dir/err" || fail "no fix in: $(cat "$dir/err")"
[ "$(wc -l < "$dir/err")" -eq 1 ] || fail "more than one line: $(cat "$dir/err")"

# a two-stage training checkpoint, sampled in one process with its recorded tokenizer
"$PT" train --steps 2 --micro-batch-size 2 --seq-len 32 --eval-batches 0 --threads 1 \
    --run-dir "$dir/run" --ckpt-dir "$dir/ck" >"$dir/train.log" 2>&1 || fail "train failed: $(tail -3 "$dir/train.log")"
out=$("$PT" sample --ckpt "$dir/ck" --prompt "sort:dcab=" --temperature 0 --max-new-tokens 8 --threads 1 2>"$dir/err") ||
    fail "sample --ckpt failed: $(cat "$dir/err")"
case "$out" in "sort:dcab="*) ;; *) fail "sample --ckpt printed '$out'" ;; esac
one=$("$PT" sample --ckpt "$dir/ck" --prompt "sort:dcab=" --temperature 0.8 --seed 4 --ids --max-new-tokens 12 --threads 1 2>/dev/null)
three=$("$PT" sample --ckpt "$dir/ck" --prompt "sort:dcab=" --temperature 0.8 --seed 4 --ids --max-new-tokens 12 --threads 1 --stages 3 2>"$dir/err") ||
    fail "sample --ckpt --stages 3 failed: $(cat "$dir/err")"
[ "$one" = "$three" ] || fail "3 stages sampled '$three', one process '$one'"
if grep -q '"data_tokenizer"' "$dir/ck"/step_*/manifest.json; then
    set +e
    "$PT" sample --ckpt "$dir/ck" --prompt "x" --tokenizer gpt2 --max-new-tokens 2 >/dev/null 2>"$dir/err"
    rc=$?
    set -e
    [ $rc -eq 2 ] || fail "a tokenizer other than the checkpoint's: exit $rc, want 2"
    grep -q "gpt2.*byte" "$dir/err" || fail "the mismatch does not name both tokenizers: $(cat "$dir/err")"
fi
# GPT-2 text through two training stages (the model fitted to the data's 50257 ids), sampled with
# the tokenizer the checkpoint records, in one process and in two stages
i=0
while [ $i -lt 40 ]; do echo "The quick brown fox jumps over the lazy dog, line $i."; i=$((i + 1)); done >"$dir/book.txt"
"$PT" prepare --tokenizer gpt2 --input "$dir/book.txt" --output "$dir/book.bin" >/dev/null 2>&1 || fail "prepare failed"
"$PT" train --model gpt2-tiny --data "$dir/book.bin" --stages 2 --steps 1 --micro-batches 2 --micro-batch-size 1 \
    --seq-len 16 --eval-batches 0 --threads 1 --run-dir "$dir/run_g" --ckpt-dir "$dir/ck_g" >"$dir/train_g.log" 2>&1 ||
    fail "train on gpt2 tokens failed: $(tail -3 "$dir/train_g.log")"
one=$("$PT" sample --ckpt "$dir/ck_g" --prompt "The quick" --temperature 0 --max-new-tokens 6 --threads 1 2>"$dir/err") ||
    fail "sample of the gpt2-token checkpoint failed: $(cat "$dir/err")"
two=$("$PT" sample --ckpt "$dir/ck_g" --prompt "The quick" --temperature 0 --max-new-tokens 6 --threads 1 --stages 2 2>"$dir/err") ||
    fail "sample --stages 2 of the gpt2-token checkpoint failed: $(cat "$dir/err")"
[ "$one" = "$two" ] || fail "gpt2-token checkpoint: one process wrote '$one', two stages '$two'"
case "$one" in "The quick"?*) ;; *) fail "sample of the gpt2-token checkpoint printed '$one'" ;; esac

# end-of-text: many short documents (prepare puts the end-of-text token before each), so a model
# trained a few dozen steps ends them; greedy sampling stops there, in one process and in 2 and 3
# stages alike; the token is not printed as text, it is the last id with --ids; --no-stop goes on
i=0
while [ $i -lt 70 ]; do
    printf '{"text": "The cat sat."}\n{"text": "A dog ran home."}\n{"text": "Birds fly south in winter."}\n'
    i=$((i + 1))
done >"$dir/docs.jsonl"
"$PT" prepare --tokenizer gpt2 --input "$dir/docs.jsonl" --output "$dir/docs.bin" --quiet >/dev/null 2>&1 || fail "prepare of docs failed"
# (trained through 2 stages with greedy samples every 15 steps: they stop at end-of-text too)
dtrain="--model gpt2-tiny --data $dir/docs.bin --steps 30 --micro-batches 2 --micro-batch-size 2 --seq-len 16 --lr 3e-3 --eval-batches 0 --threads 1"
"$PT" train $dtrain --stages 2 --sample-every 15 --sample-prompt "The cat" --sample-temperature 0 \
    --run-dir "$dir/run_e" --ckpt-dir "$dir/ck_e" >"$dir/train_e.log" 2>&1 ||
    fail "train on docs failed: $(tail -3 "$dir/train_e.log")"
eot=50256
ids=$("$PT" sample --ckpt "$dir/ck_e" --prompt "The cat" --temperature 0 --max-new-tokens 12 --ids --threads 1 2>"$dir/err") ||
    fail "sample of the docs checkpoint failed: $(cat "$dir/err")"
n_ids=$(echo "$ids" | wc -w)
[ "${ids##* }" = "$eot" ] && [ "$n_ids" -lt 12 ] || fail "greedy sampling did not end at end-of-text ($eot): '$ids'"
grep -q "stopped at end-of-text after $n_ids tokens" "$dir/err" || fail "no end-of-text note: $(cat "$dir/err")"
text=$("$PT" sample --ckpt "$dir/ck_e" --prompt "The cat" --temperature 0 --max-new-tokens 12 --threads 1 2>/dev/null)
want_text="The cat$(echo "${ids% *}" | "$PT" tokenize --tokenizer gpt2 --decode)"
[ "$text" = "$want_text" ] || fail "text up to end-of-text: got '$text', want '$want_text'"
for P in 2 3; do
    got=$("$PT" sample --ckpt "$dir/ck_e" --prompt "The cat" --temperature 0 --max-new-tokens 12 --ids --threads 1 --stages $P 2>"$dir/err") ||
        fail "sample --stages $P of the docs checkpoint failed: $(cat "$dir/err")"
    [ "$got" = "$ids" ] || fail "$P stages stopped with '$got', one process '$ids'"
    grep -q "stopped at end-of-text after $n_ids tokens" "$dir/err" || fail "$P stages: no end-of-text note: $(cat "$dir/err")"
done
for flag in --no-stop --ignore-eot; do
    got=$("$PT" sample --ckpt "$dir/ck_e" --prompt "The cat" --temperature 0 --max-new-tokens 12 --ids --threads 1 --stages 2 $flag 2>/dev/null)
    [ "$(echo "$got" | wc -w)" -eq 12 ] || fail "$flag: expected 12 ids, got '$got'"
    case "$got" in "$ids "*) ;; *) fail "$flag: '$got' does not continue '$ids'" ;; esac
done

# train --sample-every: samples every 2 steps, the same losses as without
for run in with without; do
    extra=""
    [ $run = with ] && extra="--sample-every 2 --sample-tokens 6 --sample-temperature 0.9 --sample-prompt sort:ba="
    "$PT" train --stages 1 --steps 4 --micro-batch-size 2 --seq-len 32 --eval-batches 0 --threads 1 --no-ckpt \
        --run-dir "$dir/se_$run" $extra >"$dir/se_$run.log" 2>&1 || fail "train ($run samples) failed: $(tail -3 "$dir/se_$run.log")"
    grep -o '"loss":[^,]*' "$dir/se_$run/metrics.jsonl" >"$dir/se_$run.loss"
done
[ "$(grep -c '^sample at step [24] (6 tokens, sampled):' "$dir/se_with.log")" -eq 2 ] || fail "expected samples at steps 2 and 4: $(cat "$dir/se_with.log")"
cmp -s "$dir/se_with.loss" "$dir/se_without.loss" || fail "--sample-every changed the losses"
# train --sample-every in a pipelined run: replica 0's stages generate through the pipeline with the
# chunks' current weights; the losses are the bits of a run without samples and of one process, and
# the samples are the one-process run's (the same weights, the same kernels)
samples() { sed 's/^\[rank 0\] //' "$1" | grep -A 2 '^sample at step'; }
"$PT" train $dtrain --stages 1 --sample-every 15 --sample-prompt "The cat" --sample-temperature 0 --no-ckpt \
    --run-dir "$dir/run_e1" >"$dir/train_e1.log" 2>&1 || fail "one-process train on docs failed: $(tail -3 "$dir/train_e1.log")"
"$PT" train $dtrain --stages 2 --no-ckpt --run-dir "$dir/run_e0" >"$dir/train_e0.log" 2>&1 ||
    fail "train on docs without samples failed: $(tail -3 "$dir/train_e0.log")"
for r in run_e run_e1 run_e0; do grep -o '"loss":[^,]*' "$dir/$r/metrics.jsonl" >"$dir/$r.loss"; done
cmp -s "$dir/run_e.loss" "$dir/run_e0.loss" || fail "--sample-every changed a pipelined run's losses"
cmp -s "$dir/run_e.loss" "$dir/run_e1.loss" || fail "2 stages and one process trained different losses"
samples "$dir/train_e.log" >"$dir/s2"
samples "$dir/train_e1.log" >"$dir/s1"
[ "$(grep -c '^sample at step' "$dir/s2")" -eq 2 ] || fail "expected 2 samples from the pipelined run: $(cat "$dir/train_e.log")"
cmp -s "$dir/s1" "$dir/s2" || fail "pipelined samples differ from one process's: $(cat "$dir/s2") vs $(cat "$dir/s1")"
grep -q '^sample at step 30 ([0-9]* tokens, greedy, stopped at end-of-text):' "$dir/s2" ||
    fail "the step-30 greedy sample did not stop at end-of-text: $(cat "$dir/s2")"
# two replicas: replica 0 samples, replica 1 waits at the next step's all-reduce; no deadlock, same losses
for run in with without; do
    extra=""
    [ $run = with ] && extra="--sample-every 2 --sample-tokens 5 --sample-prompt The"
    "$PT" train $dtrain --steps 4 --stages 2 --dp 2 --no-ckpt --run-dir "$dir/dp_$run" $extra >"$dir/dp_$run.log" 2>&1 ||
        fail "train --dp 2 ($run samples) failed: $(tail -3 "$dir/dp_$run.log")"
    grep -o '"loss":[^,]*' "$dir/dp_$run/metrics.jsonl" >"$dir/dp_$run.loss"
done
cmp -s "$dir/dp_with.loss" "$dir/dp_without.loss" || fail "--sample-every changed a --dp 2 run's losses"
[ "$(samples "$dir/dp_with.log" | grep -c '^sample at step [24] (5 tokens, sampled')" -eq 2 ] ||
    fail "expected samples at steps 2 and 4 from --dp 2: $(cat "$dir/dp_with.log")"
# refused in one line before any rank starts where the generator cannot run over the chunks
for bad in "--schedule interleaved" "--schedule zbv" "--chunks 2" "--head-split auto" "--head-split 2"; do
    set +e
    "$PT" train --stages 2 --steps 2 --sample-every 1 $bad --run-dir "$dir/se_p" >"$dir/out" 2>"$dir/err"
    rc=$?
    set -e
    [ $rc -eq 2 ] || fail "--sample-every with $bad: exit $rc, want 2"
    grep -q "pipetrain sample --ckpt" "$dir/err" || fail "the refusal ($bad) does not suggest sample --ckpt: $(cat "$dir/err")"
    [ "$(wc -l <"$dir/err")" -eq 1 ] && [ ! -s "$dir/out" ] || fail "$bad: not one line before any rank: $(cat "$dir/out" "$dir/err")"
done
echo "models.sample_cli: ok"

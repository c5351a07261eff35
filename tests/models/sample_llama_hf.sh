#!/bin/sh
# models.sample_llama_hf: `pipetrain sample --init-from` of Hugging Face Llama directories against
# PyTorch's greedy continuation (make_llama_generate_ref.py --hf-dir: config.json, model.safetensors in
# LlamaForCausalLM naming, expected.txt). Skipped (77) where /usr/bin/python3 has no torch.
#  - untied, 2 kv heads of 4, with a byte-level tokenizer.json beside the weights: found without
#    --tokenizer, the text prompt starts with <|begin_of_text|> as Hugging Face's tokenizer encodes
#    it (once: a prompt holding it with --allow-special gets no second; "" is it alone); the greedy
#    ids are PyTorch's, from the text and from the ids, in 1 and 2 stages; --no-bos drops it
#  - tied, one kv head, Llama 3.1 rope scaling, no tokenizer (vocabulary 256: byte): PyTorch's ids
#    from the directory and from its model.safetensors, in 1 and 3 stages
set -eu
PT="$1"
GEN="$2"
/usr/bin/python3 -c 'import torch' 2>/dev/null || exit 77
dir=$(mktemp -d /tmp/pt_sample_llama_hf_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "models.sample_llama_hf: $*" >&2; exit 1; }
prompt="The pipeline of the future is"

/usr/bin/python3 "$GEN" --vocab 258 --tokenizer-json --out "$dir/u.safetensors" --hf-dir "$dir/untied" >/dev/null ||
    fail "make_llama_generate_ref.py (untied) failed"
want=$(sed -n 2p "$dir/untied/expected.txt")
pids=$(sed -n 1p "$dir/untied/expected.txt")
n=$(echo "$want" | wc -w)
case "$pids" in "256 "*) ;; *) fail "the reference prompt does not start with <|begin_of_text|>: '$pids'" ;; esac
got=$("$PT" sample --init-from "$dir/untied" --prompt "$prompt" --temperature 0 --ids --no-stop --max-new-tokens "$n" \
    --threads 1 2>"$dir/err") || fail "sample --init-from (untied) failed: $(cat "$dir/err")"
[ "$got" = "$want" ] || fail "untied, text prompt: got '$got', PyTorch '$want'"
grep -q "^sample: 30 prompt tokens" "$dir/err" || fail "the prompt is not <|begin_of_text|> + 29 bytes: $(cat "$dir/err")"
got=$("$PT" sample --init-from "$dir/untied" --prompt-ids "$pids" --temperature 0 --ids --no-stop --max-new-tokens "$n" \
    --threads 1 --stages 2 2>"$dir/err") || fail "sample --init-from --stages 2 (untied) failed: $(cat "$dir/err")"
[ "$got" = "$want" ] || fail "untied, prompt ids, 2 stages: got '$got', PyTorch '$want'"
text=$("$PT" sample --init-from "$dir/untied" --prompt "$prompt" --temperature 0 --no-stop --max-new-tokens 4 --threads 1 2>/dev/null)
case "$text" in "$prompt"*) ;; *) fail "the text does not start with the prompt: '$text'" ;; esac
"$PT" sample --init-from "$dir/untied" --prompt "$prompt" --no-bos --temperature 0 --ids --max-new-tokens 2 --threads 1 \
    >/dev/null 2>"$dir/err" || fail "sample --no-bos failed: $(cat "$dir/err")"
grep -q "^sample: 29 prompt tokens" "$dir/err" || fail "--no-bos kept <|begin_of_text|>: $(cat "$dir/err")"
got=$("$PT" sample --init-from "$dir/untied" --prompt "<|begin_of_text|>$prompt" --allow-special --temperature 0 --ids \
    --no-stop --max-new-tokens "$n" --threads 1 2>"$dir/err") || fail "sample --allow-special failed: $(cat "$dir/err")"
[ "$got" = "$want" ] && grep -q "^sample: 30 prompt tokens" "$dir/err" ||
    fail "a prompt with its own <|begin_of_text|> got a second: '$got', $(cat "$dir/err")"
"$PT" sample --init-from "$dir/untied" --prompt "" --temperature 0 --ids --max-new-tokens 2 --threads 1 >/dev/null 2>"$dir/err" ||
    fail "sample --prompt '' failed: $(cat "$dir/err")"
grep -q "^sample: 1 prompt tokens" "$dir/err" || fail "--prompt '' is not <|begin_of_text|> alone: $(cat "$dir/err")"

/usr/bin/python3 "$GEN" --layers 3 --kv-heads 1 --tied --wte-std 0.05 --rope-scaling 8,1,4,16 --rope-theta 500000 \
    --eps 1e-6 --out "$dir/t.safetensors" --hf-dir "$dir/tied" >/dev/null || fail "make_llama_generate_ref.py (tied) failed"
want=$(sed -n 2p "$dir/tied/expected.txt")
pids=$(sed -n 1p "$dir/tied/expected.txt")
for src in "$dir/tied" "$dir/tied/model.safetensors"; do
    for P in 1 3; do
        got=$("$PT" sample --init-from "$src" --prompt "$prompt" --temperature 0 --ids --max-new-tokens "$n" --threads 1 \
            --stages $P 2>"$dir/err") || fail "sample --init-from $src --stages $P (tied) failed: $(cat "$dir/err")"
        [ "$got" = "$want" ] || fail "tied, $src, $P stages: got '$got', PyTorch '$want'"
    done
done
echo "models.sample_llama_hf: ok"

#!/bin/sh
# ckpt.cli: the `pipetrain ckpt` tools on a real (tiny) training run.
#  - inspect and verify accept it; export -> import -> export gives the same safetensors bytes
#  - a damaged shard byte makes verify exit non-zero, naming the shard file and the tensor
set -eu
PT="$1"
dir=$(mktemp -d /tmp/pt_ckpt_cli_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "ckpt.cli: $*" >&2; exit 1; }

"$PT" train --steps 2 --micro-batch-size 2 --seq-len 32 --eval-batches 0 --threads 1 \
    --run-dir "$dir/run" --ckpt-dir "$dir/a" >/dev/null || fail "train failed"
"$PT" ckpt inspect "$dir/a" | grep -q "^all " || fail "inspect printed no totals"
"$PT" ckpt inspect "$dir/a" --json | grep -q '"summary":true' || fail "inspect --json printed no summary"
"$PT" ckpt verify "$dir/a" >/dev/null || fail "verify rejected a good checkpoint"
"$PT" ckpt export "$dir/a" --format safetensors "$dir/w.safetensors" >/dev/null || fail "export failed"
"$PT" ckpt import "$dir/w.safetensors" "$dir/b" >/dev/null || fail "import failed"
if "$PT" ckpt import "$dir/w.safetensors" "$dir/b" 2>/dev/null; then fail "import over an existing step_000000 must fail"; fi
"$PT" ckpt export "$dir/b" --format safetensors "$dir/w2.safetensors" >/dev/null || fail "second export failed"
cmp -s "$dir/w.safetensors" "$dir/w2.safetensors" || fail "export -> import -> export changed the weights"
"$PT" ckpt verify "$dir/b" >/dev/null || fail "verify rejected the imported checkpoint"

# damage one byte in the middle of the shard
shard="$dir/a/$(cat "$dir/a/latest")/shard-0.ptz"
size=$(wc -c < "$shard")
off=$((size / 2))
byte=$(dd if="$shard" bs=1 skip=$off count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "$(printf '\\%03o' $(( (byte + 1) % 256 )))" | dd of="$shard" bs=1 seek=$off count=1 conv=notrunc 2>/dev/null
if "$PT" ckpt verify "$dir/a" >"$dir/out" 2>"$dir/err"; then fail "verify accepted a damaged shard"; fi
grep -q "shard-0.ptz: tensor" "$dir/err" || fail "verify did not name the shard and tensor: $(cat "$dir/err")"
echo "ckpt.cli: ok"

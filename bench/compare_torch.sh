#!/usr/bin/env bash
# Single-process CPU training throughput, pipetrain next to PyTorch, one configuration after the
# other on the same machine, both with the same OpenBLAS kernel (OPENBLAS_CORETYPE=SkylakeX).
# PyTorch is tuned as docs and PLATFORM.md describe: jemalloc preloaded (freed tensors otherwise
# cost ~445k page faults a step) and, for 2 threads, a passive OpenMP wait policy (given to both).
# Prints one JSON line per (implementation, configuration) with ms/step (median), tokens/s, GFLOP/s.
#
# usage: bench/compare_torch.sh [PIPETRAIN_BINARY]     (default: build/pipetrain)
#   env: STEPS (timed steps, default 5), WARMUP (default 2), THREADS ("1 2"), TORCH_BENCH (path of
#        torch_gpt2.py), TORCH_LLAMA (bench/torch_llama.py), PYTHON (default /usr/bin/python3: Debian's
#        python3-torch), LIMIT_S (per run), MODELS (only these models, e.g. "llama-small")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PT=${1:-$here/../build/pipetrain}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-"1 2"}
PYTHON=${PYTHON:-/usr/bin/python3}
TORCH_BENCH=${TORCH_BENCH:-$here/../../shared/bench/torch_gpt2.py}
TORCH_LLAMA=${TORCH_LLAMA:-$here/torch_llama.py}
MODELS=${MODELS:-}
LIMIT_S=${LIMIT_S:-900}
JEMALLOC=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -n1 || true)

[ -x "$PT" ] || { echo "compare_torch.sh: no pipetrain binary at $PT; build first or pass its path" >&2; exit 2; }
[ -n "$JEMALLOC" ] || { echo "compare_torch.sh: libjemalloc.so.2 not found; apt-get install libjemalloc2" >&2; exit 2; }

export OPENBLAS_CORETYPE=SkylakeX
unset OPENBLAS_L2_SIZE

# model  layers heads embd  B  T  (llama: kv-heads ffn vocab)
configs="gpt2 12 12 768 4 64
gpt2 12 12 768 8 128
gpt2-small 6 6 384 8 256
llama-small 12 12 768 8 256 4 2048 32000"

while read -r model layers heads embd B T kvh ffn vocab; do
  if [ -n "$MODELS" ] && ! grep -qw -- "$model" <<<"$MODELS"; then continue; fi
  for thr in $THREADS; do
    # the same OpenMP/OpenBLAS environment for both programs
    # OMP_NUM_THREADS/OPENBLAS_NUM_THREADS for both: torch.set_num_threads(1) alone does not hold
    # Debian's torch to one core (its OpenBLAS/oneDNN GEMMs still ran on 2: cpu/wall 1.7)
    extra=(OMP_NUM_THREADS="$thr" OPENBLAS_NUM_THREADS="$thr")
    if [ "$thr" -gt 1 ]; then extra+=(OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4); fi
    env "${extra[@]}" timeout "$LIMIT_S" "$PT" bench train --json --model "$model" --micro-batch-size "$B" --seq-len "$T" \
      --threads "$thr" --steps "$STEPS" --warmup "$WARMUP" ||
      echo "{\"bench\":\"train\",\"impl\":\"pipetrain\",\"model\":\"$model\",\"B\":$B,\"T\":$T,\"threads\":$thr,\"error\":\"exit $?\"}"
    if [ -n "$kvh" ]; then
      torch_cmd=("$TORCH_LLAMA" --layers "$layers" --heads "$heads" --kv-heads "$kvh" --embd "$embd" --ffn "$ffn"
                 --vocab "$vocab")
    else
      torch_cmd=("$TORCH_BENCH" --layers "$layers" --heads "$heads" --embd "$embd" --vocab 50257
                 --padded-vocab 50304 --block-size 1024)
    fi
    [ -f "${torch_cmd[0]}" ] || { echo "compare_torch.sh: ${torch_cmd[0]} not found; set TORCH_BENCH / TORCH_LLAMA" >&2; exit 2; }
    out=$(env LD_PRELOAD="$JEMALLOC" MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 "${extra[@]}" \
          timeout "$LIMIT_S" "$PYTHON" "${torch_cmd[@]}" --batch "$B" --seq "$T" \
          --steps "$STEPS" --warmup "$WARMUP" --threads "$thr" --quiet 2>&1 | grep '^SUMMARY' || true)
    if [ -z "$out" ]; then
      echo "{\"bench\":\"train\",\"impl\":\"torch\",\"model\":\"$model\",\"B\":$B,\"T\":$T,\"threads\":$thr,\"error\":\"no summary (timeout $LIMIT_S s?)\"}"
      continue
    fi
    # SUMMARY ... median_ms=X ... tok_per_s=Y gflops=Z ... fwd_ms=A bwd_ms=B opt_ms=C
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$out"; }
    peak=$([ "$thr" -eq 1 ] && echo 273 || echo 540)
    printf '{"bench":"train","impl":"torch","model":"%s","B":%s,"T":%s,"threads":%s,"steps":%s,"ms_per_step":%s,"fwd_ms":%s,"bwd_ms":%s,"optim_ms":%s,"tokens_per_s":%s,"gflops":%s,"pct_peak":%s}\n' \
      "$model" "$B" "$T" "$thr" "$STEPS" "$(get median_ms)" "$(get fwd_ms)" "$(get bwd_ms)" "$(get opt_ms)" \
      "$(get tok_per_s)" "$(get gflops)" "$(awk -v g="$(get gflops)" -v p="$peak" 'BEGIN{printf "%.1f", 100*g/p}')"
  done
done <<<"$configs"

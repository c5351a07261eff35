#!/bin/sh
# tests/cuda/train_compare.sh PIPETRAIN TEST_CUDA_BACKEND WORKDIR [MODEL]
# The whole model on the CUDA backend against the CPU backend: MODEL (gpt2-tiny by default;
# llama-tiny for the Llama kernels) trains 8 steps on the
# built-in data from the same seed with each backend; with PT_CUDA_MATMUL=fp32 every step's loss
# and gradient norm must agree to 1e-3 relative (different summation orders, amplified a little by
# 8 AdamW steps; --precision fp32); in bf16 mixed precision (--precision bf16, the CUDA default) the
# losses must agree to 3e-2 with the CPU backend's fp32 run and with its bf16 twin, and keep falling.
# Exits 77 without a GPU.
set -eu
P=$1; CHECK=$2; W=$3; MODEL=${4:-gpt2-tiny}
"$CHECK" gpus 1 || exit $?
rm -rf "$W"; mkdir -p "$W"
common="--model $MODEL --steps 8 --seed 7 --eval-batches 0 --log-every 100"
"$P" train $common --backend cpu --run-dir "$W/cpu" >/dev/null
"$P" train $common --backend cpu --precision bf16 --run-dir "$W/cpu16" >/dev/null
PT_CUDA_MATMUL=fp32 "$P" train $common --backend cuda --precision fp32 --run-dir "$W/fp32" >/dev/null
"$P" train $common --backend cuda --run-dir "$W/bf16" >/dev/null
grep -q '"precision":[[:space:]]*"bf16"' "$W/bf16/config.json" || { echo "FAIL: --backend cuda did not default to bf16"; exit 1; }
# field FILE NAME: the values of one numeric field, one per line
field() { sed -n "s/.*\"$2\":\([-0-9.eE+naif]*\).*/\1/p" "$1"; }
compare() { # compare A B TOL WHAT
    paste "$1" "$2" | awk -v tol="$3" -v what="$4" '
        { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1);
          if (!(r <= tol)) { printf "FAIL %s step %d: cpu %s cuda %s (rel %.3g > %g)\n", what, NR, $1, $2, r, tol; bad = 1 } }
        END { if (NR != 8) { printf "FAIL %s: %d steps recorded, want 8\n", what, NR; bad = 1 }
              if (!bad) printf "ok   %s: 8 steps within %g\n", what, tol; exit bad }'
}
field "$W/cpu/metrics.jsonl" loss >"$W/cpu.loss"
field "$W/cpu/metrics.jsonl" grad_norm >"$W/cpu.gn"
field "$W/fp32/metrics.jsonl" loss >"$W/fp32.loss"
field "$W/fp32/metrics.jsonl" grad_norm >"$W/fp32.gn"
field "$W/bf16/metrics.jsonl" loss >"$W/bf16.loss"
field "$W/cpu16/metrics.jsonl" loss >"$W/cpu16.loss"
status=0
compare "$W/cpu.loss" "$W/fp32.loss" 1e-3 "fp32 loss" || status=1
compare "$W/cpu.gn" "$W/fp32.gn" 1e-3 "fp32 grad norm" || status=1
compare "$W/cpu.loss" "$W/bf16.loss" 3e-2 "bf16 loss" || status=1
compare "$W/cpu16.loss" "$W/bf16.loss" 3e-2 "bf16 loss against the CPU's bf16 twin" || status=1
awk 'NR == 1 { first = $1 } { last = $1 } END { if (!(last < first)) { print "FAIL bf16: loss did not fall"; exit 1 } }' \
    "$W/bf16.loss" || status=1
exit $status

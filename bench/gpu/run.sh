#!/usr/bin/env bash
# bench/gpu/run.sh — the one command for a machine with an NVIDIA GPU (H100 / H200 / A100):
# builds pipetrain with the CUDA backend, runs the `gpu` tests, then measures training and
# prints one JSON object per line on stdout (progress goes to stderr):
#   {"bench":"gpu_tests", ...}                       ctest -L gpu: passed / failed / skipped; the
#                                                     Llama kernels are among them: cuda.kernels_llama
#                                                     (GQA attention and decode, RMSNorm, RoPE, SwiGLU,
#                                                     no-position embedding vs the CPU backend),
#                                                     cuda.kernels_determinism (GQA backward, RMSNorm
#                                                     dw), cuda.train_vs_cpu_llama and
#                                                     cuda.pipeline_vs_cpu_llama (llama-tiny)
#   {"bench":"attention", "shape":"gpt2", ...}       the attention kernels alone (bench_cuda_attention):
#                                                     fp32 CUDA-core kernels vs the tensor-core flash
#                                                     kernels (PT_CUDA_ATTENTION=flash), forward and
#                                                     backward ms, speedups, flash TFLOP/s, for the
#                                                     gpt2, gpt2-medium, llama3.2-1b and llama3-8b
#                                                     shapes at T=1024; the flash kernels' own
#                                                     correctness test is cuda.attention_flash (gpu)
#   {"bench":"optim", "path":"per_tensor", ...}      the AdamW step of gpt2 and gpt2-medium alone
#   {"bench":"optim", "path":"multi_tensor", ...}    (pipetrain bench optim --backend cuda): one
#   {"bench":"optim", "path":"ratio", ...}            adamw_update launch per tensor vs one
#                                                     adamw_multi_update launch for all; ms per step,
#                                                     GB/s; its correctness test is cuda.adamw_multi
#   {"bench":"fused", "op":"add_norm", ...}          the fused block kernels of gpt2 and llama3.2-1b
#                                                     (pipetrain bench fused --backend cuda, 8192 rows):
#                                                     residual add + norm, norm gradient + residual,
#                                                     fc bias + GELU, GELU gradient, fp32 and bf16, each
#                                                     against the split calls: ms, GB/s, split / fused;
#                                                     their bits are cuda.kernels_fused's business
#   {"bench":"train", "model":"gpt2", ...}           single process: tokens/s, MFU, activation slots MiB
#   {"bench":"train", "model":"gpt2-medium", ...}
#   {"bench":"train", "model":"llama-small", ...}    (12 x 768, 12 query / 4 kv heads, ~100M)
#   {"bench":"train_fp32", ...}                      gpt2 in fp32, beside the bf16 run
#   {"bench":"train_bf16_floats", ...}               gpt2 in bf16 with --bf16-stash 0 (what backward
#                                                     reads kept as floats): the stash's cost in time
#                                                     and its saving in slots_mib, beside the bf16 run
#   {"bench":"pipeline_1gpu", "stages":2, ...}        2-stage 1F1B, two processes on one GPU
#                                                     (CUDA_VISIBLE_DEVICES=0): first the correctness
#                                                     check (tests/cuda/pipe_compare: gpt2-tiny, 3
#                                                     steps, losses vs the CPU pipeline and the
#                                                     one-process GPU run, "matches_reference"), then
#                                                     tokens/s and the measured bubble of gpt2. Two
#                                                     ranks on one GPU cannot use NCCL: "transfers"
#                                                     says host-staged.
#   {"bench":"pipeline_2gpu", "stages":2, ...}        only with >= 2 GPUs: the same with one GPU per
#                                                     rank, so activations, gradients and the tied
#                                                     all-reduce go through NCCL ("transfers": nccl),
#                                                     after pipe_compare has checked that path
# MFU = tokens/s * (6 N + 12 L T C) / peak, with N the parameter count and the bf16 dense peak of
# the GPU (H100/H200 SXM 989 TFLOP/s, A100 312; PT_GPU_PEAK_TFLOPS overrides). Matrix products
# run in bf16 (PT_CUDA_MATMUL, default bf16). Environment: BUILD (build dir, default build-gpu),
# STEPS (timed steps, default 30), B (micro-batch size, default 8), T (default 1024).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-gpu}
STEPS=${STEPS:-30}
B=${B:-8}
T=${T:-1024}
OUT=$(mktemp -d /tmp/pt-gpu-bench.XXXXXX)
log() { echo "[gpu-bench] $*" >&2; }

command -v nvidia-smi >/dev/null || { echo '{"bench":"gpu","error":"nvidia-smi not found: no NVIDIA driver on this machine"}'; exit 1; }
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$GPU" in
  *H100*|*H200*|*H800*|*GH200*) PEAK=989 ;;
  *A100*|*A800*) PEAK=312 ;;
  *L40S*) PEAK=362 ;;
  *) PEAK=0 ;;
esac
PEAK=${PT_GPU_PEAK_TFLOPS:-$PEAK}
log "GPU: $GPU (bf16 dense peak ${PEAK} TFLOP/s)"

log "building in $BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPT_CUDA=ON >&2
cmake --build "$BUILD" -j "$(nproc)" >&2
PT="$BUILD/pipetrain"

log "running the gpu tests"
set +e
(cd "$BUILD" && ctest -L gpu --output-on-failure --timeout 900) >"$OUT/ctest.log" 2>&1
set -e
cat "$OUT/ctest.log" >&2
python3 - "$OUT/ctest.log" "$GPU" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
tests = re.findall(r"Test +#\d+: (\S+) \.*\s*(?:\*\*\*)?(\w+)", text)
res = {"passed": [], "failed": [], "skipped": []}
for name, state in tests:
    key = "passed" if state == "Passed" else "skipped" if state == "Skipped" else "failed"
    res[key].append(name)
print(json.dumps({"bench": "gpu_tests", "gpu": sys.argv[2], **{k: v for k, v in res.items()},
                  "ok": not res["failed"]}))
PY

log "attention kernels: fp32 vs flash (bench_cuda_attention)"
"$BUILD/tests/cuda/bench_cuda_attention" 20 ||
  echo '{"bench":"attention","error":"bench_cuda_attention failed (see stderr)"}'

for model in gpt2 gpt2-medium; do
  log "AdamW step of $model: per-tensor launches vs one multi-tensor launch (bench optim)"
  "$PT" bench optim --backend cuda --model "$model" --steps 20 --json ||
    echo "{\"bench\":\"optim\",\"model\":\"$model\",\"error\":\"pipetrain bench optim failed (see stderr)\"}"
done

for model in gpt2 llama3.2-1b; do
  log "fused block kernels of $model vs the split calls (bench fused), 8 x 1024 rows"
  "$PT" bench fused --backend cuda --model "$model" --rows 8192 --steps 20 --json ||
    echo "{\"bench\":\"fused\",\"model\":\"$model\",\"error\":\"pipetrain bench fused failed (see stderr)\"}"
done

# slots LOG: the MiB of activation slots the run's rank 0 allocated ("null" if it did not say)
slots() { local v; v=$(sed -n 's/.*MiB allocated (\([0-9.]*\) MiB activation slots).*/\1/p' "$1" | head -1); echo "${v:-null}"; }

# summarize RUN_DIR MODEL EXTRA_JSON: tokens/s over the steps after the first 5, and MFU
summarize() {
  python3 - "$1" "$2" "$PEAK" "$GPU" "$3" <<'PY'
import json, statistics, sys
run, model, peak, gpu, extra = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
cfg = json.load(open(run + "/config.json"))
steps = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"tokens_per_s"' in l]
timed = steps[5:] if len(steps) > 5 else steps
tps = statistics.median(s["tokens_per_s"] for s in timed)
m = cfg["model"]
T, L, C = cfg["seq_len"], m["n_layer"], m["n_embd"]
flops_per_token = 6 * cfg["n_params"] + 12 * L * T * C
out = {"bench": "train", "model": model, "gpu": gpu, "B": cfg["micro_batch_size"], "T": T,
       "micro_batches": cfg["micro_batches"], "n_params": cfg["n_params"], "steps_timed": len(timed),
       "tokens_per_s": round(tps, 1), "ms_per_step": round(statistics.median(s["step_ms"] for s in timed), 2),
       "tflops": round(tps * flops_per_token / 1e12, 2),
       "mfu": round(tps * flops_per_token / (peak * 1e12), 4) if peak > 0 else None,
       "final_loss": steps[-1]["loss"], "precision": cfg.get("precision", "fp32")}
out.update(json.loads(extra))
print(json.dumps(out))
PY
}

for model in gpt2 gpt2-medium llama-small; do
  log "training $model: B=$B T=$T, $STEPS steps"
  run="$OUT/$model"
  if "$PT" train --backend cuda --model "$model" --micro-batch-size "$B" --seq-len "$T" --steps "$STEPS" \
       --warmup 5 --eval-batches 0 --run-dir "$run" >"$OUT/$model.log" 2>&1; then
    summarize "$run" "$model" "{\"slots_mib\":$(slots "$OUT/$model.log")}" ||
      echo "{\"bench\":\"train\",\"model\":\"$model\",\"error\":\"no metrics in $run\"}"
  else
    tail -5 "$OUT/$model.log" >&2
    python3 -c 'import json,sys; print(json.dumps({"bench":"train","model":sys.argv[1],"error":sys.argv[2]}))' \
      "$model" "$(tail -1 "$OUT/$model.log")"
  fi
done

# the precisions side by side: gpt2 above ran in bf16 mixed precision (the CUDA default); the same in fp32
log "training gpt2 in fp32 (--precision fp32), beside the bf16 run above"
if "$PT" train --backend cuda --precision fp32 --model gpt2 --micro-batch-size "$B" --seq-len "$T" --steps "$STEPS" \
     --warmup 5 --eval-batches 0 --run-dir "$OUT/gpt2-fp32" >"$OUT/gpt2-fp32.log" 2>&1; then
  summarize "$OUT/gpt2-fp32" gpt2 '{"bench":"train_fp32"}' || echo '{"bench":"train_fp32","error":"no metrics"}'
else
  echo '{"bench":"train_fp32","error":"pipetrain train --precision fp32 failed (see stderr)"}'
fi
log "training gpt2 in bf16 with --bf16-stash 0 (what backward reads kept as floats), beside the bf16 run above"
if "$PT" train --backend cuda --bf16-stash 0 --model gpt2 --micro-batch-size "$B" --seq-len "$T" --steps "$STEPS" \
     --warmup 5 --eval-batches 0 --run-dir "$OUT/gpt2-floats" >"$OUT/gpt2-floats.log" 2>&1; then
  summarize "$OUT/gpt2-floats" gpt2 "{\"bench\":\"train_bf16_floats\",\"slots_mib\":$(slots "$OUT/gpt2-floats.log")}" ||
    echo '{"bench":"train_bf16_floats","error":"no metrics"}'
else
  echo '{"bench":"train_bf16_floats","error":"pipetrain train --bf16-stash 0 failed (see stderr)"}'
fi

# pipeline NAME PATH: pipe_compare on gpt2-tiny (must take transfer path PATH), then gpt2 2-stage
# 1F1B for tokens/s, bubble and the transfer path the run logged. The caller sets
# CUDA_VISIBLE_DEVICES to the GPUs the two ranks may use.
pipeline() {
  local name=$1 path=$2 match=false run="$OUT/$1" M=8
  if OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$BUILD/tests/cuda/pipe_compare" 1e-4 1e-6 "$path" \
       >"$OUT/$name.compare.log" 2>&1; then
    match=true
  fi
  cat "$OUT/$name.compare.log" >&2
  log "$name: 2-stage 1F1B of gpt2"
  if "$PT" train --backend cuda --model gpt2 --stages 2 --nproc 2 --schedule 1f1b --micro-batches $M \
       --micro-batch-size "$B" --seq-len "$T" --steps "$STEPS" --warmup 5 --eval-batches 0 --run-dir "$run" \
       >"$OUT/$name.log" 2>&1; then
    local bubble transfers
    bubble=$(sed -n 's/.*bubble: measured \([0-9.]*\)%.*/\1/p' "$OUT/$name.log" | tail -1)
    transfers=$(sed -n 's/.*transfers: \([a-z-]*\).*/\1/p' "$OUT/$name.log" | tail -1)
    summarize "$run" gpt2 "{\"bench\":\"$name\",\"stages\":2,\"schedule\":\"1f1b\",\"transfers\":\"${transfers:-unknown}\",\"bubble_measured_pct\":${bubble:-null},\"matches_reference\":$match}" ||
      echo "{\"bench\":\"$name\",\"error\":\"no metrics in $run\",\"bubble_measured_pct\":${bubble:-null},\"matches_reference\":$match}"
  else
    tail -5 "$OUT/$name.log" >&2
    python3 -c 'import json,sys; print(json.dumps({"bench":sys.argv[3],"stages":2,"schedule":"1f1b","error":sys.argv[1],
                                                    "matches_reference":sys.argv[2]=="true"}))' \
      "$(tail -1 "$OUT/$name.log")" "$match" "$name"
  fi
}

N_GPUS=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
log "2-stage 1F1B pipeline, two processes on one GPU (host-staged transfers)"
(export CUDA_VISIBLE_DEVICES=0; pipeline pipeline_1gpu host-staged)
if [ "$N_GPUS" -ge 2 ]; then
  log "2-stage 1F1B pipeline, one GPU per process (NCCL transfers)"
  (export CUDA_VISIBLE_DEVICES=0,1; pipeline pipeline_2gpu nccl)
else
  log "one GPU: the NCCL pipeline (pipeline_2gpu) needs two"
fi
log "logs and run directories: $OUT"

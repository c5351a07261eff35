#!/bin/bash
# bench/precision.sh [--quick] [--steps N] [--rounds R] [PIPETRAIN]: what --precision bf16 costs and
# saves on this machine's CPU backend (issue 19), on the real `pipetrain train` path, fp32 and bf16
# side by side with the same global batch (M = 4 micro-batches of B = 2 sequences of T = 256 tokens of
# gpt2-small; --quick: gpt2-tiny, T = 128):
#   s1   one process, 2 threads
#   p2   2 stages (1F1B), 2 ranks with 1 thread each, over the host link
# and each case in three precisions: fp32, bf16 (its blocks' internals kept in 2 bytes between the
# passes, the bf16 stash) and bf16-floats (bf16 with --bf16-stash 0: the same bits, kept as floats).
# Each run does 1 warm-up step and N - 1 timed ones (default N = 4) and prints one JSON line: the
# median step_ms, tokens/s, forward and backward ms (metrics.jsonl), the weights and activation
# memory rank 0 measured (MiB), the bytes of one stage message (the transfers line says how they
# travel), and the final loss. --rounds R repeats the six cases R times, interleaved (timings here
# are noisy: compare the ratio within a round). On a CPU the bf16 run rounds every activation in an
# extra pass and keeps a bf16 copy of the weights in fp32 storage, so it is slower and larger than
# fp32 here; what it buys on this machine is the half-size stage messages. Leaves
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as the caller has them and names the sgemm kernel in each line.
set -u
QUICK=0 STEPS=4 ROUNDS=1 PT=./build/pipetrain
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --steps) STEPS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) echo "bench/precision.sh: unknown option $1 (--quick, --steps N, --rounds R, PIPETRAIN)" >&2; exit 2 ;;
    *) PT=$1 ;;
    esac
    shift
done
[ -x "$PT" ] || { echo "bench/precision.sh: $PT is not an executable; build it (cmake --build build --target pipetrain) or name it" >&2; exit 2; }
[ "$STEPS" -ge 2 ] 2>/dev/null || { echo "bench/precision.sh: --steps $STEPS: give at least 2 (1 warm-up + timed)" >&2; exit 2; }
PT=$(readlink -f "$PT")
if [ $QUICK = 1 ]; then MODEL=gpt2-tiny SEQ=128; else MODEL=gpt2-small SEQ=256; fi
W=$(mktemp -d /tmp/pt-precision-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
BLAS=$(ldd "$PT" | awk '/libopenblas/ {print $3; exit}')
CORE=$(python3 -c 'import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())' "$BLAS" 2>/dev/null || echo unknown)
common="train --model $MODEL --steps $STEPS --micro-batches 4 --micro-batch-size 2 --seq-len $SEQ --eval-batches 0
        --no-ckpt --log-every 1 --comm-timeout 300"
for r in $(seq 1 "$ROUNDS"); do
    for c in s1 p2; do
        for p in fp32 bf16 bf16-floats; do
            case $c in
            s1) args="--stages 1 --threads 2" ;;
            p2) args="--stages 2 --threads 1" ;;
            esac
            case $p in
            bf16-floats) args="$args --precision bf16 --bf16-stash 0" ;;
            *) args="$args --precision $p" ;;
            esac
            name="$c-$p-$r"
            "$PT" $common $args --run-dir "$W/$name" --profile "$W/$name.prof" >"$W/$name.log" 2>&1 || {
                echo "{\"bench\":\"precision\",\"case\":\"$c\",\"precision\":\"$p\",\"error\":\"$(tail -1 "$W/$name.log" | tr -d '"\\')\"}"
                continue
            }
            python3 - "$W/$name" "$W/$name.log" "$c" "$p" "$r" "$MODEL" "$SEQ" "$CORE" <<'PY'
import json, re, statistics, sys
run, log, case, prec, rnd, model, seq, core = sys.argv[1:]
steps = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"step_ms"' in l]
timed = steps[1:]
cfg = json.load(open(run + "/config.json"))
text = open(log).read()
mem = re.search(r"rank 0 memory, MiB measured/predicted: total ([0-9.]+)/[0-9.]+, weights ([0-9.]+)/[0-9.]+.*"
                r"activations ([0-9.]+)/", text) or re.search(r"memory, MiB measured/predicted: total ([0-9.]+)/[0-9.]+, "
                r"weights ([0-9.]+)/[0-9.]+.*activations ([0-9.]+)/", text)
tr = re.search(r"transfers: (.*)", text)
C = cfg["model"]["n_embd"]
med = lambda k: round(statistics.median(s[k] for s in timed), 2) if timed and k in timed[0] else None
print(json.dumps({"bench": "precision", "case": case, "precision": prec, "round": int(rnd), "model": model,
                  "T": int(seq), "B": 2, "M": 4, "ms_per_step": med("step_ms"), "tokens_per_s": med("tokens_per_s"),
                  "fwd_ms": med("fwd_ms"), "bwd_ms": med("bwd_ms"),
                  "total_mib": float(mem.group(1)) if mem else None, "weights_mib": float(mem.group(2)) if mem else None,
                  "activations_mib": float(mem.group(3)) if mem else None,
                  "message_bytes": 2 * int(seq) * C * (2 if prec.startswith("bf16") else 4) if case != "s1" else 0,
                  "transfers": tr.group(1).strip() if tr else None, "final_loss": steps[-1]["loss"],
                  "sgemm_kernel": core}))
PY
        done
    done
done

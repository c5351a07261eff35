#!/bin/bash
# bench/head_chunk.sh [--quick] [--steps N] [--rounds R] [PIPETRAIN]: what the chunked LM head
# (`train --head-chunk`, issue 19: "the cross-entropy with the LM head's logits never all held at
# once") saves and costs on this machine's CPU backend, on the real `pipetrain train` path, the head
# in chunks and whole side by side with the same global batch (M = 2 micro-batches of B = 4
# sequences of T = 1024 tokens of gpt2-small, vocabulary 50304: 786 MiB of logits a micro-batch;
# --quick: T = 256):
#   s1      one process, 2 threads: auto (chunks of 1280 rows) vs --head-chunk off
#   p2      2 stages on 1f1b, 2 ranks with 1 thread each: auto (1280 rows) vs off
#   g2      the same on gpipe, where a stage keeps every micro-batch's activations: --head-chunk 1280
#           vs off (auto leaves a gpipe pipeline's head whole: its forwards all run first, so the
#           loss gradient made in the forward lengthens that phase)
# Each run does 1 warm-up step and N - 1 timed ones (default N = 3) and prints one JSON line: the
# median step_ms, tokens/s, forward and backward ms (metrics.jsonl), the memory of the rank holding
# the head (p2, g2: its total and activations, measured and predicted; s1: what one process allocated
# and its activation slots, all it reports), in MiB, and the final loss. --rounds R
# repeats the cases R times, interleaved (timings here are noisy: compare within a round). Leaves
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as the caller has them and names the sgemm kernel.
set -u
QUICK=0 STEPS=3 ROUNDS=1 PT=./build/pipetrain
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --steps) STEPS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) echo "bench/head_chunk.sh: unknown option $1 (--quick, --steps N, --rounds R, PIPETRAIN)" >&2; exit 2 ;;
    *) PT=$1 ;;
    esac
    shift
done
[ -x "$PT" ] || { echo "bench/head_chunk.sh: $PT is not an executable; build it (cmake --build build --target pipetrain) or name it" >&2; exit 2; }
[ "$STEPS" -ge 2 ] 2>/dev/null || { echo "bench/head_chunk.sh: --steps $STEPS: give at least 2 (1 warm-up + timed)" >&2; exit 2; }
PT=$(readlink -f "$PT")
if [ $QUICK = 1 ]; then SEQ=256; else SEQ=1024; fi
W=$(mktemp -d /tmp/pt-head-chunk-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
BLAS=$(ldd "$PT" | awk '/libopenblas/ {print $3; exit}')
CORE=$(python3 -c 'import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())' "$BLAS" 2>/dev/null || echo unknown)
common="train --model gpt2-small --steps $STEPS --micro-batches 2 --micro-batch-size 4 --seq-len $SEQ --eval-batches 0
        --no-ckpt --log-every 1 --comm-timeout 600"
for r in $(seq 1 "$ROUNDS"); do
    for c in s1 p2 g2; do
        for h in chunked whole; do
            case $c in
            s1) args="--stages 1 --threads 2"; hr=0; [ $h = chunked ] && hc=auto || hc=off ;;
            p2) args="--stages 2 --threads 1"; hr=1; [ $h = chunked ] && hc=auto || hc=off ;;
            g2) args="--stages 2 --threads 1 --schedule gpipe"; hr=1; [ $h = chunked ] && hc=1280 || hc=off ;;
            esac
            name="$c-$h-$r"
            "$PT" $common $args --head-chunk $hc --run-dir "$W/$name" >"$W/$name.log" 2>&1 || {
                echo "{\"bench\":\"head_chunk\",\"case\":\"$c\",\"head\":\"$h\",\"error\":\"$(tail -1 "$W/$name.log" | tr -d '"\\')\"}"
                continue
            }
            python3 - "$W/$name" "$W/$name.log" "$c" "$h" "$hc" "$r" "$SEQ" "$hr" "$CORE" <<'PY'
import json, re, statistics, sys
run, log, case, head, hc, rnd, seq, hr, core = sys.argv[1:]
steps = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"step_ms"' in l]
timed = steps[1:]
text = open(log).read()
mem = re.search(r"rank %s memory, MiB measured/predicted: total ([0-9.]+)/([0-9.]+),.*activations ([0-9.]+)/([0-9.]+)" % hr, text)
one = re.search(r"rank 0: ([0-9.]+) MiB allocated \(([0-9.]+) MiB activation slots\)", text)  # one process says only this
chunk = re.search(r"LM head in chunks of ([0-9]+)", text)
med = lambda k: round(statistics.median(s[k] for s in timed), 1) if timed and k in timed[0] else None
print(json.dumps({"bench": "head_chunk", "case": case, "head": head, "head_chunk": hc, "round": int(rnd),
                  "model": "gpt2-small", "T": int(seq), "B": 4, "M": 2, "chunk_rows": int(chunk.group(1)) if chunk else 0,
                  "ms_per_step": med("step_ms"), "tokens_per_s": med("tokens_per_s"), "fwd_ms": med("fwd_ms"),
                  "bwd_ms": med("bwd_ms"), "head_rank": int(hr),
                  "total_mib": float(mem.group(1)) if mem else float(one.group(1)) if one and hr == "0" else None,
                  "activations_mib": float(mem.group(3)) if mem else None,
                  "activations_predicted_mib": float(mem.group(4)) if mem else None,
                  "slots_mib": float(one.group(2)) if one and not mem else None,
                  "final_loss": steps[-1]["loss"], "sgemm_kernel": core}))
PY
        done
    done
done

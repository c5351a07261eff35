#!/bin/bash
# bench/tp.sh [--quick] [--steps N] [--rounds R] [--cases LIST] [PIPETRAIN]: tensor parallelism on
# this machine's cores (issue 18). Runs the real `pipetrain train` path for each case, with the same
# global batch (M = 4 micro-batches of B = 2 sequences, 2048 tokens a step; --quick: gpt2-tiny,
# T = 128, 1024 tokens) and the same thread budget of 2 cores:
#   t1        --stages 1 --tp 1, one process with 2 threads
#   t1x1      --stages 1 --tp 1 --threads 1: one core (a reference; not in the default list)
#   t2        --stages 1 --tp 2, 2 ranks with 1 thread each
#   t2sp      --stages 1 --tp 2 --sp
#   p2        --stages 2 --tp 1, 2 ranks with 1 thread each (the pipeline without TP, for p2t2)
#   p2t2      --stages 2 --tp 2, 4 ranks with 1 thread each: 4 threads on the 2 cores (2x over)
#   p2t2sp    --stages 2 --tp 2 --sp
# Each run does 1 warm-up step and N - 1 timed ones (default N = 4) with --profile, and prints one
# JSON line: the median step_ms and tokens/s of the timed steps (metrics.jsonl), each rank's time in
# the tensor-parallel collectives (summary.json tp_comm_s: the mean over the timed steps) and its
# share of the step, the part of it the faster rank of each collective also spent (trace.json: the
# sum over collectives of the shortest rank's time, so the waiting for the slowest rank is left out),
# each rank's activation and total memory measured beside the planner's prediction, and the loss
# after the last step beside t1's (relative difference). The 1-minute load average before and after
# each run is in the line (the machine is shared). --rounds R runs the cases R times, interleaved.
# Leaves OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as the caller has them and prints the sgemm kernel
# OpenBLAS chose (openblas_get_corename) in every line. OMP_WAIT_POLICY is PASSIVE unless the caller
# sets it (as bench/compare_torch.sh at 2 threads): on a shared machine t1's 2 OpenMP threads spin
# at every barrier for a partner that has lost its core (gpt2-tiny: 4-20x slower with the default);
# the other cases run 1 thread per rank, where it changes nothing.
set -u
QUICK=0 STEPS=4 ROUNDS=1 CASES="t1,t2,t2sp,p2,p2t2,p2t2sp" PT=./build/pipetrain
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --steps) STEPS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --cases) CASES=$2; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) echo "bench/tp.sh: unknown option $1 (--quick, --steps N, --rounds R, --cases LIST, PIPETRAIN)" >&2; exit 2 ;;
    *) PT=$1 ;;
    esac
    shift
done
[ -x "$PT" ] || { echo "bench/tp.sh: $PT is not an executable; build it (cmake --build build --target pipetrain) or name it" >&2; exit 2; }
[ "$STEPS" -ge 2 ] 2> /dev/null || { echo "bench/tp.sh: --steps $STEPS: give at least 2 (1 warm-up + timed)" >&2; exit 2; }
PT=$(readlink -f "$PT")
if [ $QUICK = 1 ]; then MODEL=gpt2-tiny SEQ=128; else MODEL=gpt2-small SEQ=256; fi
W=$(mktemp -d /tmp/pt-tp-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 # --threads sets each rank's count
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
BLAS=$(ldd "$PT" | awk '/libopenblas/ {print $3; exit}')
CORE=$(python3 -c 'import ctypes, sys; l = ctypes.CDLL(sys.argv[1]); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())' "$BLAS" 2> /dev/null || echo unknown)
common="train --model $MODEL --steps $STEPS --micro-batches 4 --micro-batch-size 2 --seq-len $SEQ --eval-batches 0
        --no-ckpt --log-every 1 --comm-timeout 300"

case_args() {
    case "$1" in
    t1) echo "--stages 1 --tp 1 --threads 2" ;;
    t1x1) echo "--stages 1 --tp 1 --threads 1" ;;
    t2) echo "--stages 1 --tp 2 --threads 1" ;;
    t2sp) echo "--stages 1 --tp 2 --sp --threads 1" ;;
    p2) echo "--stages 2 --tp 1 --threads 1" ;;
    p2t2) echo "--stages 2 --tp 2 --threads 1" ;;
    p2t2sp) echo "--stages 2 --tp 2 --sp --threads 1" ;;
    *) return 1 ;;
    esac
}

for c in ${CASES//,/ }; do
    case_args "$c" > /dev/null || { echo "bench/tp.sh: unknown case $c (t1, t1x1, t2, t2sp, p2, p2t2, p2t2sp)" >&2; exit 2; }
done
failed=0
for r in $(seq 1 "$ROUNDS"); do
    for c in ${CASES//,/ }; do
        args=$(case_args "$c")
        load0=$(cut -d' ' -f1 /proc/loadavg)
        # shellcheck disable=SC2086
        if ! "$PT" $common $args --run-dir "run-$c-$r" --profile "prof-$c-$r" > "$c-$r.out" 2>&1; then
            echo "{\"bench\": \"tp\", \"case\": \"$c\", \"round\": $r, \"error\": \"pipetrain train failed\"}"
            tail -5 "$c-$r.out" >&2
            failed=1
            continue
        fi
        load1=$(cut -d' ' -f1 /proc/loadavg)
        python3 - "$c" "$r" "$MODEL" "$SEQ" "$CORE" "$load0" "$load1" "$args" "run-$c-$r" "prof-$c-$r" "run-t1-$r" <<'EOF' || failed=1
import json, os, statistics, sys
case, rnd, model, seq, core, load0, load1, args, run, prof, ref = sys.argv[1:]
MiB = 1048576.0
def steps(d):
    return [l for l in (json.loads(x) for x in open(os.path.join(d, "metrics.jsonl")) if x.startswith("{")) if "step_ms" in l]
st = steps(run)
timed = st[1:]
summ = json.load(open(os.path.join(prof, "summary.json")))
a = args.split()
P, T = int(a[a.index("--stages") + 1]), int(a[a.index("--tp") + 1])
world = P * T
step_ms = statistics.median(l["step_ms"] for l in timed)
out = {"bench": "tp", "case": case, "round": int(rnd), "model": model, "P": P, "T": T, "sp": "--sp" in a,
       "ranks": world, "threads_per_rank": int(a[a.index("--threads") + 1]), "global_batch": "4 x 2 x %s" % seq,
       "tokens_per_step": timed[0]["tokens"], "timed_steps": len(timed), "sgemm": core,
       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
       "load1": [float(load0), float(load1)],
       "step_ms": round(step_ms, 1), "tokens_per_s": round(statistics.median(l["tokens_per_s"] for l in timed), 1)}
tp = [1e3 * x for x in summ["tp_comm_s"]]
if T > 1:
    out["tp_comm_ms"] = [round(x, 1) for x in tp]                # each rank's, mean of the timed steps
    out["tp_comm_share"] = [round(x / summ["step_time_s"] / 1e3, 4) for x in tp]
    out["tp_comm_ms_rank0_median"] = round(statistics.median(l.get("tp_comm_ms", 0) for l in timed), 1)
    # each collective: the group's shortest time (the last rank to arrive waits least); summed per
    # tensor-parallel group, the group's largest sum, per timed step
    tr = json.load(open(os.path.join(prof, "trace.json")))
    ev = tr["traceEvents"] if isinstance(tr, dict) else tr
    names = {e["tid"]: e["args"]["name"] for e in ev if e.get("ph") == "M" and e.get("name") == "thread_name"}
    per_rank = {}
    for e in ev:
        n = names.get(e.get("tid"), "")
        if e.get("ph") == "X" and n.endswith(" tp"):
            per_rank.setdefault(int(n.split()[1]), []).append(e)
    mins, counts = [], []
    for g0 in range(0, world, T):                                  # one TP group per pipeline rank
        group = [sorted(per_rank.get(g0 + t, []), key=lambda e: e["ts"]) for t in range(T)]
        counts.append(len(group[0]) // summ["steps"])
        if all(len(x) == len(group[0]) for x in group):
            mins.append(round(sum(min(e["dur"] for e in col) for col in zip(*group)) / 1e3 / summ["steps"], 1))
    out["tp_collectives_per_step"] = counts                        # per TP group (stage)
    if len(mins) == len(counts):
        out["tp_comm_fastest_ms"] = mins                           # per TP group
        out["tp_comm_fastest_share"] = [round(x / summ["step_time_s"] / 1e3, 4) for x in mins]
out["profile_step_ms"] = round(1e3 * summ["step_time_s"], 1)
mem = summ.get("memory", {}).get("ranks", [])
if mem:
    act = [m["measured"]["activations"] / MiB for m in mem]
    pact = [m["predicted"]["activations"] / MiB for m in mem]
    out["act_mib"] = [round(x, 2) for x in act]
    out["act_pred_mib"] = [round(x, 2) for x in pact]
    out["act_pred_err"] = round(max(abs(p - m) / m for m, p in zip(act, pact) if m > 0), 4)
    out["peak_mib"] = [round(m["peak_bytes"] / MiB, 2) for m in mem]
    out["peak_pred_mib"] = [round(m["pred_bytes"] / MiB, 2) for m in mem]
    kinds = {}
    for k in mem[0]["measured"]:
        me = [m["measured"][k] / MiB for m in mem]
        pr = [m["predicted"][k] / MiB for m in mem]
        if any(me) or any(pr):
            kinds[k] = [[round(x, 2) for x in me], [round(x, 2) for x in pr]]
    out["mem_kinds_mib"] = kinds                                   # kind: [measured per rank, predicted per rank]
out["loss"] = st[-1]["loss"]
if case != "t1" and os.path.exists(os.path.join(ref, "metrics.jsonl")):
    l1 = steps(ref)[-1]["loss"]
    out["loss_t1"] = l1
    out["loss_rel_diff"] = float("%.3g" % (abs(out["loss"] - l1) / abs(l1)))
print(json.dumps(out), flush=True)
EOF
    done
done
exit $failed

#!/bin/bash
# train.bf16_track: the loss of a bf16 run tracks the fp32 run's (issue 19): gpt2-tiny on the built-in
# task, 200 steps of 4 x 64 tokens from the same seed, `--precision bf16` against `--precision fp32`.
# Stated tolerance: every 20-step window's mean loss of the first 100 steps (the plateau before the
# task is learnt) within 3% of fp32's; every window within 12% and every single step within 20%
# (once the task is being learnt the two curves fall at slightly different steps, so they shift
# against each other); the last window's mean no more than 3% above fp32's (bf16 may learn as fast,
# not slower); both runs learn (the last window's mean below half the first's). Measured with
# OpenBLAS's Haswell sgemm on an Intel CPU: windows 1.3%, steps 4.8%; with its Zen sgemm on an AMD
# EPYC: first 100 steps 1.0%, windows 10.4%, steps 14.5%, the last window 0.73 against fp32's 0.82
# (bf16 ahead). About 75 s on 2 cores.
set -u
PT=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common="--steps 200 --eval-every 0 --no-ckpt --stages 1 --threads 1 --model gpt2-tiny"
for p in bf16 fp32; do
    "$PT" train $common --precision $p --run-dir "$out/$p" >"$out/$p.log" 2>&1 || { tail -n 5 "$out/$p.log"; echo "FAIL: the $p run failed"; exit 1; }
done
python3 - "$out/bf16/metrics.jsonl" "$out/fp32/metrics.jsonl" <<'PY'
import json, sys
def losses(path):
    return [d["loss"] for d in map(json.loads, open(path)) if "step" in d and "loss" in d]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
if len(a) != 200 or len(b) != 200:
    sys.exit("FAIL: %d and %d steps, not 200" % (len(a), len(b)))
if a == b:
    sys.exit("FAIL: the bf16 run has the fp32 run's losses: nothing was rounded")
win = [(sum(a[w:w + 20]) / 20, sum(b[w:w + 20]) / 20) for w in range(0, 200, 20)]
dw = max(abs(x - y) / y for x, y in win)
dp = max(abs(x - y) / y for x, y in win[:5])
ds = max(abs(x - y) / y for x, y in zip(a, b))
print("bf16 vs fp32 over 200 steps: windows of 20 within %.2f%% (first 100 steps %.2f%%), single steps within %.2f%%; "
      "last window %.4f vs %.4f" % (100 * dw, 100 * dp, 100 * ds, win[-1][0], win[-1][1]))
ok = (dp < 0.03 and dw < 0.12 and ds < 0.20 and win[-1][0] < 1.03 * win[-1][1] and win[-1][0] < 0.5 * win[0][0] and
      win[-1][1] < 0.5 * win[0][1])
sys.exit(0 if ok else "FAIL: outside the tolerance")
PY

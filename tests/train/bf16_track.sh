#!/bin/bash
# train.bf16_track: the loss of a bf16 run tracks the fp32 run's (issue 19): gpt2-tiny on the built-in
# task, 200 steps of 4 x 64 tokens from the same seed, `--precision bf16` against `--precision fp32`.
# Stated tolerance: every 20-step window's mean loss within 3% of fp32's (measured at most 1.3%),
# every single step within 10% (measured 4.8%: single steps are noisy, the curves cross), and both runs
# learn (the last window's mean below half the first's). About 40 s on 2 cores.
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
ds = max(abs(x - y) / y for x, y in zip(a, b))
print("bf16 vs fp32 over 200 steps: windows of 20 within %.2f%%, single steps within %.2f%%; last window %.4f vs %.4f"
      % (100 * dw, 100 * ds, win[-1][0], win[-1][1]))
ok = dw < 0.03 and ds < 0.10 and win[-1][0] < 0.5 * win[0][0] and win[-1][1] < 0.5 * win[0][1]
sys.exit(0 if ok else "FAIL: outside the tolerance")
PY

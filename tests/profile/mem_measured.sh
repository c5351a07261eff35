#!/bin/sh
# Memory measured by the allocator against the planner's prediction, by kind, on real jobs
# (issue 17): `pipetrain train --nproc 4 --stages 2 --dp 2 --profile DIR` for gpt2-tiny and
# gpt2-small, --zero 0 and 1. From DIR/summary.json, for every rank: weights, gradients,
# optimizer state, activations, other and the total within 5% of the prediction; communication
# buffers (staged sends, timing-dependent) above 0 and at most the prediction; with --zero 1 the
# optimizer state is half of --zero 0's (D = 2) and nothing else changes.
#   mem_measured.sh PIPETRAIN
PT=$1
D=mem_measured
rm -rf $D && mkdir -p $D && cd $D || exit 1
fail() { echo "FAIL: $*"; exit 1; }
run() { # run NAME MODEL ZERO EXTRA...
    name=$1 model=$2 zero=$3
    shift 3
    timeout 120 "$PT" train --model "$model" --nproc 4 --stages 2 --dp 2 --zero "$zero" --steps 2 --eval-batches 0 \
        --no-ckpt --threads 1 --comm-timeout 60 --profile "$name" --run-dir "run_$name" "$@" > "$name.txt" 2>&1 ||
        { cat "$name.txt"; fail "$name: train exited $?"; }
    grep -q "rank 3 memory, MiB measured/predicted: total" "$name.txt" || { cat "$name.txt"; fail "$name: no memory lines"; }
}
run tiny0 gpt2-tiny 0 --seq-len 64
run tiny1 gpt2-tiny 1 --seq-len 64
run small0 gpt2-small 0 --seq-len 64 --micro-batch-size 1 --micro-batches 4
run small1 gpt2-small 1 --seq-len 64 --micro-batch-size 1 --micro-batches 4
python3 - tiny0 tiny1 small0 small1 <<'EOF' || fail "measured and predicted memory disagree (above)"
import json, sys
bad = 0
def check(ok, what):
    global bad
    if not ok:
        print("FAIL:", what)
        bad += 1
runs = {}
for name in sys.argv[1:]:
    s = json.load(open(name + "/summary.json"))
    m = s["memory"]
    runs[name] = m
    check(m["zero"] == (1 if name.endswith("1") else 0), "%s: memory.zero is %s" % (name, m["zero"]))
    check(len(m["ranks"]) == 4, "%s: %d ranks" % (name, len(m["ranks"])))
    for r in m["ranks"]:
        me, pr = r["measured"], r["predicted"]
        where = "%s rank %d" % (name, r["rank"])
        for k in ("weights", "gradients", "optimizer", "activations", "other"):
            check(abs(me[k] - pr[k]) <= 0.05 * pr[k], "%s %s: measured %d, predicted %d" % (where, k, me[k], pr[k]))
        for k in ("weights", "gradients", "optimizer", "activations"):
            check(pr[k] > 0, "%s %s: predicted 0" % (where, k))
        check(0 < me["communication"] <= pr["communication"],
              "%s communication: measured %d, predicted %d" % (where, me["communication"], pr["communication"]))
        check(abs(r["peak_bytes"] - r["pred_bytes"]) <= 0.05 * r["pred_bytes"],
              "%s total: measured %d, predicted %d" % (where, r["peak_bytes"], r["pred_bytes"]))
        check(abs(sum(pr.values()) - r["pred_bytes"]) <= 1e-6 * r["pred_bytes"], "%s: the kinds do not add up" % where)
        print("%s: measured %.2f MiB, predicted %.2f MiB (optimizer %.2f / %.2f)" % (
            where, r["peak_bytes"] / 2**20, r["pred_bytes"] / 2**20, me["optimizer"] / 2**20, pr["optimizer"] / 2**20))
for model in ("tiny", "small"):
    for r0, r1 in zip(runs[model + "0"]["ranks"], runs[model + "1"]["ranks"]):
        o0, o1 = r0["measured"]["optimizer"], r1["measured"]["optimizer"]
        check(abs(o1 - o0 / 2) <= 0.01 * o0, "%s rank %d: zero 1 optimizer %d is not half of %d" % (model, r0["rank"], o1, o0))
        for k in ("weights", "gradients", "activations"):
            check(r0["measured"][k] == r1["measured"][k], "%s rank %d: %s changed with --zero 1" % (model, r0["rank"], k))
sys.exit(1 if bad else 0)
EOF
echo ok

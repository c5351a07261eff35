#!/bin/bash
# train.tp_nodes: tensor parallelism across two "nodes" (issue 18): two network namespaces joined by
# a veth pair (198.18.3.0/24, the tcp provider), two ranks each, `--stages 2 --tp 2 --sp` of
# gpt2-tiny: each node holds one stage's tensor-parallel group (its collectives inside the node),
# the pipeline's messages cross between the nodes, each tensor-parallel rank to its peer. The run
# must give the one-host run's losses bit for bit (the same collectives in the same order; only
# the wire differs), and a --tp 4 that would span the two nodes is refused by every rank, naming
# the ranks per node. Skipped (77) without root or namespaces. About 15 s.
#   tp_nodes.sh PIPETRAIN
PT=$1
D=tp_nodes_test
here=$(cd "$(dirname "$0")" && pwd)
rm -rf $D && mkdir -p $D && cd $D || exit 1
fail() { echo "FAIL: $*"; for f in *.txt; do echo "--- $f"; tail -8 "$f"; done; exit 1; }
. "$(dirname "$0")/netns_pair.sh"
netns_pair pttp 198.18.3
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
train="$PT train --model gpt2-tiny --stages 2 --tp 2 --sp --steps 4 --no-ckpt --eval-every 0 --seq-len 64
       --micro-batch-size 1 --micro-batches 4 --comm-timeout 60 --threads 1"

node() { # node NS RANK OUT TRAIN-ARGS...
    local ns=$1 r=$2 out=$3
    shift 3
    ip netns exec "$ns" env PT_FABRIC_PROVIDER=tcp "$PT" launch --nproc 2 --nodes 2 --node-rank "$r" \
        --master 198.18.3.1:29631 -- "$@" > "$out" 2>&1
}
node "$NS_A" 0 a.txt $train --run-dir two & a=$!
node "$NS_B" 1 b.txt $train --run-dir two & b=$!
wait $a || fail "node 0's launcher failed"
wait $b || fail "node 1's launcher failed"
grep -q "plan: gpt2-tiny, 2 stages x 1 chunks x 1 replicas x 2 tensor-parallel (sequence-parallel)" a.txt ||
    fail "node 0 did not run the P 2 x T 2 plan"
$train --run-dir one > one.txt 2>&1 || fail "the one-host run failed"
steps() { python3 "$here/metrics_steps.py" "$1/metrics.jsonl"; }
steps two > two.steps
steps one > one.steps
[ "$(wc -l < one.steps)" -eq 4 ] || fail "the one-host run has $(wc -l < one.steps) steps, not 4"
cmp -s one.steps two.steps || fail "two nodes over tcp give other losses than one host: $(paste one.steps two.steps)"
echo "ok: P 2 x T 2 --sp over two namespace nodes (tcp) = one host, bit for bit: $(tr '\n' ' ' < two.steps)"

# --tp 4 over nodes of 2 ranks: refused by every rank before the first step
node "$NS_A" 0 a4.txt $train --tp 4 --stages 1 --run-dir four & a=$!
node "$NS_B" 1 b4.txt $train --tp 4 --stages 1 --run-dir four & b=$!
wait $a && fail "node 0 ran a --tp 4 spanning the nodes"
wait $b
grep -q "pipetrain: --tp 4 spans nodes: each node runs 2 ranks" a4.txt || fail "node 0 did not name the spanning --tp"
echo "train.tp_nodes: ok"

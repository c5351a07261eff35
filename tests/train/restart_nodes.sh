#!/bin/bash
# `launch --nodes 2 --max-restarts` (issue 21): two "nodes" as network namespaces joined by a veth
# pair (198.18.1.0/24, tcp provider), two ranks each, a P = 2, D = 2 zbv run of gpt2-tiny. Node 0's
# launcher leads the node agents. Every rank of node 1 is SIGKILLed after a step; node 1's agent
# reports it, node 0's stops its own ranks, both restart from the newest checkpoint (the rendezvous
# refuses ranks of the old attempt), and the run ends with the uninterrupted run's weights, bit for
# bit. Then node 1's launcher itself is killed (the node "drops out") and started again: the leader
# waits for it to rejoin and the job again ends with the same bits. Every wait is on an event,
# bounded; the namespaces and every process are removed at the end. Skipped (77) without root or
# namespaces.
#   restart_nodes.sh PIPETRAIN
PT=$1
D=restart_nodes_test
rm -rf $D && mkdir -p $D && cd $D || exit 1
fail() { echo "FAIL: $*"; for f in *.txt; do echo "--- $f"; tail -15 "$f"; done; exit 1; }
. "$(dirname "$0")/netns_pair.sh"
netns_pair ptr 198.18.1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PT_FABRIC_PROVIDER=tcp
train="$PT train --model gpt2-tiny --stages 2 --dp 2 --schedule zbv --steps 24 --ckpt-every 1 --eval-batches 0
       --seq-len 32 --micro-batch-size 1 --comm-timeout 60 --threads 1"

# the uninterrupted run, on the two nodes
node() { # node NS RANK RUN_DIR OUT [MORE LAUNCH OPTIONS]
    local ns=$1 r=$2 dir=$3 out=$4
    shift 4
    ip netns exec "$ns" "$PT" launch --nproc 2 --nodes 2 --node-rank "$r" --master 198.18.1.1:29611 "$@" \
        -- $train --run-dir "$dir" > "$out" 2>&1
}
node "$NS_A" 0 ref a_ref.txt & a=$!
node "$NS_B" 1 ref b_ref.txt & b=$!
wait $a || fail "the uninterrupted run failed on node 0"
wait $b || fail "the uninterrupted run failed on node 1"

# step event -> freeze node 1's ranks, SIGKILL both: the whole node's ranks die
node "$NS_A" 0 kill a_kill.txt --max-restarts 3 & a=$!
node "$NS_B" 1 kill b_kill.txt --max-restarts 3 & b=$!
wait_step kill '"step":3,' $a
ranks_b=$(for p in $(ip netns pids "$NS_B"); do
    tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q ' launch ' || echo $p; done)
[ "$(echo $ranks_b | wc -w)" -eq 2 ] || fail "node 1 has ranks '$ranks_b', not two"
kill -STOP $ranks_b 2>/dev/null
kill -KILL $ranks_b 2>/dev/null
echo "killed node 1's ranks: $ranks_b"
wait $a || fail "node 0's launcher exited $? after the restart"
wait $b || fail "node 1's launcher exited $? after the restart"
grep -q 'restart 1 of at most 3 from' a_kill.txt || fail "node 0 did not restart the job"
grep -q 'node 1: rank [23] killed by signal 9; told node 0' b_kill.txt || fail "node 1 did not report its rank"
"$PT" ckpt export ref/ckpt --format safetensors ref.safetensors > /dev/null || fail "export ref"
"$PT" ckpt export kill/ckpt --format safetensors kill.safetensors > /dev/null || fail "export kill"
cmp -s ref.safetensors kill.safetensors || fail "after node 1's ranks died, the final weights differ"
echo "ok: node 1's ranks killed after step 3: $(grep -o 'rank [0-9] (host [^)]*) was killed[^;]*' a_kill.txt | head -1); same bits"

# node 1's launcher killed with its ranks (the node drops out), then started again: it rejoins
node "$NS_A" 0 drop a_drop.txt --max-restarts 3 --rejoin-timeout 60 & a=$!
node "$NS_B" 1 drop b_drop.txt --max-restarts 3 & b=$!
wait_step drop '"step":3,' $a
ip netns pids "$NS_B" | xargs -r kill -KILL
wait $b 2>/dev/null
for t in $(seq 1 3000); do grep -q 'node 1 (host [^)]*) dropped out' a_drop.txt && break; sleep 0.02; done
grep -q 'node 1 (host [^)]*) dropped out' a_drop.txt || fail "node 0 did not see node 1 drop out"
node "$NS_B" 1 drop b_drop2.txt --max-restarts 3 & b=$!
wait $a || fail "node 0's launcher exited $? after node 1 rejoined"
wait $b || fail "node 1's new launcher exited $?"
"$PT" ckpt export drop/ckpt --format safetensors drop.safetensors > /dev/null || fail "export drop"
cmp -s ref.safetensors drop.safetensors || fail "after node 1 dropped out and rejoined, the final weights differ"
echo "ok: node 1 dropped out and rejoined: $(grep -o 'node 1 (host [^)]*) dropped out[^;]*; restart[^(]*' a_drop.txt | head -1); same bits"

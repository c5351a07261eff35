#!/bin/bash
# bench/recovery.sh [PIPETRAIN] [MODEL]: how long automatic recovery takes (issue 21). A P = 2, D = 2
# zbv run of MODEL (default gpt2-small) with --max-restarts; after step 3 one rank is SIGKILLed
# (locally: rank 1; across two network-namespace "nodes", when root can make them: every rank of
# node 1). Each setting twice: restored from the disk checkpoint (--ckpt-every 2), and from the
# in-memory snapshots (--snapshot-every 2, no disk checkpoint before the end; across the nodes node
# 1's snapshot store is wiped with its ranks, so its ranks reload their buddies' copies).
# Prints one JSON line per setting: detection (the kill -> the launcher saw it), teardown
# (-> the ranks started again), startup (-> the checkpoint load begins: exec, rendezvous, plan,
# model), reload (the load), first_step (-> the first step after it ends), total (the kill -> that
# step's end), and the steps lost (done before the failure, redone after it). The phases come from
# the first metrics line of the restarted run ("recovery", docs/fault-tolerance.md).
# Leaves OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE as they are (the CPU kernels' guard setting).
PT=${1:-./build/pipetrain}
MODEL=${2:-gpt2-small}
PT=$(readlink -f "$PT")
W=$(mktemp -d /tmp/pt-recovery.XXXXXX)
NS_A="" NS_B=""
cleanup() {
    for ns in $NS_A $NS_B; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL; ip netns del "$ns" 2>/dev/null; done
    rm -rf "$W" /dev/shm/pt-bench-$$-*
}
trap cleanup EXIT
cd "$W" || exit 1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
train="train --model $MODEL --stages 2 --dp 2 --schedule zbv --steps 6 --eval-batches 0 --seq-len 128
       --micro-batch-size 1 --threads 1 --max-restarts 2 --comm-timeout 120"
disk="--ckpt-every 2"
memory="--ckpt-every 100 --snapshot-every 2"

wait_line() { # wait_line FILE PATTERN PID
    for t in $(seq 1 6000); do grep -q "$2" "$1" 2>/dev/null && return 0; kill -0 "$3" 2>/dev/null || return 1; sleep 0.05; done
    return 1
}

report() { # report SETTING RUN_DIR ERRFILE OUTFILE KILL_NS
    python3 - "$1" "$2/metrics.jsonl" "$3" "$4" "$5" "$MODEL" <<'EOF'
import json, re, sys
setting, metrics, errf, outf, kill_ns, model = sys.argv[1:5] + [int(sys.argv[5]), sys.argv[6]]
lines = [json.loads(l) for l in open(metrics) if l.startswith("{")]
first = next((l for l in lines if "recovery" in l), None)
err = open(errf).read()
m = re.search(r"during step (\d+); restart 1 of at most", err)
res = re.findall(r"resuming after step (\d+)", open(outf).read())
if not first or not m:
    print(json.dumps({"bench": "recovery", "setting": setting, "error": "no recovery recorded"})); sys.exit(1)
r = first["recovery"]
failed_step, restore = int(m.group(1)), int(res[-1]) if res else 0
out = {"bench": "recovery", "setting": setting, "model": model, "P": 2, "D": 2, "schedule": "zbv",
       "detection_s": round((r["failure_wall_ns"] - kill_ns) * 1e-9, 4)}
out["reload_from"] = r.get("reload_from", "start")
for k in ("teardown_s", "startup_s", "reload_s", "first_step_s"):
    out[k] = round(r.get(k, 0), 4)
snaps = [l["snapshot"] for l in lines if "snapshot" in l]
if snaps: # rank 0's: the stall copying its state to host memory; the background write and buddy copy
    out["snapshot_stall_ms"] = round(max(x["stall_ms"] for x in snaps), 1)
    for k in ("prev_write_ms", "prev_copy_ms"):
        v = [x[k] for x in snaps if k in x]
        if v:
            out["snapshot_" + k[5:]] = round(max(v), 1)
out["total_s"] = round(out["detection_s"] + first["recovery_s"], 4)
out["steps_lost"] = failed_step - 1 - restore
out["failed_during_step"], out["restored_step"] = failed_step, restore
print(json.dumps(out))
EOF
}

# locally: 4 ranks on this host (shm), from disk and from memory
for src in disk memory; do
    opts=$disk; [ $src = memory ] && opts="$memory --snapshot-dir /dev/shm/pt-bench-$$-local"
    "$PT" $train $opts --run-dir local-$src > local-$src.out 2> local-$src.err &
    pid=$!
    wait_line local-$src/metrics.jsonl '"step":3,' $pid || { echo '{"bench":"recovery","setting":"local","error":"the run ended early"}'; tail local-$src.err; exit 1; }
    victim=$(pgrep -P $pid | sed -n 2p)
    kill_ns=$(date +%s%N)
    kill -9 "$victim"
    wait $pid
    report local local-$src local-$src.err local-$src.out "$kill_ns"
    rm -rf local-$src /dev/shm/pt-bench-$$-local
done

# two network-namespace nodes (tcp), when this user can make them
if [ "$(id -u)" = 0 ] && command -v ip > /dev/null && ip netns add "ptb$$a" 2>/dev/null; then
    NS_A="ptb$$a"; NS_B="ptb$$b"
    ip netns add "$NS_B"
    ip link add "pb$$a" type veth peer name "pb$$b"
    ip link set "pb$$a" netns "$NS_A"; ip link set "pb$$b" netns "$NS_B"
    ip -n "$NS_A" addr add 198.18.2.1/24 dev "pb$$a"; ip -n "$NS_B" addr add 198.18.2.2/24 dev "pb$$b"
    for ns in $NS_A $NS_B; do ip -n "$ns" link set lo up; done
    ip -n "$NS_A" link set "pb$$a" up; ip -n "$NS_B" link set "pb$$b" up
    export PT_FABRIC_PROVIDER=tcp
    for src in disk memory; do
        for r in 0 1; do
            ns=$NS_A; [ $r = 1 ] && ns=$NS_B
            opts=$disk; [ $src = memory ] && opts="$memory --snapshot-dir /dev/shm/pt-bench-$$-node$r"
            ip netns exec "$ns" "$PT" launch --nproc 2 --nodes 2 --node-rank $r --master 198.18.2.1:29711 --max-restarts 2 \
                -- "$PT" $train $opts --run-dir nodes-$src > nodes$r-$src.out 2> nodes$r-$src.err &
            [ $r = 0 ] && a=$! || b=$!
        done
        wait_line nodes-$src/metrics.jsonl '"step":3,' $a || { echo '{"bench":"recovery","setting":"two-nodes","error":"the run ended early"}'; exit 1; }
        if [ $src = memory ]; then # node 1's ranks' copies of step 2 are on node 0 (the copy takes longer than a step here)
            for r in 2 3; do
                wait_line "$(echo /dev/shm/pt-bench-$$-node0/layout-*)/buddy-$r/step_000002/manifest.json" . $a ||
                    { echo '{"bench":"recovery","setting":"two-nodes","error":"no buddy copy"}'; exit 1; }
            done
        fi
        ranks=$(for p in $(ip netns pids "$NS_B"); do tr '\0' ' ' < /proc/$p/cmdline | grep -q ' launch ' || echo $p; done)
        kill -STOP $ranks
        rm -rf /dev/shm/pt-bench-$$-node1 # node 1's memory is gone with its ranks
        kill_ns=$(date +%s%N)
        kill -9 $ranks
        wait $a; wait $b
        cat nodes1-$src.err >> nodes0-$src.err
        report two-nodes nodes-$src nodes0-$src.err nodes0-$src.out "$kill_ns"
        rm -rf nodes-$src /dev/shm/pt-bench-$$-node*
    done
fi

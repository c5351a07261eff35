#!/bin/bash
# In-memory snapshots (`train --snapshot-every K`, issue 21). A P = 2, D = 2 zbv run of gpt2-tiny
# with no disk checkpoint before its end (--ckpt-every 100) and a snapshot every 2 steps:
#  1. one node: SIGKILLed at three random moments (seeded, printed; SEED=N reruns), it restarts
#     each time from its ranks' memory and ends with the uninterrupted run's weights and losses,
#     bit for bit, having lost at most 2K steps a time (K, plus a snapshot still being written);
#  2. two "nodes" on loopback (two launchers, two ranks each): node 1's ranks are killed and its
#     snapshot store wiped (the node's memory is gone): its ranks take their state from their
#     buddies on node 0; same bits;
#  3. a byte flipped in one rank's own snapshot (and a half-written newer one lying beside it):
#     the checksum catches it, that rank takes its buddy's copy, the half one is never used;
#  4. a rank's own copy and its buddy's both gone: the job resumes from the disk checkpoint;
#  5. ranks restarted by another agent (torchrun's TORCHELASTIC_RESTART_COUNT) find their
#     snapshots by themselves; with no usable snapshot and no checkpoint they start from step 0
#     (the ranks that loaded theirs re-initialised);
#  6. bad settings refused in one line.
# Every wait is on an event (a metrics line, a process ending), bounded; no process is left behind.
#   restart_snapshot.sh PIPETRAIN
PT=$1
D=restart_snapshot_test
rm -rf $D && mkdir -p $D && cd $D || exit 1
HERE=$(pwd)
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SEED=$SEED reruns these kills)"
RANDOM=$SEED
cleanup() { pkill -9 -f "$HERE/" 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL (seed $SEED): $*"; for f in *.txt; do echo "--- $f"; tail -12 "$f"; done; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
common="--model gpt2-tiny --stages 2 --dp 2 --schedule zbv --steps 24 --eval-batches 0 --seq-len 32
        --micro-batch-size 1 --comm-timeout 60 --threads 1"
snap="--ckpt-every 100 --snapshot-every 2"
PORT=$(( 20000 + ($$ * 7) % 20000 ))

wait_line() { # wait_line FILE PATTERN PID...
    local f=$1 pat=$2
    shift 2
    for t in $(seq 1 3000); do
        grep -q "$pat" "$f" 2>/dev/null && return 0
        for p in "$@"; do kill -0 "$p" 2>/dev/null || fail "a launcher ended before '$pat' in $f"; done
        sleep 0.02
    done
    fail "no '$pat' in $f within 60 s"
}
wait_end() { # wait_end PID: within 300 s; its exit status
    for t in $(seq 1 3000); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && { kill -9 "$1"; fail "a launcher did not finish within 300 s"; }
    wait "$1"
}
same() { # same RUN_DIR: final weights and every step's loss equal the uninterrupted run's
    "$PT" ckpt export "$1/ckpt" --format safetensors "$1.safetensors" > /dev/null || fail "export $1"
    cmp -s ref.safetensors "$1.safetensors" || fail "$1: the final weights differ from the uninterrupted run's"
    [ "$(loss ref/metrics.jsonl)" = "$(loss "$1/metrics.jsonl")" ] || fail "$1: the losses differ"
    [ "$(grep -c '"step"' "$1/metrics.jsonl")" -eq 24 ] || fail "$1: not one metrics line per step"
}
loss() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1"; }

timeout 300 "$PT" train $common --run-dir "$HERE/ref" --ckpt-every 100 > ref.txt 2>&1 || fail "the uninterrupted run failed"
"$PT" ckpt export ref/ckpt --format safetensors ref.safetensors > /dev/null || fail "export ref"

# 1. one node, three kills; the ranks' memory survives them
k1=$(( 3 + RANDOM % 3 )); k2=$(( k1 + 2 + RANDOM % 3 )); k3=$(( k2 + 2 + RANDOM % 3 ))
"$PT" train $common $snap --snapshot-dir "$HERE/mem" --max-restarts 5 --run-dir "$HERE/kill" > kill.txt 2>&1 &
launcher=$!
i=0
for k in $k1 $k2 $k3; do
    pat="\"step\":$k,"
    [ $i -gt 0 ] && pat="\"restart_count\":$i,.*\"step\":$k,"
    wait_line kill/metrics.jsonl "$pat" $launcher
    ranks=($(pgrep -P $launcher))
    [ ${#ranks[@]} -eq 4 ] || fail "attempt $i has ${#ranks[@]} rank processes, not 4"
    kill -STOP ${ranks[@]}
    r=$(( RANDOM % 4 ))
    echo "kill $((i + 1)): after step $k, rank process ${ranks[$r]} (the ${r}th)"
    kill -9 ${ranks[$r]}
    kill -CONT ${ranks[@]} 2>/dev/null
    i=$((i + 1))
done
wait_end $launcher || fail "the killed run exited $? after its restarts"
[ "$(grep -c 'from the in-memory snapshots' kill.txt)" -eq 3 ] || fail "not three resumes from memory"
# every recovery the metrics still hold says memory (a restart that goes back before an earlier
# restart's first step drops that line with the others past its snapshot)
grep -q '"reload_from":"memory"' kill/metrics.jsonl || fail "metrics do not say reload_from memory"
! grep '"reload_from"' kill/metrics.jsonl | grep -qv '"reload_from":"memory"' || fail "a recovery's metrics say another source"
same kill
lost=$(grep -o 'during step [0-9]*;\|resuming after step [0-9]*' kill.txt | grep -o '[0-9]*' | paste - - |
       awk '{ l = $1 - 1 - $2; if (l > m) m = l } END { print m + 0 }')
[ "$lost" -le 4 ] || fail "a restart lost $lost steps (more than 2 x --snapshot-every)"
[ ! -e mem ] || [ -z "$(ls -A mem)" ] || fail "the finished run left its snapshots in mem/: $(ls -R mem | head -5)"
echo "ok: killed after steps $k1, $k2, $k3; resumed from memory each time (at most $lost steps lost); same bits"

# 1b. 1f1b with --zero 1: the head (with its tied copy of wte) on the last stage, each replica
# holding half of the moments; one kill after step 5
z="--model gpt2-tiny --stages 2 --dp 2 --zero 1 --schedule 1f1b --steps 12 --eval-batches 0 --seq-len 32
   --micro-batch-size 1 --comm-timeout 60 --threads 1 --ckpt-every 100"
timeout 300 "$PT" train $z --run-dir "$HERE/zref" > zref.txt 2>&1 || fail "the uninterrupted 1f1b run failed"
"$PT" train $z --snapshot-every 2 --snapshot-dir "$HERE/zmem" --max-restarts 2 --run-dir "$HERE/zkill" > zkill.txt 2>&1 &
launcher=$!
wait_line zkill/metrics.jsonl '"step":5,' $launcher
kill -9 $(pgrep -P $launcher | sed -n 4p)
wait_end $launcher || fail "the killed 1f1b run exited $?"
grep -q "from the in-memory snapshots" zkill.txt || fail "the 1f1b --zero 1 run did not resume from memory"
"$PT" ckpt export zref/ckpt --format safetensors zref.safetensors > /dev/null || fail "export zref"
"$PT" ckpt export zkill/ckpt --format safetensors zkill.safetensors > /dev/null || fail "export zkill"
cmp -s zref.safetensors zkill.safetensors || fail "1f1b --zero 1: the final weights differ"
echo "ok: 1f1b --zero 1 (tied head on the last stage, moment slices): $(grep -o 'resuming after step [0-9]*' zkill.txt) from memory; same bits"

# two nodes on loopback: node N's launcher, its own snapshot store nodeN/
node() { # node RANK RUN_DIR OUT [MORE TRAIN OPTIONS]
    local r=$1 dir=$2 out=$3
    shift 3
    "$PT" launch --nproc 2 --nodes 2 --node-rank "$r" --master 127.0.0.1:$PORT $LAUNCH_MORE \
        -- "$PT" train $common --run-dir "$HERE/$dir" --snapshot-dir "$HERE/$dir-node$r" "$@" > "$out" 2>&1
}
node1_ranks() { # the rank processes of node 1 of run dir $1
    for p in $(pgrep -f -- "--snapshot-dir $HERE/$1-node1"); do
        tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q ' launch ' || echo $p
    done
}

# 2. node 1 lost: its ranks killed, its memory wiped; the launchers restart the job
LAUNCH_MORE="--max-restarts 2"
node 0 buddy a_buddy.txt $snap & a=$!
node 1 buddy b_buddy.txt $snap & b=$!
wait_line buddy/metrics.jsonl '"step":9,' $a $b
victims=$(node1_ranks buddy)
[ "$(echo $victims | wc -w)" -eq 2 ] || fail "node 1 has ranks '$victims', not two"
kill -STOP $victims
rm -rf buddy-node1
kill -KILL $victims
wait_end $a || fail "node 0's launcher exited $?"
wait_end $b || fail "node 1's launcher exited $?"
grep -q "from the in-memory snapshots.*2 rank(s) took their snapshot from their buddy's copy" a_buddy.txt ||
    fail "the ranks of node 1 did not take their buddies' copies"
grep -q '"reload_from":"buddy"' buddy/metrics.jsonl || fail "metrics do not say reload_from buddy"
same buddy
echo "ok: node 1's ranks and memory lost after step 9: $(grep -o 'resuming after step [0-9]*' a_buddy.txt), from the buddies; same bits"

# 3. and 4.: a job stopped after step 9 (no restarts: one rank killed ends it), then resumed by hand
LAUNCH_MORE=""
stopped() { # stopped RUN_DIR [TRAIN OPTIONS]: runs until after step 9, kills a rank, waits for the end
    # (a bound: ranks of two launchers on one host see each other's deaths at once, on other hosts
    # only at --comm-timeout)
    local dir=$1
    shift
    node 0 "$dir" "a_$dir.txt" "$@" --comm-timeout 10 & a=$!
    node 1 "$dir" "b_$dir.txt" "$@" --comm-timeout 10 & b=$!
    wait_line "$dir/metrics.jsonl" '"step":9,' $a $b
    [ -n "$WAIT_CKPT" ] && wait_line "$dir/ckpt/latest" "$WAIT_CKPT" $a $b
    kill -KILL $(node1_ranks "$dir" | head -1)
    wait_end $a
    wait_end $b
    ls "$dir"-node0/layout-*/rank-1/step_* > /dev/null 2>&1 || fail "$dir: no snapshot of rank 1 in node 0's store"
}
resumed() { # resumed RUN_DIR [TRAIN OPTIONS]
    local dir=$1
    shift
    node 0 "$dir" "a2_$dir.txt" --resume "$@" & a=$!
    node 1 "$dir" "b2_$dir.txt" --resume "$@" & b=$!
    wait_end $a || fail "$dir: node 0's resumed launcher exited $?"
    wait_end $b || fail "$dir: node 1's resumed launcher exited $?"
}
flip_rank1() { # flip_rank1 RUN_DIR: one byte flipped inside the first tensor of each of rank 1's own snapshots
    for own in $(ls -d "$1"-node0/layout-*/rank-1/step_* | grep -v '\.tmp$'); do
        local off=$(( $(grep -o '"offset": *[0-9]*' "$own/manifest.json" | head -1 | grep -o '[0-9]*$') + 100 ))
        local byte=$(od -An -tu1 -j $off -N1 "$own/shard-0.ptz" | tr -d ' ')
        printf "\\x$(printf %02x $(( byte ^ 255 )))" | dd of="$own/shard-0.ptz" bs=1 seek=$off conv=notrunc status=none
    done
}
restarted_by_agent() { # restarted_by_agent RUN_DIR: both launchers again, as torchrun would restart the ranks
    export TORCHELASTIC_RESTART_COUNT=1
    node 0 "$1" "a2_$1.txt" $snap & a=$!
    node 1 "$1" "b2_$1.txt" $snap & b=$!
    wait_end $a || fail "$1: node 0's restarted launcher exited $?"
    wait_end $b || fail "$1: node 1's restarted launcher exited $?"
    unset TORCHELASTIC_RESTART_COUNT
}
# 3. rank 1's own snapshots have one byte flipped each; a newer half-written one lies beside them
stopped flip $snap
flip_rank1 flip
own=$(ls -d flip-node0/layout-*/rank-1/step_* | grep -v '\.tmp$' | tail -1)
mkdir -p "$(dirname "$own")/step_000099.tmp" && echo junk > "$(dirname "$own")/step_000099.tmp/shard-0.ptz"
resumed flip $snap
grep -q "rank 1: its snapshot of step .* could not be loaded: .*damaged (xxh3" a2_flip.txt ||
    fail "the flipped byte was not reported as a checksum failure of rank 1's snapshot"
grep -q "took their snapshot from their buddy's copy: their own failed its checksums" a2_flip.txt ||
    fail "rank 1 did not fall back to its buddy's copy"
same flip
echo "ok: a flipped byte in rank 1's snapshot: caught by its checksum, the buddy's copy used; the half-written one ignored; same bits"

# 4. rank 1's own copy and its buddy's (on node 1) both gone: the disk checkpoint (step 7) is used,
# though newer snapshots survive on other ranks
WAIT_CKPT=step_000007 stopped gone --ckpt-every 7 --snapshot-every 2
rm -rf gone-node0/layout-*/rank-1 gone-node1/layout-*/buddy-1
resumed gone --ckpt-every 7 --snapshot-every 2
grep -q "no snapshot step is held by every rank or its buddy (the newest is step [0-9]*)" a2_gone.txt ||
    fail "the fall-back to disk was not named"
grep -q "resuming after step 7 from" a2_gone.txt || fail "did not resume from the disk checkpoint of step 7"
same gone
echo "ok: both copies of rank 1's snapshot gone: resumed from the disk checkpoint of step 7; same bits"

# 5. a job another agent restarts (torchrun --max-restarts: TORCHELASTIC_RESTART_COUNT; a requeued
# SLURM job: SLURM_RESTART_COUNT): its ranks look for their snapshots by themselves, no --resume
stopped agent $snap
restarted_by_agent agent
grep -q "resuming after step [0-9]* from the in-memory snapshots" a2_agent.txt ||
    fail "ranks restarted by another agent did not resume from their snapshots"
tail -1 agent/metrics.jsonl | grep -q '"restart_count":1,' || fail "the restarted run's metrics lack restart_count 1"
same agent
echo "ok: restarted by another agent (TORCHELASTIC_RESTART_COUNT=1): resumed from the snapshots; same bits"

# 5b. the same, but rank 1's snapshots are damaged and its buddy's copy is gone, and there is no
# disk checkpoint: the ranks that loaded theirs go back to the initial state, and the run starts
# from step 0 (the same bits at the end)
stopped scratch $snap
flip_rank1 scratch
rm -rf scratch-node1/layout-*/buddy-1
restarted_by_agent scratch
grep -q "starting from step 0" a2_scratch.txt || fail "scratch: the run did not start again from step 0"
same scratch
echo "ok: no usable snapshot and no checkpoint: the partly loaded ranks re-initialised, the run from step 0; same bits"

# 6. refusals
out=$("$PT" train --snapshot-every -1 --steps 2 2>&1) && fail "--snapshot-every -1 was accepted"
echo "$out" | grep -q "snapshot-every is -1; give 0" || fail "no clear error for --snapshot-every -1: $out"
out=$("$PT" train --snapshot-every 2 --no-ckpt --steps 2 2>&1) && fail "--snapshot-every with --no-ckpt was accepted"
echo "$out" | grep -q "needs checkpoints" || fail "no clear error for --snapshot-every with --no-ckpt: $out"
echo "ok: bad snapshot settings refused"

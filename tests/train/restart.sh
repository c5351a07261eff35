#!/bin/bash
# `train --max-restarts` (issue 21): a P = 2, D = 2 zero-bubble (zbv) run whose ranks are SIGKILLed
# at three random moments (which rank, after which step and how long after it: from a seed this
# test prints; SEED=N reruns one) restarts by itself from its newest checkpoint each time and ends
# with the final weights and losses of an uninterrupted run, bit for bit; metrics.jsonl keeps one
# line per step and says restart_count. Then a run that fails during the same step every time (a
# NaN) is stopped after two restarts, and `--max-restarts 1` used up exits non-zero naming every
# failure; `launch --max-restarts` needs the train command's --run-dir.
# Every wait is on an event (a metrics line, a process ending), bounded; no process is left behind.
#   restart.sh PIPETRAIN
PT=$1
D=restart_test
rm -rf $D && mkdir -p $D && cd $D || exit 1
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $SEED (SEED=$SEED reruns these kills)"
RANDOM=$SEED
fail() { echo "FAIL (seed $SEED): $*"; tail -20 out.txt err.txt 2>/dev/null; pkill -9 -f "run-dir $D-" 2>/dev/null; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
common="--model gpt2-tiny --stages 2 --dp 2 --schedule zbv --steps 24 --ckpt-every 1 --eval-batches 0 --seq-len 32
        --micro-batch-size 1 --comm-timeout 60 --threads 1"

# the uninterrupted run
timeout 300 "$PT" train $common --run-dir ref > ref.txt 2>&1 || { cat ref.txt; fail "the uninterrupted run failed"; }

# the run killed three times: after steps k1 < k2 < k3 (2..12 of 24), each kill waits for the step's
# line of the current attempt (restart_count i), freezes its 4 ranks (SIGSTOP: however fast the
# machine, the run is still well before its end), SIGKILLs one and lets the others go on (they
# may be anywhere in a step, or writing a checkpoint), to be stopped by the launcher
k1=$(( 2 + RANDOM % 3 )); k2=$(( k1 + 1 + RANDOM % 3 )); k3=$(( k2 + 1 + RANDOM % 3 ))
"$PT" train $common --max-restarts 5 --run-dir kill > out.txt 2> err.txt &
launcher=$!
i=0
for k in $k1 $k2 $k3; do
    pat="\"step\":$k,"
    [ $i -gt 0 ] && pat="\"restart_count\":$i,.*\"step\":$k,"
    for t in $(seq 1 1200); do
        grep -q "$pat" kill/metrics.jsonl 2>/dev/null && break
        kill -0 $launcher 2>/dev/null || fail "the run ended before step $k of attempt $i"
        sleep 0.02
    done
    grep -q "$pat" kill/metrics.jsonl || fail "no step $k of attempt $i within 120 s"
    ranks=($(pgrep -P $launcher))
    [ ${#ranks[@]} -eq 4 ] || fail "attempt $i has ${#ranks[@]} rank processes, not 4"
    kill -STOP ${ranks[@]}
    r=$(( RANDOM % 4 ))
    at=$(grep -c '"step"' kill/metrics.jsonl)
    echo "kill $((i + 1)): after step $k (the run had logged $at lines), rank process ${ranks[$r]} (the ${r}th)"
    kill -9 ${ranks[$r]}
    kill -CONT ${ranks[@]} 2>/dev/null
    i=$((i + 1))
    # the next attempt starts only after every rank of this one is gone
done
for t in $(seq 1 3000); do kill -0 $launcher 2>/dev/null || break; sleep 0.1; done
kill -0 $launcher 2>/dev/null && { kill -9 $launcher; fail "the killed run did not finish within 300 s"; }
wait $launcher || fail "the killed run exited $? after its restarts"
[ "$(grep -c 'restart [0-9] of at most 5 from' err.txt)" -eq 3 ] || fail "not three restart lines"
grep -q 'was killed by signal 9 (Killed) during step' err.txt || fail "the failure line does not name the signal"
[ "$(grep -c 'recovered: step' out.txt)" -eq 3 ] || fail "not three 'recovered' lines"
[ "$(grep -c '"step"' kill/metrics.jsonl)" -eq 24 ] || fail "metrics.jsonl has $(grep -c '"step"' kill/metrics.jsonl) step lines, not 24"
tail -1 kill/metrics.jsonl | grep -q '"restart_count":3,' || fail "the last line does not say restart_count 3"
# bitwise: final weights (the last checkpoint, exported) and every step's loss
"$PT" ckpt export ref/ckpt --format safetensors ref.safetensors > /dev/null || fail "export ref"
"$PT" ckpt export kill/ckpt --format safetensors kill.safetensors > /dev/null || fail "export kill"
cmp -s ref.safetensors kill.safetensors || fail "the final weights differ from the uninterrupted run's"
loss() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1"; }
[ "$(loss ref/metrics.jsonl)" = "$(loss kill/metrics.jsonl)" ] || fail "the losses differ from the uninterrupted run's"
echo "ok: killed after steps $k1, $k2, $k3; recovered each time; final weights and losses bit for bit"

# a rank that hangs (SIGSTOP after step 3, never continued): the others give up at --comm-timeout
# (5 s), the launcher kills the hung one too and restarts; the end is again the uninterrupted bits
"$PT" train $common --comm-timeout 5 --max-restarts 2 --run-dir hang > out.txt 2> err.txt &
launcher=$!
for t in $(seq 1 1200); do
    grep -q '"step":3,' hang/metrics.jsonl 2>/dev/null && break
    kill -0 $launcher 2>/dev/null || fail "the hang run ended before step 3"
    sleep 0.02
done
ranks=($(pgrep -P $launcher))
kill -STOP ${ranks[$(( RANDOM % 4 ))]}
for t in $(seq 1 3000); do kill -0 $launcher 2>/dev/null || break; sleep 0.1; done
kill -0 $launcher 2>/dev/null && { kill -9 $launcher; fail "the hang run did not finish within 300 s"; }
wait $launcher || fail "the hang run exited $? after its restart"
grep -q 'restart 1 of at most 2 from' err.txt || fail "the hang was not restarted"
"$PT" ckpt export hang/ckpt --format safetensors hang.safetensors > /dev/null || fail "export hang"
cmp -s ref.safetensors hang.safetensors || fail "after the hang, the final weights differ from the uninterrupted run's"
echo "ok: a hung rank: $(grep -o 'rank [0-9] (host [^)]*) exited with status [0-9]* during step [0-9]*' err.txt | head -1), restarted, same bits"

# the same step failing every time (a NaN at step 2) stops after two restarts, naming each failure
timeout 300 "$PT" train --model gpt2-tiny --stages 2 --steps 8 --ckpt-every 1 --eval-batches 0 --seq-len 32 \
    --lr 1e4 --grad-clip 0 --warmup 0 --max-restarts 5 --run-dir nan > out.txt 2> err.txt
[ $? -ne 0 ] || fail "a run failing at the same step every time exited 0"
grep -q 'the job failed during step 2 3 times (restarted 2 times from the same state)' err.txt ||
    fail "the same-step stop is not said"
[ "$(grep -c 'pipetrain:   failure [123]: rank' err.txt)" -eq 3 ] || fail "not every failure named"
# --max-restarts 1 used up
timeout 300 "$PT" train --model gpt2-tiny --stages 2 --steps 8 --ckpt-every 1 --eval-batches 0 --seq-len 32 \
    --lr 1e4 --grad-clip 0 --warmup 0 --max-restarts 1 --run-dir nan1 > out.txt 2> err.txt
[ $? -ne 0 ] || fail "--max-restarts 1 used up exited 0"
grep -q -- '--max-restarts 1 used up, stopping. Every failure:' err.txt || fail "the exhausted restarts are not said"
[ "$(grep -c 'pipetrain:   failure [12]: rank' err.txt)" -eq 2 ] || fail "not both failures named"
# refusals before anything starts
"$PT" launch --nproc 2 --max-restarts 2 -- "$PT" train --stages 2 > out.txt 2> err.txt
[ $? -eq 2 ] && grep -q -- "--max-restarts needs the train command's --run-dir DIR" err.txt || fail "launch without --run-dir"
"$PT" train --stages 2 --max-restarts 2 --no-ckpt > out.txt 2> err.txt
[ $? -eq 2 ] && grep -q -- "--max-restarts with --no-ckpt would restart from step 0" err.txt || fail "--no-ckpt"
pgrep -f "run-dir (ref|kill|nan)" > /dev/null && fail "a rank process was left behind"
echo "ok: same-step stop, used-up restarts and refusals"

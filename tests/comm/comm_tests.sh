#!/usr/bin/env bash
# tests/comm/comm_tests.sh MODE RANK_TEST LAUNCH — multi-process communication tests that need
# more than "launch N ranks and check the exit status":
#   rendezvous  a rank never starts: the others fail naming it
#   kill        a rank dies mid-transfer (no launcher, so nobody kills the survivors): the
#               survivors fail naming it within the timeout, and no process is left behind
#   dead        shm: a rank dies holding a lock in its peer's shared-memory region (fault
#               injection in comm_rank_test), no launcher: the survivor must not spin inside
#               libfabric but fail at once naming the dead rank and its pid, remove the dead
#               rank's /dev/shm region, and leave no process behind
#   chain       shm, direct path: rank 2 is killed (SIGKILL from here, no launcher) while 48 MiB
#               messages stream 0 -> 2 -> 1 out of shared buffers: the survivors fail naming
#               it within the timeout, no process is left, and /dev/shm holds nothing of theirs
#   launcher    output prefixes, exit status and signal reporting, teardown when a rank fails
#   netns       two "nodes" as network namespaces joined by a veth pair (198.18.0.0/15), two
#               ranks each, tcp provider; skipped (exit 77) when namespaces cannot be made
set -u
MODE=$1
T=$2
L=$3
WORK=$(mktemp -d /tmp/pt-comm-test.XXXXXX)
PIDS=()
NS_A="" NS_B=""

cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
  done
  if [ -n "$NS_A" ]; then ip netns pids "$NS_A" 2>/dev/null | xargs -r kill -KILL 2>/dev/null; ip netns del "$NS_A" 2>/dev/null; fi
  if [ -n "$NS_B" ]; then ip netns pids "$NS_B" 2>/dev/null | xargs -r kill -KILL 2>/dev/null; ip netns del "$NS_B" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }

free_port() { "$T" freeport; }

# wait_pids SECONDS: waits for every pid in PIDS, at most SECONDS in all; fails on overrun
wait_pids() {
  local until=$(( $(date +%s) + $1 ))
  for p in "${PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null; do
      [ "$(date +%s)" -ge "$until" ] && fail "process $p still running after $1 s"
      sleep 0.1
    done
  done
}

status_of() { wait "$1"; echo $?; }

case "$MODE" in
rendezvous)
  PORT=$(free_port)
  export WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT PT_COMM_TIMEOUT=3 PT_FABRIC_PROVIDER=shm
  # ranks 0 and 1 start; 2 and 3 never do
  EXPECT_MISSING="ranks 2, 3 of 4" RANK=0 "$T" rendezvous >"$WORK/r0.log" 2>&1 & PIDS+=($!)
  EXPECT_MISSING="ranks 2, 3 of 4" RANK=1 "$T" rendezvous >"$WORK/r1.log" 2>&1 & PIDS+=($!)
  wait_pids 30
  s0=$(status_of "${PIDS[0]}"); s1=$(status_of "${PIDS[1]}")
  [ "$s0" = 0 ] && [ "$s1" = 0 ] || fail "rendezvous: statuses $s0 $s1"
  # a rank whose rank 0 never starts names rank 0 and the address
  PIDS=()
  EXPECT_MISSING="rank 0's rendezvous at 127.0.0.1:$PORT" RANK=2 "$T" rendezvous >"$WORK/r2.log" 2>&1 & PIDS+=($!)
  wait_pids 30
  s2=$(status_of "${PIDS[0]}")
  [ "$s2" = 0 ] || fail "missing rank 0: status $s2"
  cat "$WORK"/r*.log
  ;;
kill)
  PORT=$(free_port)
  # start-up with the full 60 s; only the wait on the dead rank is short (tcp detects it by its deadline)
  export WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT PT_COMM_TIMEOUT=60 KILL_WAIT_S=3 IPATH_NO_BACKTRACE=1
  for prov in shm tcp; do
    PIDS=()
    PORT=$(free_port); export MASTER_PORT=$PORT PT_FABRIC_PROVIDER=$prov
    for r in 0 1 2; do RANK=$r "$T" kill >"$WORK/k$r.log" 2>&1 & PIDS+=($!); done
    start=$(date +%s)
    wait_pids 30
    s0=$(status_of "${PIDS[0]}"); s1=$(status_of "${PIDS[1]}"); s2=$(status_of "${PIDS[2]}")
    [ "$s2" = 137 ] || fail "$prov: rank 2 should have died by SIGKILL (137), got $s2"
    [ "$s0" = 3 ] && [ "$s1" = 3 ] || fail "$prov: survivors should exit 3 with a named error, got $s0 $s1"
    grep -q "rank 2" "$WORK/k0.log" && grep -q "rank 2" "$WORK/k1.log" || fail "$prov: errors do not name rank 2"
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && fail "$prov: process $p left behind"; done
    rm -f /dev/shm/pipetrain-"${PIDS[2]}"-* # the SIGKILLed rank could not remove its shm region
    echo "$prov: survivors failed after $(( $(date +%s) - start )) s:"; cat "$WORK/k0.log" "$WORK/k1.log"
  done
  ;;
second)
  # rank 2 dies, rank 1 ends after it: rank 0's wait on rank 1 ends on that, not at its 60 s deadline
  export WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 PT_COMM_TIMEOUT=60 IPATH_NO_BACKTRACE=1
  for prov in shm tcp; do
    PIDS=()
    export MASTER_PORT=$(free_port) PT_FABRIC_PROVIDER=$prov
    for r in 0 1 2; do RANK=$r "$T" second >"$WORK/s$r.log" 2>&1 & PIDS+=($!); done
    wait_pids 50
    s0=$(status_of "${PIDS[0]}"); s1=$(status_of "${PIDS[1]}"); s2=$(status_of "${PIDS[2]}")
    [ "$s2" = 137 ] && [ "$s1" = 4 ] || fail "$prov: rank 2 should die by SIGKILL (137), rank 1 exit 4; got $s2 $s1"
    [ "$s0" = 3 ] || { cat "$WORK/s0.log"; fail "$prov: rank 0 should exit 3 naming rank 1, got $s0"; }
    rm -f /dev/shm/pipetrain-"${PIDS[2]}"-* /dev/shm/pipetrain-"${PIDS[1]}"-*
    echo "$prov: $(tail -1 "$WORK/s0.log")"
  done
  ;;
dead)
  export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 PT_COMM_TIMEOUT=3 IPATH_NO_BACKTRACE=1 PT_FABRIC_PROVIDER=shm
  # eager messages only, then with the RMA read path for 4 KiB and up; two death points each
  for rma in "" 4096; do
    for after in 6 11; do
      PIDS=()
      export MASTER_PORT=$(free_port) PT_COMM_RMA_MIN=$rma
      for r in 0 1; do RANK=$r "$T" dead $after >"$WORK/d$r.log" 2>&1 & PIDS+=($!); done
      wait_pids 20
      s0=$(status_of "${PIDS[0]}"); s1=$(status_of "${PIDS[1]}")
      what="rma_min '$rma', death after $after"
      [ "$s1" = 137 ] || fail "$what: rank 1 should have died by SIGKILL (137), got $s1"
      grep -q "dying while holding a lock" "$WORK/d1.log" || fail "$what: rank 1 did not die holding a lock"
      [ "$s0" = 3 ] || fail "$what: the survivor should exit 3 with a named error, got $s0"
      grep -q "rank 1 (pid ${PIDS[1]}, same host) exited while rank 0" "$WORK/d0.log" ||
        fail "$what: the error does not say that rank 1 (pid ${PIDS[1]}) exited"
      ls /dev/shm/pipetrain-"${PIDS[1]}"-* >/dev/null 2>&1 && fail "$what: rank 1's shm region was left in /dev/shm"
      for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && fail "$what: process $p left behind"; done
      echo "$what: $(grep 'rank 0: error' "$WORK/d0.log")"
    done
  done
  ;;
chain)
  export WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 PT_COMM_TIMEOUT=5 IPATH_NO_BACKTRACE=1 PT_FABRIC_PROVIDER=shm
  for round in 1 2; do
    PIDS=()
    export MASTER_PORT=$(free_port)
    for r in 0 1 2; do RANK=$r "$T" chain >"$WORK/c$r.log" 2>&1 & PIDS+=($!); done
    # rank 2 says "looping" after two checked transfers; then kill it (after a round-dependent pause)
    until=$(( $(date +%s) + 30 ))
    until grep -q looping "$WORK/c2.log" 2>/dev/null; do
      [ "$(date +%s)" -ge "$until" ] && fail "round $round: rank 2 never started looping"
      kill -0 "${PIDS[2]}" 2>/dev/null || fail "round $round: rank 2 ended before it was killed"
      sleep 0.05
    done
    sleep 0.$(( round * 3 ))
    start=$(date +%s)
    kill -KILL "${PIDS[2]}"
    wait_pids 20
    s0=$(status_of "${PIDS[0]}"); s1=$(status_of "${PIDS[1]}"); s2=$(status_of "${PIDS[2]}")
    [ "$s2" = 137 ] || fail "round $round: rank 2 should have died by SIGKILL (137), got $s2"
    [ "$s0" = 3 ] && [ "$s1" = 3 ] || fail "round $round: survivors should exit 3 with a named error, got $s0 $s1"
    for r in 0 1; do
      grep -q "rank 2 (pid ${PIDS[2]}, same host) exited while rank $r" "$WORK/c$r.log" ||
        fail "round $round: rank $r's error does not say that rank 2 (pid ${PIDS[2]}) exited"
    done
    for p in "${PIDS[@]}"; do
      kill -0 "$p" 2>/dev/null && fail "round $round: process $p left behind"
      ls /dev/shm/ 2>/dev/null | grep -q -- "-$p-" && fail "round $round: /dev/shm holds objects of pid $p: $(ls /dev/shm | grep -- "-$p-")"
    done
    echo "round $round: survivors failed $(( $(date +%s) - start )) s after the kill:"; grep -h "error after" "$WORK/c0.log" "$WORK/c1.log"
  done
  ;;
launcher)
  # prefixes and a clean run
  out=$("$L" --nproc 3 -- sh -c 'echo "hello from $RANK of $WORLD_SIZE local $LOCAL_RANK/$LOCAL_WORLD_SIZE $IPATH_NO_BACKTRACE"; echo err >&2' 2>"$WORK/err.log")
  [ $? = 0 ] || fail "clean launch failed: $out"
  for r in 0 1 2; do
    echo "$out" | grep -qx "\[rank $r\] hello from $r of 3 local $r/3 1" || fail "no prefixed line for rank $r in: $out"
    grep -qx "\[rank $r\] err" "$WORK/err.log" || fail "no prefixed stderr line for rank $r"
  done
  # rank 1 exits 5: the launcher exits 5 naming rank 1, and the sleeping ranks are stopped
  start=$(date +%s)
  "$L" --nproc 3 -- sh -c 'echo $$ > '"$WORK"'/pid.$RANK; if [ $RANK = 1 ]; then sleep 0.5; exit 5; fi; exec sleep 60' \
      >"$WORK/l.log" 2>&1
  st=$?
  [ "$st" = 5 ] || fail "launcher exit status $st, expected 5"
  grep -q "rank 1 exited with status 5" "$WORK/l.log" || fail "launcher message does not name rank 1"
  [ $(( $(date +%s) - start )) -lt 30 ] || fail "teardown took too long"
  for r in 0 2; do kill -0 "$(cat "$WORK/pid.$r")" 2>/dev/null && fail "rank $r left running"; done
  # a rank killed by a signal; one that ignores SIGTERM is killed after the grace period
  # (rank 0 first leaves a /dev/shm region named the way the shm provider's are: the launcher removes it)
  "$L" --nproc 2 -- sh -c 'if [ $RANK = 0 ]; then echo $$ > '"$WORK"'/pid0; : > /dev/shm/pipetrain-$$-launchtest; sleep 0.3; kill -9 $$; fi; trap "" TERM; echo $$ > '"$WORK"'/pidt; while true; do sleep 1; done' \
      >"$WORK/s.log" 2>&1
  st=$?
  [ -e "/dev/shm/pipetrain-$(cat "$WORK/pid0")-launchtest" ] && fail "the killed rank's /dev/shm region was left behind"
  [ "$st" = 137 ] || fail "launcher exit status $st after SIGKILL, expected 137"
  grep -q "rank 0 was killed by signal 9" "$WORK/s.log" || fail "launcher message does not name the signal"
  kill -0 "$(cat "$WORK/pidt")" 2>/dev/null && fail "TERM-ignoring rank left running"
  # SIGTERM to the launcher reaches the ranks
  "$L" --nproc 2 -- sleep 60 >"$WORK/t.log" 2>&1 & LP=$!; PIDS+=($LP)
  sleep 0.5; kill -TERM $LP
  wait_pids 20
  st=$(status_of $LP)
  [ "$st" != 0 ] || fail "launcher exited 0 after SIGTERM"
  grep -q "signal 15" "$WORK/t.log" || fail "no signal 15 reported: $(cat "$WORK/t.log")"
  # bad usage
  "$L" --nproc 0 -- true >/dev/null 2>&1 && fail "--nproc 0 accepted"
  "$L" --nproc 2 --nodes 2 -- true >/dev/null 2>&1 && fail "--nodes 2 without --master accepted"
  "$L" --nproc 1 -- /nonexistent/cmd >"$WORK/n.log" 2>&1; st=$?
  [ "$st" = 127 ] || fail "missing command: status $st, expected 127"
  grep -q "cannot run /nonexistent/cmd" "$WORK/n.log" || fail "missing command not named"
  echo "launcher: ok"
  ;;
netns)
  if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIPPED: needs root and iproute2 for network namespaces"; exit 77; fi
  ID=$$
  NS_A="ptc${ID}a"; NS_B="ptc${ID}b"
  if ! ip netns add "$NS_A" 2>"$WORK/ns.err"; then NS_A=""; echo "SKIPPED: cannot create namespaces: $(cat "$WORK/ns.err")"; exit 77; fi
  ip netns add "$NS_B" || fail "second namespace"
  if ! ip netns exec "$NS_A" true 2>"$WORK/ns.err"; then echo "SKIPPED: cannot enter a namespace: $(cat "$WORK/ns.err")"; exit 77; fi
  ip link add "pv${ID}a" type veth peer name "pv${ID}b" || { echo "SKIPPED: no veth support"; exit 77; }
  ip link set "pv${ID}a" netns "$NS_A" && ip link set "pv${ID}b" netns "$NS_B" || fail "moving veth ends"
  ip -n "$NS_A" addr add 198.18.0.1/24 dev "pv${ID}a" && ip -n "$NS_B" addr add 198.18.0.2/24 dev "pv${ID}b" || fail "addresses"
  for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_A" link set "pv${ID}a" up && ip -n "$NS_B" link set "pv${ID}b" up || fail "link up"
  export PT_FABRIC_PROVIDER=tcp PT_COMM_TIMEOUT=30
  for test in "p2p 16777216" coll; do
    PIDS=()
    ip netns exec "$NS_A" "$L" --nproc 2 --nodes 2 --node-rank 0 --master 198.18.0.1:29517 -- "$T" $test >"$WORK/a.log" 2>&1 & PIDS+=($!)
    ip netns exec "$NS_B" "$L" --nproc 2 --nodes 2 --node-rank 1 --master 198.18.0.1:29517 -- "$T" $test >"$WORK/b.log" 2>&1 & PIDS+=($!)
    wait_pids 60
    sa=$(status_of "${PIDS[0]}"); sb=$(status_of "${PIDS[1]}")
    [ "$sa" = 0 ] && [ "$sb" = 0 ] || fail "netns $test: statuses $sa $sb"
    for r in 0 1; do grep -q "\[rank $r\] .*ok (4 ranks, provider tcp" "$WORK/a.log" || fail "netns $test: rank $r"; done
    for r in 2 3; do grep -q "\[rank $r\] .*ok (4 ranks, provider tcp" "$WORK/b.log" || fail "netns $test: rank $r"; done
    cat "$WORK/a.log" "$WORK/b.log"
  done
  ;;
*)
  echo "unknown mode $MODE"; exit 2 ;;
esac
exit 0

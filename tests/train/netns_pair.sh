# Sourced by the tests of several "nodes" (restart_nodes.sh, restart_shrink.sh).
#   netns_pair TAG SUBNET      e.g. netns_pair ptr 198.18.1
# makes two network namespaces, $NS_A (SUBNET.1) and $NS_B (SUBNET.2), joined by a veth pair, with
# loopback up in each, and removes them, and every process in them, when the test exits. Exits 77
# (skipped) without root, iproute2, namespaces or veth; a later error calls the test's `fail`.
#   wait_step RUN_DIR PATTERN PID
# waits (60 s at most) for a metrics.jsonl line matching PATTERN while the launcher PID runs.
netns_cleanup() {
    for ns in "$NS_A" "$NS_B"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
}
netns_pair() {
    local tag=$1 net=$2
    if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIPPED: needs root and iproute2"; exit 77; fi
    NS_A="${tag}$$a" NS_B="${tag}$$b"
    trap netns_cleanup EXIT
    ip netns add "$NS_A" 2>/dev/null || { echo "SKIPPED: cannot create network namespaces"; exit 77; }
    ip netns add "$NS_B" || fail "second namespace"
    ip link add "$NS_A" type veth peer name "$NS_B" || { echo "SKIPPED: no veth"; exit 77; }
    ip link set "$NS_A" netns "$NS_A" && ip link set "$NS_B" netns "$NS_B" || fail "veth"
    ip -n "$NS_A" addr add "$net.1/24" dev "$NS_A" && ip -n "$NS_B" addr add "$net.2/24" dev "$NS_B" || fail "addr"
    for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_A" link set "$NS_A" up && ip -n "$NS_B" link set "$NS_B" up || fail "link up"
}
wait_step() { # wait_step RUN_DIR PATTERN PID
    for t in $(seq 1 3000); do
        grep -q "$2" "$1/metrics.jsonl" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || fail "the run ended before '$2'"
        sleep 0.02
    done
    fail "no '$2' within 60 s"
}

# tests/train/runs.sh — sourced by the train.* scripts that compare whole runs bit for bit
# (bf16.sh, head_chunk.sh). Needs: PT (the pipetrain binary), out (a scratch dir), here (this
# directory), common (the train options every run shares).
#   fail MSG...        prints MSG and the tail of every log, exits 1
#   run NAME ARGS...   trains into $out/NAME (checkpoint at the end), exports its weights to $out/NAME.st
#   steps NAME         every step's loss and gradient norm of run NAME (repr: every bit)
#   same REF NAME      NAME has REF's bits: every step's loss, the norm to 1e-12 (a double sum of
#                      the stages' parts, in their order), and the exported weights (a file, or a Llama export directory) byte for byte

fail() { echo "FAIL: $*"; for f in "$out"/*.log; do echo "== $f"; tail -n 5 "$f"; done; exit 1; }

run() {
    local name=$1
    shift
    "$PT" train $common --run-dir "$out/$name" "$@" >"$out/$name.log" 2>&1 || fail "$name: train $* failed"
    "$PT" ckpt export "$out/$name/ckpt" --format safetensors "$out/$name.st" >>"$out/$name.log" 2>&1 ||
        fail "$name: ckpt export failed"
}

steps() { python3 "$here/metrics_steps.py" "$out/$1/metrics.jsonl"; }

same() {
    steps "$1" >"$out/$1.steps"
    steps "$2" >"$out/$2.steps"
    test "$(wc -l <"$out/$1.steps")" -eq 5 || fail "$1: $(wc -l <"$out/$1.steps") steps in metrics.jsonl, not 5"
    python3 - "$out/$1.steps" "$out/$2.steps" <<'PY' || fail "$2's losses or norms differ from $1's"
import sys
a = [l.split() for l in open(sys.argv[1])]
b = [l.split() for l in open(sys.argv[2])]
for x, y in zip(a, b):
    if x[1] != y[1] or abs(float(x[2]) - float(y[2])) > 1e-12 * float(x[2]):
        sys.exit("step %s: loss %s norm %s vs loss %s norm %s" % (x[0], x[1], x[2], y[1], y[2]))
PY
    diff -rq "$out/$1.st" "$out/$2.st" >/dev/null || fail "$2's weights differ from $1's"
    echo "$2: the bits of $1"
}

#!/bin/sh
# ckpt.verify_import: damage that a resume would pass over is still damage, and an import never
# points a root of training checkpoints back to step 0 unnoticed (issue 21's hostile probe).
#  - verify exits non-zero when the newest checkpoint is truncated or its manifest is broken (an
#    older one still verifies), and its last line names what is still usable
#  - import into a non-empty root is refused (exit 2) unless --force; after a forced import, a
#    --resume there is refused while the newer step is usable (it would save over it)
#  - a second training job on a root another job holds is refused (exit 2) naming the holder's pid;
#    the lock dies with its holder (SIGKILL), so the next job trains
#  - ranks agree on one restore step: one byte flipped in rank 1's shard of the newest checkpoint of
#    a 2-stage run makes every rank resume from the step before (rank 1 names the damaged tensor),
#    instead of each rank taking its own and both waiting out the comm timeout
#  - "checkpoint after step N" is said only once that checkpoint is committed (saves finish in the
#    background: step 2's is said at the next save, after step 4), and never for a save that failed
#    (a full disk: a 600 KiB tmpfs, when one can be mounted)
set -eu
PT="$1"
dir=$(mktemp -d /tmp/pt_ckpt_vi_XXXXXX)
bg=""
trap '[ -n "$bg" ] && kill -9 $bg 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "ckpt.verify_import: $*" >&2; exit 1; }
opts="--stages 1 --eval-batches 0 --micro-batch-size 2 --seq-len 32 --threads 1"

"$PT" train $opts --steps 4 --ckpt-every 2 --run-dir "$dir/run" >/dev/null || fail "train failed"
ck="$dir/run/ckpt"
test "$(cat "$ck/latest")" = step_000004 || fail "latest is not step_000004"
"$PT" ckpt verify "$ck" >/dev/null || fail "verify rejected a good checkpoint"
cp -r "$ck" "$dir/good"

# the newest shard truncated: resolve passes over it, verify must not
shard="$ck/step_000004/shard-0.ptz"
head -c $(( $(wc -c < "$shard") / 2 )) "$shard" > "$dir/half" && mv "$dir/half" "$shard"
rc=0; "$PT" ckpt verify "$ck" >"$dir/out" 2>"$dir/err" || rc=$?
test $rc -ne 0 || fail "verify exited 0 with a truncated newest checkpoint: $(cat "$dir/out")"
grep -q "^DAMAGED .*step_000004.*truncated" "$dir/out" || fail "verify did not name the truncated shard: $(cat "$dir/out")"
grep -q "still usable: .*step_000002" "$dir/err" || fail "verify did not name what is usable: $(cat "$dir/err")"
rc=0; "$PT" ckpt verify "$ck" --all >"$dir/out" 2>"$dir/err" || rc=$?
test $rc -ne 0 || fail "verify --all exited 0 with a truncated newest checkpoint"

# the newest manifest broken
rm -rf "$ck" && cp -r "$dir/good" "$ck"
echo '{"format": ' > "$ck/step_000004/manifest.json"
rc=0; "$PT" ckpt verify "$ck" >"$dir/out" 2>"$dir/err" || rc=$?
test $rc -ne 0 || fail "verify exited 0 with a broken newest manifest"
grep -q "still usable: .*step_000002" "$dir/err" || fail "verify did not name what is usable: $(cat "$dir/err")"

# import into a root of training checkpoints
rm -rf "$ck" && cp -r "$dir/good" "$ck"
"$PT" ckpt export "$ck" --format safetensors "$dir/w.safetensors" >/dev/null || fail "export failed"
rc=0; "$PT" ckpt import "$dir/w.safetensors" "$ck" >/dev/null 2>"$dir/err" || rc=$?
test $rc -eq 2 || fail "import into a non-empty root exited $rc, not 2"
grep -q "is not empty (it holds .*--force" "$dir/err" || fail "import's refusal says no fix: $(cat "$dir/err")"
test "$(cat "$ck/latest")" = step_000004 || fail "a refused import changed latest"
test ! -e "$ck/step_000000" || fail "a refused import wrote step_000000"
"$PT" ckpt import "$dir/w.safetensors" "$ck" --force >/dev/null 2>&1 || fail "import --force failed"
test "$(cat "$ck/latest")" = step_000000 || fail "import --force did not point latest at step 0"
rc=0; "$PT" train $opts --steps 6 --run-dir "$dir/run" --resume >"$dir/out" 2>"$dir/err" || rc=$?
test $rc -eq 2 || fail "resume over a newer usable step exited $rc, not 2: $(cat "$dir/err")"
grep -q "step_000004 is newer and usable" "$dir/err" || fail "resume's refusal names no newer step: $(cat "$dir/err")"
cmp -s "$ck/step_000004/shard-0.ptz" "$dir/good/step_000004/shard-0.ptz" || fail "the refused resume touched step_000004"

# two jobs, one root: the second is refused while the first holds the lock (waits on the lock
# file's contents, not on time; bounded)
"$PT" train $opts --steps 100000 --run-dir "$dir/r1" --ckpt-dir "$dir/lk" >/dev/null 2>&1 &
bg=$!
i=0; while ! grep -q "^pid $bg " "$dir/lk/.lock" 2>/dev/null; do
  i=$((i + 1)); test $i -lt 600 || fail "the first job never took the lock"; sleep 0.1
done
rc=0; "$PT" train $opts --steps 2 --run-dir "$dir/r2" --ckpt-dir "$dir/lk" >/dev/null 2>"$dir/err" || rc=$?
test $rc -eq 2 || fail "a second job on a held root exited $rc, not 2"
grep -q "is in use by another training job (pid $bg on " "$dir/err" || fail "the refusal names no holder: $(cat "$dir/err")"
kill -9 $bg; wait $bg 2>/dev/null || true; bg=""
"$PT" train $opts --steps 2 --run-dir "$dir/r3" --ckpt-dir "$dir/lk" >/dev/null 2>"$dir/err" ||
  fail "the lock outlived its killed holder: $(cat "$dir/err")"
"$PT" train --stages 2 --eval-batches 0 --seq-len 32 --threads 1 --steps 3 --ckpt-every 1 --comm-timeout 30 \
  --run-dir "$dir/ag" >/dev/null 2>&1 || fail "the 2-stage run failed"
sh1="$dir/ag/ckpt/step_000003/shard-1.ptz"
printf '\252' | dd of="$sh1" bs=1 seek=$(( $(wc -c < "$sh1") / 2 )) conv=notrunc 2>/dev/null
timeout 120 "$PT" train --stages 2 --eval-batches 0 --seq-len 32 --threads 1 --steps 5 --reset-schedule --ckpt-every 1 \
  --comm-timeout 30 --run-dir "$dir/ag" --resume >"$dir/out" 2>&1 || fail "the resume past a damaged shard failed: $(tail -5 "$dir/out")"
grep -q "rank 1: checkpoint: .*shard-1.ptz: tensor .*damaged.*resumed from step_000002" "$dir/out" ||
  fail "rank 1 did not name its damaged shard: $(cat "$dir/out")"
grep -q "every rank resumes from step 2" "$dir/out" || fail "the ranks did not agree on step 2: $(cat "$dir/out")"
grep -q "resuming after step 2" "$dir/out" || fail "the job did not resume after step 2"
"$PT" train $opts --steps 6 --ckpt-every 2 --log-every 1 --run-dir "$dir/said" >"$dir/out" 2>&1 || fail "the said run failed"
grep -E '^step +4/6|^checkpoint after step' "$dir/out" | head -2 | tr '\n' '|' | grep -q '^step.*4/6.*|checkpoint after step 2: ' ||
  fail "step 2's checkpoint was not said after step 4: $(cat "$dir/out")"
grep -q '^checkpoint after step 6: ' "$dir/out" || fail "the last checkpoint was not said"
if mkdir -p "$dir/full" && mount -t tmpfs -o size=600k tmpfs "$dir/full" 2>/dev/null; then
  "$PT" train $opts --steps 6 --ckpt-every 2 --run-dir "$dir/fullrun" --ckpt-dir "$dir/full/ck" >"$dir/out" 2>&1 && st=0 || st=$?
  umount "$dir/full"
  test $st -ne 0 || fail "a run whose checkpoints do not fit exited 0"
  grep -q 'checkpoint of step 2 failed: .*No space left on device' "$dir/out" || fail "the full disk was not said: $(cat "$dir/out")"
  ! grep -q 'checkpoint after step' "$dir/out" || fail "a checkpoint that failed was said: $(cat "$dir/out")"
fi
echo "ckpt.verify_import: ok"

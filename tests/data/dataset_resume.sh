#!/bin/sh
# Exact resume on a prepared data set: a run of 6 steps, and a run resumed from its step-3
# checkpoint, log bitwise-equal losses for steps 4..6 (the batch of a step is a pure function of
# (seed, split, step, sample), so the resumed run reads the tokens the uninterrupted one read).
# With "2" as the second argument the runs go through 2 pipeline stages. Resuming on data of
# another tokenizer is refused. The resumed run is given another --seed: the data order (and the
# rest of the run) follows the checkpoint's seed.
#   dataset_resume.sh PIPETRAIN [STAGES]
set -e
B=$1
P=${2:-1}
D=dataset_resume_p$P
rm -rf $D
mkdir -p $D
# a small corpus (about 60 KB of varied lines), made here
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "line %d: %s %d\n", i, (i % 3 ? "alpha beta" : "gamma"), i * 7919 % 1000 }' \
  > $D/corpus.txt
"$B" prepare --tokenizer byte --input $D/corpus.txt --output $D/data --shard-tokens 20000 --quiet > $D/prep.txt
test "$(ls $D/data/*_train_*.bin | wc -l)" -ge 2 || { cat $D/prep.txt; exit 1; }
opts="--data $D/data --stages $P --threads 1 --micro-batches 2 --micro-batch-size 2 --seq-len 32 --eval-batches 0
      --steps 6 --comm-timeout 120"
"$B" train $opts --ckpt-every 3 --run-dir $D/a > $D/a.txt 2>&1 || { cat $D/a.txt; exit 1; }
mkdir -p $D/b/ckpt
cp -r $D/a/ckpt/step_000003 $D/b/ckpt/
echo step_000003 > $D/b/ckpt/latest
"$B" train $opts --resume --seed 99 --run-dir $D/b > $D/b.txt 2>&1 || { cat $D/b.txt; exit 1; }
losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1" | awk '$1 >= 4'; }
losses $D/a/metrics.jsonl > $D/a_loss.txt
losses $D/b/metrics.jsonl > $D/b_loss.txt
test "$(wc -l < $D/a_loss.txt)" -eq 3 || { cat $D/a.txt $D/a_loss.txt; exit 1; }
cmp $D/a_loss.txt $D/b_loss.txt || { paste $D/a_loss.txt $D/b_loss.txt; cat $D/b.txt; exit 1; }
# data of another tokenizer is refused on --resume, naming both, before any weight is read
"$B" prepare --tokenizer gpt2 --input $D/corpus.txt --output $D/gpt2data --quiet > /dev/null
if "$B" train $(echo "$opts" | sed "s|--data $D/data|--data $D/gpt2data|") --resume --run-dir $D/b > $D/c.txt 2>&1; then
  cat $D/c.txt; exit 1
fi
grep -q 'was trained on data of tokenizer byte.*was made with gpt2' $D/c.txt || { cat $D/c.txt; exit 1; }
echo "resumed losses equal the uninterrupted run's ($P stage(s)):"
cat $D/b_loss.txt

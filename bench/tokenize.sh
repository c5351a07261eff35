#!/bin/sh
# Tokenizer speed: pipetrain against the npm reference encoders on the same corpus, in one run.
#   bench/tokenize.sh [MB] [GPT3_MB]        (defaults 100 and 10; needs node, npm and a built pipetrain)
#   PIPETRAIN=build/pipetrain OUT=bench/results/tokenize.jsonl bench/tokenize.sh 100
#   INPUT=FILE bench/tokenize.sh        (a file of NUL-separated documents instead of the generated corpus)
# Builds the corpus once (pipetrain bench tokenize --corpus-out; tokenize_corpus.mjs checks it is the
# corpus it generates too), runs `pipetrain bench tokenize` on 1 thread and on every core, then
# js-tiktoken (gpt2, cl100k_base, o200k_base) on the whole corpus and gpt-3-encoder (gpt2) on its
# first GPT3_MB MiB (pipetrain runs that prefix too, so the counts compare). Prints JSON lines, the
# pipetrain/reference ratios, and fails when token counts or id hashes disagree.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mb=${1:-100}
gpt3_mb=${2:-10}
pipetrain=${PIPETRAIN:-$here/../build/pipetrain}
out=${OUT:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipetrain-tokbench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -x "$pipetrain" ] || { echo "tokenize.sh: $pipetrain is not built; set PIPETRAIN=path/to/pipetrain" >&2; exit 2; }
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund gpt-3-encoder@1.1.4 js-tiktoken@1.0.21 >/dev/null)
jsonl=$tmp/all.jsonl
if [ -n "${INPUT:-}" ]; then
  # a given file (documents separated by NUL) instead of the generated corpus; gpt-3-encoder on all of it
  "$pipetrain" bench tokenize --json --input "$INPUT" | tee -a "$jsonl"
  node "$here/tokenize_ref.mjs" "$tmp/node_modules" --corpus "$INPUT" --mb-gpt3 1e9 | tee -a "$jsonl"
else
  "$pipetrain" bench tokenize --json --mb "$mb" --corpus-out "$tmp/corpus.txt" | tee -a "$jsonl"
  "$pipetrain" bench tokenize --json --mb "$gpt3_mb" --tokenizer gpt2 | grep -v '"tokenize_corpus"' | tee -a "$jsonl"
  node "$here/tokenize_ref.mjs" "$tmp/node_modules" --corpus "$tmp/corpus.txt" --verify-gen "$mb" --mb-gpt3 "$gpt3_mb" | tee -a "$jsonl"
fi
status=0
node "$here/tokenize_ref.mjs" --summarize "$jsonl" | tee -a "$jsonl" || status=1
[ -z "$out" ] || cp "$jsonl" "$out"
exit $status

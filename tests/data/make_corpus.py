#!/usr/bin/env python3
"""Writes the tokenizer golden corpus, tests/data/golden/corpus/ (checked in).

Each file exercises one part of byte-level BPE pre-tokenization; exact bytes (tabs, trailing spaces,
CR, invalid UTF-8) are spelled out here so that no editor changes them. After changing this file,
run it, then tests/data/make_golden.sh to remake the golden ids with the reference encoders.
*.txt files are valid UTF-8 (the references encode them); *.bin files hold invalid UTF-8 (the
golden test checks those by round trip and by the valid text around the invalid bytes, see
tests/data/test_golden.c); *.cases files hold many short valid strings separated by NUL, each
encoded alone. The 10 MB line is not here: the test and make_golden.mjs generate it
(bench/tokenize_corpus.h / .mjs).
"""
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "corpus")

FILES = {}

FILES["english.txt"] = (
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times;\n"
    "it was the age of wisdom, it was the age of foolishness...\n\n"
    "\"Are you sure?\" she asked. \u201cQuite sure,\u201d he replied \u2014 though, to be honest, he wasn't.\n"
    "Mr. O'Brien paid $1,250.75 on 3/14/2015 at 9:26 a.m. (that's 15% more than last year!).\n"
    "In 1969, Apollo 11 landed on the Moon; the crew\u2019s names were Armstrong, Aldrin & Collins.\n"
    "E-mail: someone@example.org -- see https://en.wikipedia.org/wiki/Byte_pair_encoding#Algorithm.\n"
    "Well-known, state-of-the-art, up-to-date; re-entry vs. reentry? Hmm... OK!!! Why?!\n"
    "ALL CAPS SENTENCE WITH SHOUTING AND NUMBERS 42 AND 1337.\n"
    "Supercalifragilisticexpialidocious is a long word; pneumonoultramicroscopicsilicovolcanoconiosis is longer.\n"
    "   Indented line with three spaces, then a tab:\tafter the tab.\n"
    "Last line without a final newline."
)

FILES["code_c.txt"] = (
    "/* A small C program. */\n"
    "#include <stdio.h>\n#include <stdlib.h>\n\n"
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))\n\n"
    "typedef struct node {\n    int value;\n    struct node *next;\n} node;\n\n"
    "static int sum(const node *n)\n{\n    int s = 0;\n    for (; n != NULL; n = n->next) {\n"
    "        s += n->value; // accumulate\n        if (s > 0x7fffffff - 1) {\n"
    "            fprintf(stderr, \"overflow at %p\\n\", (void *)n);\n            return -1;\n        }\n    }\n"
    "    return s;\n}\n\n"
    "int main(int argc, char **argv)\n{\n\tnode b = { 2, NULL }, a = { 1, &b };\n"
    "\tprintf(\"%d %s\\n\", sum(&a), argc > 1 ? argv[1] : \"(none)\");\n"
    "\tchar buf[256] = {0};\n\tunsigned long long x = 18446744073709551615ULL;\n"
    "\tx >>= 3; x ^= x << 7; x &= ~0u;\n\treturn a.value == 1 && b.value >= 2 ? EXIT_SUCCESS : EXIT_FAILURE;\n}\n"
)

FILES["code_python.txt"] = (
    "import os, sys\nfrom typing import Dict, List\n\n\n"
    "class Tokenizer:\n"
    "\t\"\"\"Tab-indented class.\"\"\"\n\n"
    "\tdef __init__(self, vocab: Dict[str, int]) -> None:\n"
    "\t\tself.vocab = vocab  \n"
    "\t\tself._cache = {}\t# trailing tab comment\n\n"
    "\tdef encode(self, text):\n"
    "\t\tif not text:\n\t\t\treturn []\n"
    "\t\treturn [self.vocab.get(w, -1) for w in text.split()]\n\n\n"
    "def main(argv=None):\n"
    "    args = argv or sys.argv[1:]\n"
    "    for i, a in enumerate(args):\n"
    "        print(f\"{i:>4}: {a!r}\")   \n"
    "    x = [1, 2, 3]\n"
    "    y = {'a': 1, \"b\": 2, 'c\\'s': 3}\n"
    "    z = lambda q: q ** 2 if q >= 0 else -q\n"
    "    assert z(-3) == 3, 'wrong'\n"
    "    return 0\n\n\n"
    "if __name__ == \"__main__\":\n"
    "    sys.exit(main())\n"
)

FILES["whitespace.txt"] = (
    "word" + " " * 40 + "word\n"
    + "\t\t\tthree tabs\n"
    + "  \t  \t mixed spaces and tabs\t \n"
    + "trailing spaces   \n"
    + "trailing tab\t\n"
    + "\n\n\n\n"
    + "CRLF line\r\nanother\r\n\r\n"
    + "old Mac\rline\r\r"
    + "   \n  \n \n"
    + " " * 200 + "\n"
    + "\t" * 50 + "\n"
    + "form\x0cfeed and vertical\x0btab\n"
    + "no\u00a0break\u00a0space, ideographic\u3000space, em\u2003space\n"
    + " leading space\n"
    + "  two leading spaces\n"
    + "\n \n  \n   x\n"
    + "end with spaces and newlines   \n\n   "
)

FILES["numbers.txt"] = (
    "0 1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890\n"
    "3.14159265358979323846264338327950288419716939937510\n"
    + "".join(str((i * 7919) % 10) for i in range(300)) + "\n"
    "1,000,000 and 1.000.000 and 1 000 000; -42, +17, 6.02e23, 1e-9, 0x1F, 0b1010, 0o777\n"
    "Phone: +1 (555) 123-4567. Date: 2024-05-20T13:37:00Z. Version 1.2.3-rc.4\n"
    "Superscripts x\u00b2 y\u00b3 \u2074; fractions \u00bd \u00be \u2153; Roman \u2160 \u2161 \u216b; "
    "circled \u2460 \u2461; Arabic-Indic \u0660\u0661\u0662\u0663\u0664; Devanagari \u0967\u0968\u0969; "
    "fullwidth \uff11\uff12\uff13\uff14\n"
    "a1b2c3 abc123def 123abc 42nd 1st 2nd 3rd 4th 1990s '90s\n"
    "99999999999999999999999999999999999999999999999999999999999999999999999999999999\n"
)

FILES["contractions.txt"] = (
    "I'm I'M i'm don't DON'T Don't They'LL they'll THEY'LL they'Ll we've WE'VE We'Ve\n"
    "she'd SHE'D it's IT'S It'S you're YOU'RE You'Re isn't ISN'T can't won't shouldn't've\n"
    "'s 's 'S 't 'T 're 'RE 've 'VE 'm 'M 'll 'LL 'd 'D\n"
    "O'Neill's rock'n'roll ma'am y'all Y'ALL 'tis 'Twas ''' '' ' x'y\n"
    "curly: don\u2019t I\u2019M they\u2019ll \u2018quoted\u2019\n"
    "  's after spaces, \t'll after tab, \n'd at line start\n"
    "John's, James', the kids' toys; 'single quotes' and \"double\".\n"
)

FILES["cjk.txt"] = (
    "\u4eca\u65e5\u306f\u3001\u4e16\u754c\uff01\u79c1\u306e\u540d\u524d\u306f\u30c8\u30fc\u30af\u30ca\u30a4\u30b6\u30fc\u3067\u3059\u3002\n"
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\uff0c\u5929\u5b89\u95e8\u4e0a\u592a\u9633\u5347\u3002\u673a\u5668\u5b66\u4e60\uff08ML\uff09\u662f\u4eba\u5de5\u667a\u80fd\u7684\u4e00\u4e2a\u5206\u652f\u3002\n"
    "\u7e41\u9ad4\u4e2d\u6587\uff1a\u81fa\u7063\u7684\u6a5f\u5668\u5b78\u7fd2\u3002\n"
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4. \uc548\ub155\ud558\uc138\uc694, \uc138\uacc4!\n"
    "\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3068\u6f22\u5b57\u3002\uff8a\uff9d\uff76\uff78\u30ab\u30ca\u3002\n"
    "\u300c\u5f15\u7528\u300d\u3010\u62ec\u5f27\u3011\u300e\u4e8c\u91cd\u300f\u3000\u5168\u89d2\u30b9\u30da\u30fc\u30b9\u3002\n"
    "mixed \u4e2d\u6587 and English\u3001\u65e5\u672c\u8a9eand\ud55c\uad6d\uc5b4 123\u4e2a\n"
    "\U0002000B\U00020629 (CJK Extension B)\n"
)

FILES["emoji.txt"] = (
    "Smile \U0001F600 thumbs \U0001F44D\U0001F3FD and family \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466!\n"
    "Flags: \U0001F1EF\U0001F1F5 \U0001F1FA\U0001F1F8 \U0001F3F4\u200D\u2620\uFE0F \U0001F3F3\uFE0F\u200D\U0001F308\n"
    "Skin tones: \U0001F44B\U0001F3FB\U0001F44B\U0001F3FC\U0001F44B\U0001F3FD\U0001F44B\U0001F3FE\U0001F44B\U0001F3FF\n"
    "ZWJ: \U0001F926\U0001F3FB\u200D\u2642\uFE0F \U0001F469\U0001F3FF\u200D\U0001F4BB \U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1\n"
    "Keycaps: 1\uFE0F\u20E3 #\uFE0F\u20E3 *\uFE0F\u20E3; hearts \u2764\uFE0F \u2764 \U0001F494\n"
    "\U0001F389\U0001F389\U0001F389\U0001F525\U0001F525\U0001F680 launch!!! \U0001F680\U0001F680\n"
    "text\U0001F600text \U0001F600 \U0001F600  \U0001F600\n"
    "\u2600\uFE0F \u2601 \u2614 \u263A \u00A9 \u00AE \u2122\n"
)

FILES["combining.txt"] = (
    "precomposed: caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m\n"
    "decomposed: cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m\n"
    "stacked: a\u0300\u0301\u0302\u0303\u0304 Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333\n"
    "lone marks: \u0301 \u0301\u0301 x \u0308\n"
    "Devanagari: \u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, \u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e \u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f\n"
    "Arabic: \u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627 \u0628\u0650\u0627\u0644\u0652\u0639\u064e\u0627\u0644\u064e\u0645\u0650 \u0627\u0644\u0644\u0651\u064e\u0647 \u0661\u0662\u0663\n"
    "Hebrew: \u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd \u05e2\u05d5\u05b9\u05dc\u05b8\u05dd\n"
    "Thai: \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\n"
    "Vietnamese: Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u; Tie\u0302\u0301ng Vie\u0323\u0302t\n"
    "Greek: \u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5; Cyrillic: \u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0439 \u0438\u0306\n"
    "Hangul jamo: \u1112\u1161\u11ab\u1100\u1173\u11af\n"
)

FILES["empty.txt"] = ""

FILES["endoftext.txt"] = (
    "First document.<|endoftext|>Second document.\n"
    "<|endoftext|>\n"
    "<|endoftext|><|endoftext|> twice, and inside a word: abc<|endoftext|>def\n"
    "Partial: <|endoftext <|endoftext| endoftext|> <| |>\n"
    "Other specials: <|fim_prefix|><|fim_middle|><|fim_suffix|> <|endofprompt|> <|begin_of_text|> <|im_start|>\n"
    " <|endoftext|>"
)

FILES["mixed.txt"] = (
    "{\"name\": \"pipetrain\", \"version\": \"0.1.0\", \"tags\": [\"bpe\", \"gpt-2\"], \"ok\": true, \"n\": null}\n"
    "<html><body><p class=\"x\">Hello &amp; welcome &mdash; <b>bold</b></p></body></html>\n"
    "# Markdown title\n\n* item one\n* item **two**\n\n```bash\n$ ls -la | grep foo > /dev/null 2>&1\n```\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n"
    "C:\\Users\\name\\file.txt  ~/path/to/file.tar.gz  ../../x\n"
    "=====  -----  *****  _____  ~~~~~  ......  !!!!!  ?????\n"
    "a.b.c a,b,c a;b;c a:b:c a/b/c a\\b\\c a|b|c a-b-c a_b_c a+b=c\n"
    "\u00bfQu\u00e9? \u00a1S\u00ed! \u00ab\u00a0Fran\u00e7ais\u00a0\u00bb Stra\u00dfe \u0130stanbul \u0131 \u01c5 \u1e9e\n"
)

# Invalid UTF-8: lone continuation bytes, bytes never valid (C0, C1, F5..FF), an overlong encoding,
# an encoded surrogate, truncated sequences (at a word's end, before a space, at the end of the file),
# between letters, digits, spaces and punctuation.
FILES["invalid_utf8.bin"] = (
    b"Hello\xffworld and \x80\x81 continuation bytes.\n"
    b"overlong \xc0\xaf slash, surrogate \xed\xa0\x80 here, C1 \xc1\xbf too\n"
    b"truncated \xe2\x82 euro, \xf0\x9f\x98 emoji, \xe4\xb8 cjk\n"
    b"digits 123\xfe456 and spaces \xf5   \xf8\n"
    b"caf\xc3 \xc3\xa9t\xc3\xa9\xc3 \xa9\n"
    b"\xff\xfe\xfd at line start; punctuation !\x80? and \t\xa0\ttabs\n"
    b"\xf4\x90\x80\x80 above U+10FFFF, valid \xe2\x82\xac euro, end truncated \xe2\x82"
)
FILES["invalid_only.bin"] = b"\x80\xff\xc0\xfe\xfe\xed\xbf\xbf"


def random_cases(seed, n):
    """n short random strings (NUL-separated, each encoded alone by the references and the test):
    code points drawn from blocks where pre-tokenization rules meet (letters of many scripts and
    cases, marks, numbers, Unicode spaces, line breaks, apostrophes, punctuation, symbols, emoji),
    only characters assigned in Unicode 14 (Debian 12's PCRE2 and this Python), minus the few on
    which the references' own regex engines disagree (README.md)."""
    import random
    import unicodedata
    rng = random.Random(seed)
    blocks = [
        (0x20, 0x7E, 30), (0x09, 0x0D, 6), (0xA0, 0x24F, 6), (0x250, 0x2FF, 2), (0x300, 0x36F, 4),
        (0x370, 0x3FF, 2), (0x400, 0x4FF, 2), (0x590, 0x5FF, 1), (0x600, 0x6FF, 2), (0x900, 0x97F, 2),
        (0xE00, 0xE7F, 1), (0x1100, 0x11FF, 1), (0x1E00, 0x1EFF, 2), (0x2000, 0x206F, 4), (0x2070, 0x209F, 1),
        (0x20A0, 0x20CF, 1), (0x2100, 0x218F, 2), (0x2460, 0x24FF, 1), (0x2600, 0x26FF, 1), (0x3000, 0x303F, 2),
        (0x3040, 0x30FF, 2), (0x4E00, 0x4FFF, 2), (0xAC00, 0xAD00, 1), (0xFF00, 0xFFEF, 2), (0x1F300, 0x1FAFF, 3),
        (0x1D400, 0x1D7FF, 1), (0x10000, 0x1007F, 1), (0x20000, 0x2A6DF, 1),
    ]
    atoms = ["'s", "'S", "'t", "'re", "'RE", "'Ve", "'m", "'ll", "'LL", "'lL", "'d", "'D", "\r\n", "\n\n", "  ",
             "\u200d", "\ufe0f", "/", "//", " /", "0", "123", "4567", "'", "\u2019"]
    excluded = {0x85, 0xFEFF, 0x180E, 0x1C, 0x1D, 0x1E, 0x1F, 0x17F}
    total = sum(w for _, _, w in blocks)

    def char():
        r = rng.uniform(0, total)
        for lo, hi, w in blocks:
            if r < w:
                break
            r -= w
        while True:
            c = rng.randint(lo, hi)
            ch = chr(c)
            if c not in excluded and unicodedata.category(ch) not in ("Cn", "Cs", "Co"):
                return ch

    cases = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 24)):
            parts.append(rng.choice(atoms) if rng.random() < 0.15 else char())
        cases.append("".join(parts))
    return "\0".join(cases)


FILES["random_unicode.cases"] = random_cases(14, 3000)


def edge_cases():
    """Characters on which regex engines disagree, in contexts that tell the readings apart: U+0085,
    U+FEFF and U+180E (whitespace for JavaScript's \\s or for Python's/Rust's, not both), U+001C..1F
    (Python's str.isspace only), U+200B (neither), the long s and the Kelvin sign (case folding of
    tiktoken's (?i:'s) in Rust; js-tiktoken spells the cases out). The goldens pin the npm (JavaScript)
    references' reading; OpenAI's Python/Rust tiktoken may tokenize some of these differently."""
    cases = []
    for c in ["\u0085", "\ufeff", "\u180e", "\u001c", "\u001f", "\u200b"]:
        for ctx in ["a{}b", "a {}b", "a{} b", "{}\n", "\n{}", "  {}  x", "x{}", "{}", "!{}!", "{}{}!", "x {}{}",
                    "?{}?{}", "{}1", "{}  ", "\t{}\t", ".{}.", "{}\r\n"]:
            cases.append(ctx.replace("{}", c))
    cases += ["it'\u017f", "IT'\u017f", "x'K", "don'T", "\u212a", "'\u212a"]
    return "\0".join(cases)


FILES["regex_edges.cases"] = edge_cases()


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, text in FILES.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        if not name.endswith(".bin"):
            data.decode("utf-8")  # must be valid
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(FILES), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()

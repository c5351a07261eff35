/* bench/tokenize_corpus.h — the deterministic text generator of the tokenizer goldens and benchmark.
 *
 * The same generator as bench/tokenize_corpus.mjs (the JavaScript side, which feeds the reference
 * encoders): xorshift64* with u(n) = (high 32 bits of the output) mod n, one u(1000) draw choosing
 * each piece of text from the tables below, more draws filling it. Both sides must produce the same
 * bytes: the goldens record the 10 MB line's length and FNV-1a (tests/data/golden/<tok>/longline.sum)
 * and bench/tokenize.sh compares the benchmark corpus's FNV-1a on both sides.
 *
 *     tc_buf b = { 0 };
 *     tc_rng r = tc_rng_seed(TC_LONGLINE_SEED);
 *     if (tc_gen_text(&r, TC_LONGLINE_BYTES, 0, &b) != 0) ...;   // b.p, b.n: the 10 MB line
 *     free(b.p);
 *
 * The tables are generated from the .mjs ones (keep them in the same order; change both together
 * and re-run tests/data/make_golden.sh). Header-only (static functions): the golden test and the
 * benchmark each include it. Not thread-safe per buffer/rng; separate ones are independent.
 */
#ifndef PIPETRAIN_BENCH_TOKENIZE_CORPUS_H
#define PIPETRAIN_BENCH_TOKENIZE_CORPUS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TC_LONGLINE_SEED 20240520u
#define TC_LONGLINE_BYTES ((size_t)10 << 20)
#define TC_CORPUS_SEED 0x70697065u
#define TC_FNV_OFFSET 0xcbf29ce484222325ull

typedef struct {
    uint64_t s;
} tc_rng;

static inline tc_rng tc_rng_seed(uint64_t seed)
{
    tc_rng r = { seed ? seed : 0x9e3779b97f4a7c15ull };
    return r;
}

static inline uint64_t tc_next(tc_rng *r)
{
    uint64_t s = r->s;
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    r->s = s;
    return s * 0x2545f4914f6cdd1dull;
}

static inline uint32_t tc_u(tc_rng *r, uint32_t n) { return (uint32_t)(tc_next(r) >> 32) % n; }

/* 64-bit FNV-1a of n bytes, continuing from h (start with TC_FNV_OFFSET). */
static inline uint64_t tc_fnv1a64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* FNV-1a of token ids as little-endian int32 bytes (the goldens' and the benchmark's id hash). */
static inline uint64_t tc_fnv_ids(uint64_t h, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        unsigned char b[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                               (unsigned char)(v >> 24) };
        h = tc_fnv1a64(h, b, 4);
    }
    return h;
}

/* A growing byte buffer; zero-initialise, free(p) when done. */
typedef struct {
    char *p;
    size_t n, cap;
} tc_buf;

static inline int tc_put(tc_buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static inline int tc_puts(tc_buf *b, const char *s) { return tc_put(b, s, strlen(s)); }

/* Tables (generated from bench/tokenize_corpus.mjs; *_upper and *_cap are JavaScript's toUpperCase of
 * the word and of its first letter). */
static const char *const tc_words[] = {
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be", "at",
    "by", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were",
    "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will",
    "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can",
    "only", "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any",
    "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did",
    "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
    "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very",
    "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life",
    "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great",
    "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three",
    "tokenizer", "pipeline", "gradient", "transformer", "throughput", "microbatch", "unbelievably",
    "internationalization", "antidisestablishmentarianism", "na\xc3\xafve", "caf\xc3\xa9",
    "fa\xc3\xa7\x61\x64\x65", "co\xc3\xb6perate", "r\xc3\xa9sum\xc3\xa9", "Z\xc3\xbcrich",
    "\xc3\x85ngstr\xc3\xb6m", "stra\xc3\x9f\x65", "d\xc3\xa9j\xc3\xa0", "\xc3\xbc\x62\x65r",
};
static const char *const tc_words_upper[] = {
    "THE", "OF", "AND", "TO", "IN", "IS", "WAS", "THAT", "FOR", "IT", "WITH", "AS", "HIS", "ON", "BE", "AT",
    "BY", "HAD", "NOT", "ARE", "BUT", "FROM", "OR", "HAVE", "AN", "THEY", "WHICH", "ONE", "YOU", "WERE",
    "HER", "ALL", "SHE", "THERE", "WOULD", "THEIR", "WE", "HIM", "BEEN", "HAS", "WHEN", "WHO", "WILL",
    "MORE", "NO", "IF", "OUT", "SO", "SAID", "WHAT", "UP", "ITS", "ABOUT", "INTO", "THAN", "THEM", "CAN",
    "ONLY", "OTHER", "NEW", "SOME", "COULD", "TIME", "THESE", "TWO", "MAY", "THEN", "DO", "FIRST", "ANY",
    "MY", "NOW", "SUCH", "LIKE", "OUR", "OVER", "MAN", "ME", "EVEN", "MOST", "MADE", "AFTER", "ALSO", "DID",
    "MANY", "BEFORE", "MUST", "THROUGH", "BACK", "YEARS", "WHERE", "MUCH", "YOUR", "WAY", "WELL", "DOWN",
    "SHOULD", "BECAUSE", "EACH", "JUST", "THOSE", "PEOPLE", "HOW", "TOO", "LITTLE", "STATE", "GOOD", "VERY",
    "MAKE", "WORLD", "STILL", "OWN", "SEE", "MEN", "WORK", "LONG", "GET", "HERE", "BETWEEN", "BOTH", "LIFE",
    "BEING", "UNDER", "NEVER", "DAY", "SAME", "ANOTHER", "KNOW", "WHILE", "LAST", "MIGHT", "US", "GREAT",
    "OLD", "YEAR", "OFF", "COME", "SINCE", "AGAINST", "GO", "CAME", "RIGHT", "USED", "TAKE", "THREE",
    "TOKENIZER", "PIPELINE", "GRADIENT", "TRANSFORMER", "THROUGHPUT", "MICROBATCH", "UNBELIEVABLY",
    "INTERNATIONALIZATION", "ANTIDISESTABLISHMENTARIANISM", "NA\xc3\x8fVE", "CAF\xc3\x89",
    "FA\xc3\x87\x41\x44\x45", "CO\xc3\x96PERATE", "R\xc3\x89SUM\xc3\x89", "Z\xc3\x9cRICH",
    "\xc3\x85NGSTR\xc3\x96M", "STRASSE", "D\xc3\x89J\xc3\x80", "\xc3\x9c\x42\x45R",
};
static const char *const tc_words_cap[] = {
    "The", "Of", "And", "To", "In", "Is", "Was", "That", "For", "It", "With", "As", "His", "On", "Be", "At",
    "By", "Had", "Not", "Are", "But", "From", "Or", "Have", "An", "They", "Which", "One", "You", "Were",
    "Her", "All", "She", "There", "Would", "Their", "We", "Him", "Been", "Has", "When", "Who", "Will",
    "More", "No", "If", "Out", "So", "Said", "What", "Up", "Its", "About", "Into", "Than", "Them", "Can",
    "Only", "Other", "New", "Some", "Could", "Time", "These", "Two", "May", "Then", "Do", "First", "Any",
    "My", "Now", "Such", "Like", "Our", "Over", "Man", "Me", "Even", "Most", "Made", "After", "Also", "Did",
    "Many", "Before", "Must", "Through", "Back", "Years", "Where", "Much", "Your", "Way", "Well", "Down",
    "Should", "Because", "Each", "Just", "Those", "People", "How", "Too", "Little", "State", "Good", "Very",
    "Make", "World", "Still", "Own", "See", "Men", "Work", "Long", "Get", "Here", "Between", "Both", "Life",
    "Being", "Under", "Never", "Day", "Same", "Another", "Know", "While", "Last", "Might", "Us", "Great",
    "Old", "Year", "Off", "Come", "Since", "Against", "Go", "Came", "Right", "Used", "Take", "Three",
    "Tokenizer", "Pipeline", "Gradient", "Transformer", "Throughput", "Microbatch", "Unbelievably",
    "Internationalization", "Antidisestablishmentarianism", "Na\xc3\xafve", "Caf\xc3\xa9",
    "Fa\xc3\xa7\x61\x64\x65", "Co\xc3\xb6perate", "R\xc3\xa9sum\xc3\xa9", "Z\xc3\xbcrich",
    "\xc3\x85ngstr\xc3\xb6m", "Stra\xc3\x9f\x65", "D\xc3\xa9j\xc3\xa0", "\xc3\x9c\x62\x65r",
};
static const char *const tc_syllables[] = {
    "ka", "ri", "to", "mon", "el", "an", "dre", "qu", "ist", "ex", "pl", "or", "ath", "ve", "zu", "ing",
    "ion", "ble", "gr", "sch", "ph", "oo", "ae", "y", "x", "ck", "th", "str", "ou", "ei",
};
static const char *const tc_punct[] = {
    ",", ".", ".", "!", "?", ";", ":", " -", " --", " (", ")", "\"", " \"", "'", "...", " [", "]", " /",
    " &", " %", " @", " #", " *", "\xe2\x80\x94", "\xe2\x80\x9c", "\xe2\x80\x9d", "\xe2\x80\x99",
    " \xc2\xab", "\xc2\xbb",
};
static const char *const tc_contractions[] = {
    " don't", " I'M", " They'LL", " we've", " it's", " she'd", " YOU'RE", " can't", " 'S", " 'tis",
    " isn'T", " O'Neill", " rock'n'roll", " we'Ve", " he'D", " I'd've",
};
static const char *const tc_code[] = {
    " for (int i = 0; i < n; i++) {", " x += y[i] * 2;", " def f(a, b=None):", " return {'k': v}",
    " #include <stdio.h>", " 0x7fff_ffff", " a->b->c", " if (p == NULL) return -1;", " s.split(',')",
    " std::vector<int> v{1, 2, 3};", " $HOME/.config", " https://example.com/a?b=c&d=e",
    " printf(\"%d\\n\", x);", " }}", " ]);", " /* comment */", " // TODO(x):", " ${var}", " lambda x: x**2",
    " @decorator",
};
static const char *const tc_code_nl[] = {
    "\n    ", "\n\t", "\n\t\t", "\n        ", "\n", "\n\n", "\r\n  ",
};
static const char *const tc_ws_line[] = {
    "  ", "   ", "\t", " \t ", "\t\t", "    ", "\xc2\xa0", "\xe3\x80\x80", " \xe2\x80\x83 ",
};
static const char *const tc_ws_nl[] = {
    "\n", "\n\n", "\n", "\r\n", "  \n", " \n\n", "\n\n\n", "\t\n", "\n \n",
};
static const char *const tc_cjk[] = {
   
    "\xe4\xbb\x8a\xe6\x97\xa5\xe3\x81\xaf\xe8\x89\xaf\xe3\x81\x84\xe5\xa4\xa9\xe6\xb0\x97\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82",
    "\xe6\x88\x91\xe7\x88\xb1\xe5\x8c\x97\xe4\xba\xac\xe5\xa4\xa9\xe5\xae\x89\xe9\x97\xa8\xef\xbc\x8c",
    "\xe6\x9c\xba\xe5\x99\xa8\xe5\xad\xa6\xe4\xb9\xa0",
    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xed\x85\x8d\xec\x8a\xa4\xed\x8a\xb8",
    "\xe3\x83\x88\xe3\x83\xbc\xe3\x82\xaf\xe3\x83\x8a\xe3\x82\xa4\xe3\x82\xb6\xe3\x83\xbc",
    "\xe3\x80\x8c\xe5\xbc\x95\xe7\x94\xa8\xe3\x80\x8d", " \xe6\xbc\xa2\xe5\xad\x97",
};
static const char *const tc_emoji[] = {
    " \xf0\x9f\x98\x80", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
    " \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6",
    "\xf0\x9f\x87\xaf\xf0\x9f\x87\xb5", " \xe2\x9d\xa4\xef\xb8\x8f",
    "\xf0\x9f\xa4\xa6\xf0\x9f\x8f\xbb\xe2\x80\x8d\xe2\x99\x82\xef\xb8\x8f",
    " \xf0\x9f\x8e\x89\xf0\x9f\x8e\x89", "\xf0\x9f\x91\xa9\xf0\x9f\x8f\xbf\xe2\x80\x8d\xf0\x9f\x92\xbb",
};
static const char *const tc_other[] = {
    " e\xcc\x81te\xcc\x81", " Cafe\xcc\x81",
    " \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87",
    " \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85",
    " \xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1",
    " \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", " \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
    " \xe0\xb8\xaa\xe0\xb8\xa7\xe0\xb8\xb1\xe0\xb8\xaa\xe0\xb8\x94\xe0\xb8\xb5",
    " a\xcc\x88o\xcc\x88u\xcc\x88", " \xe1\xba\x9b\xcc\xa3", " x\xcc\xb6y\xcc\xb6",
};
static const char *const tc_num_extra[] = {
    " \xc2\xbd", " \xc2\xb2", " \xe2\x85\xa7", " \xd9\xa3\xd9\xa4", " 3.14159", " 1,000,000", " -42",
    " 1e-9",
};

#define TC_N(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))
#define TC_PICK(r, a) ((a)[tc_u((r), TC_N(a))])

/* Appends one piece of text (the .mjs genPiece). newlines: 0 for one line (no \n, \r), 1 for documents.
 * Returns 0, or -1 when out of memory. */
static inline int tc_gen_piece(tc_rng *r, int newlines, tc_buf *b)
{
    uint32_t k = tc_u(r, 1000);
    if (k < 560) {
        uint32_t i = tc_u(r, TC_N(tc_words)), c = tc_u(r, 16);
        const char *w = c == 0 ? tc_words_upper[i] : c < 3 ? tc_words_cap[i] : tc_words[i];
        return tc_puts(b, " ") || tc_puts(b, w);
    }
    if (k < 650) {
        uint32_t n = 1 + tc_u(r, 4);
        if (tc_puts(b, " "))
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (tc_puts(b, TC_PICK(r, tc_syllables)))
                return -1;
        return 0;
    }
    if (k < 740)
        return tc_puts(b, TC_PICK(r, tc_punct));
    if (k < 770) {
        if (tc_u(r, 8) == 0)
            return tc_puts(b, TC_PICK(r, tc_num_extra));
        uint32_t n = tc_u(r, 16) == 0 ? 13 + tc_u(r, 40) : 1 + tc_u(r, 6);
        if (tc_puts(b, " "))
            return -1;
        for (uint32_t i = 0; i < n; i++) {
            char d = (char)('0' + tc_u(r, 10));
            if (tc_put(b, &d, 1))
                return -1;
        }
        return 0;
    }
    if (k < 790)
        return tc_puts(b, TC_PICK(r, tc_contractions));
    if (k < 830) {
        if (newlines && tc_u(r, 2) == 0)
            return tc_puts(b, TC_PICK(r, tc_ws_nl));
        if (tc_u(r, 64) == 0) {
            uint32_t n = 64 + tc_u(r, 400);
            for (uint32_t i = 0; i < n; i++)
                if (tc_put(b, " ", 1))
                    return -1;
            return 0;
        }
        return tc_puts(b, TC_PICK(r, tc_ws_line));
    }
    if (k < 880) {
        const char *c = TC_PICK(r, tc_code);
        if (newlines)
            return tc_puts(b, TC_PICK(r, tc_code_nl)) || tc_puts(b, c + 1);
        return tc_puts(b, c);
    }
    if (k < 920)
        return tc_puts(b, TC_PICK(r, tc_cjk));
    if (k < 950)
        return tc_puts(b, TC_PICK(r, tc_emoji));
    if (k < 985)
        return tc_puts(b, TC_PICK(r, tc_other));
    if (k < 990)
        return tc_puts(b, tc_u(r, 2) ? " <|endoftext|>" : "<|endoftext|>");
    return tc_puts(b, newlines ? ".\n\n" : ". ");
}

/* Appends text until at least target_bytes were added (stopping at a piece boundary). 0 or -1 (memory). */
static inline int tc_gen_text(tc_rng *r, size_t target_bytes, int newlines, tc_buf *b)
{
    size_t start = b->n;
    while (b->n - start < target_bytes)
        if (tc_gen_piece(r, newlines, b))
            return -1;
    return 0;
}

/* The benchmark corpus: documents of 1..32 KiB (target drawn per document) until mb MiB in all.
 * Appends them to b, each followed by a NUL (so b->p holds NUL-separated documents); *offsets
 * (malloc'd, n_docs + 1 entries, caller frees) gives document i as [offsets[i], offsets[i+1] - 1).
 * The corpus file of bench/tokenize.sh joins the documents with NUL (no NUL after the last). */
static inline int tc_gen_corpus(double mb, tc_buf *b, size_t **offsets, size_t *n_docs)
{
    tc_rng r = tc_rng_seed(TC_CORPUS_SEED);
    size_t target = (size_t)(mb * 1048576.0), cap = 0, n = 0, total = 0;
    size_t *off = NULL;
    while (total < target) {
        if (n + 2 > cap) {
            cap = cap ? 2 * cap : 1024;
            size_t *o = realloc(off, cap * sizeof *o);
            if (!o) {
                free(off);
                return -1;
            }
            off = o;
        }
        off[n++] = b->n;
        size_t before = b->n;
        if (tc_gen_text(&r, 1024 + tc_u(&r, 31 * 1024), 1, b) || tc_put(b, "", 1)) {
            free(off);
            return -1;
        }
        total += b->n - before - 1;
    }
    if (!off) { /* mb <= 0: no documents */
        off = malloc(sizeof *off);
        if (!off)
            return -1;
    }
    off[n] = b->n;
    *offsets = off;
    *n_docs = n;
    return 0;
}

#endif

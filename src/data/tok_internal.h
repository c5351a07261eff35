/* src/data/tok_internal.h — what the tokenizer files of src/data share (not a public header).
 *
 * tokenizer.c holds the tokenizer object, the BPE engine, encode/decode and the byte, GPT-2 and
 * tiktoken loaders; tok_hf.c loads Hugging Face tokenizer.json files through the builder below;
 * tok_open.c (pt_tokenizer_open) chooses among the loaders.
 */
#ifndef PT_TOK_INTERNAL_H
#define PT_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/tokenizer.h"

#define TOK_NO_RANK INT32_MAX
#define TOK_MAX_PATTERNS 8

/* A tokenizer under construction: tokens (id -> bytes, merge rank), special tokens, patterns. */
typedef struct tok_builder tok_builder;

pt_status tok_builder_create(const char *name, tok_builder **out);
void tok_builder_destroy(tok_builder *b); /* accepts NULL */

/* Adds token `id` with `bytes`; rank TOK_NO_RANK when no merge makes it. `what` names the file
 * (and key or line) in errors: a duplicate id or duplicate bytes is PT_EFORMAT. */
pt_status tok_builder_add(tok_builder *b, int32_t id, const void *bytes, size_t len, int32_t rank, const char *what);
/* Adds merge (left, right) -> the token of their bytes joined, with `rank` (lower merges first).
 * Having merges makes the tokenizer merge-list BPE (pairs of ids, as GPT-2 and Hugging Face do)
 * instead of tiktoken's rank of the joined bytes. A repeated pair keeps its first rank.
 * 0: done; -1: an id or the joined token does not exist; -2: out of memory. */
int tok_builder_add_merge(tok_builder *b, int32_t left, int32_t right, int32_t rank);
/* The id of the token with these bytes, or -1. */
int32_t tok_builder_find(const tok_builder *b, const void *bytes, size_t len);
/* Adds special token `text` = id (text is matched only with PT_TOK_ALLOW_SPECIAL). The id may be
 * one of the ordinary tokens (GPT-2's <|endoftext|>) or a new one. */
pt_status tok_builder_add_special(tok_builder *b, const char *text, size_t len, int32_t id, const char *what);
/* Appends a pre-tokenization pattern (applied in order, each splitting the previous pieces; matches
 * and the gaps between them become pieces). js_space: make \s and \S mean what they mean in
 * JavaScript (the reference encoders' \s includes U+FEFF). */
pt_status tok_builder_add_pattern(tok_builder *b, const char *pattern, int literal, int js_space, const char *what);
/* Options: whole_piece_shortcut: a piece that is itself a token is that token (tiktoken's rule,
 * Hugging Face's ignore_merges). eot: the end-of-text id (-1 none). */
void tok_builder_set_options(tok_builder *b, int whole_piece_shortcut, int32_t eot);
/* Finishes: checks every byte has a token, builds the tables. Destroys b in every case. */
pt_status tok_builder_finish(tok_builder *b, const char *what, pt_tokenizer **out);

/* GPT-2's bytes_to_unicode: byte -> code point, and the inverse (code point -> byte, -1 none). */
uint32_t tok_gpt2_byte_to_cp(uint8_t b);
int tok_gpt2_cp_to_byte(uint32_t cp);
/* Maps a GPT-2-alphabet UTF-8 string (encoder.json key, merge half) to its bytes. dst has room
 * for len bytes. Returns the byte count, or -1 (a character outside the alphabet or bad UTF-8). */
long tok_gpt2_str_to_bytes(const char *s, size_t len, unsigned char *dst);

/* The GPT-2 pre-tokenization pattern (Hugging Face ByteLevel use_regex too). */
extern const char tok_pattern_gpt2[];

/* Makes the tokenizer NFC-normalize text before pre-tokenization (tokenizer.json's NFC normalizer;
 * special tokens are found in the text as given). */
void tok_builder_set_nfc(tok_builder *b);

/* tok_nfc.c: 1 when p[0..n) may change under NFC (some byte >= 0xCC), else 0. */
int tok_nfc_needed(const unsigned char *p, size_t n);
/* Writes NFC(p[0..n)) to *buf (grown as needed, *cap its size) and its length to *out_len. Bytes
 * that are not valid UTF-8 pass through unchanged. 0, or -1 when out of memory. */
int tok_nfc(const unsigned char *p, size_t n, unsigned char **buf, size_t *cap, size_t *out_len);

/* tok_hf.c: loads a Hugging Face tokenizer.json. */
pt_status tok_load_hf(const char *path, const char *name, pt_tokenizer **out);

/* tokenizer.c's loaders, called by pt_tokenizer_open (tok_open.c). `name` names the result.
 * The byte tokenizer (256 ids, one per byte, no end-of-text token). */
pt_status tok_open_byte(pt_tokenizer **out);
/* GPT-2: encoder.json (token string -> id, strings in the byte alphabet) + vocab.bpe (merges). */
pt_status tok_load_gpt2(const char *enc_path, const char *bpe_path, const char *name, pt_tokenizer **out);
/* A tiktoken rank file (base64 token and rank per line): its pattern is o200k's when flavour_o200k,
 * else cl100k's (Llama 3's with 128000 ranks); the special tokens follow from the rank count
 * (cl100k_base, o200k_base, Llama 3's tokenizer.model). */
pt_status tok_load_tiktoken(const char *path, const char *name, int flavour_o200k, pt_tokenizer **out);

#endif

/* pipetrain/tokenizer.h — byte-level BPE tokenizers (GPT-2, tiktoken rank files, Hugging Face
 * tokenizer.json) and the byte tokenizer, behind one small interface.
 *
 *     pt_tokenizer *tok;
 *     PT_CHECK(pt_tokenizer_open("gpt2", &tok));           // or "cl100k", "o200k", "byte", a FILE
 *     pt_tok_ids ids = { 0 };
 *     PT_CHECK(pt_tokenizer_encode(tok, text, len, 0, &ids));   // appends to ids
 *     char *back; size_t n;
 *     PT_CHECK(pt_tokenizer_decode(tok, ids.ids, ids.n, &back, &n)); // back == text, byte for byte
 *     free(back); free(ids.ids);
 *     pt_tokenizer_close(tok);
 *
 * Encoding is exactly the reference implementations' (gpt-3-encoder / GPT-2's encoder.py,
 * js-tiktoken / tiktoken, Hugging Face tokenizers for byte-level BPE): the text is split into
 * pieces by the model's own pre-tokenization regular expression (PCRE2 with UTF and UCP, JIT), then
 * each piece's bytes are merged, the lowest-rank adjacent pair first (leftmost on ties). Merge-list
 * vocabularies (encoder.json + vocab.bpe, tokenizer.json) rank pairs of tokens by the merge list's
 * order, as GPT-2 and Hugging Face do; tiktoken files rank the joined bytes, and a piece that is
 * itself a token is that token, as tiktoken does. Special tokens (<|endoftext|>, ...) are recognised
 * only with PT_TOK_ALLOW_SPECIAL (the earliest, longest occurrence first); otherwise their text is
 * encoded as ordinary text. Details worth knowing:
 *   - \s in the built-in patterns (gpt2, cl100k, o200k) is JavaScript's, as in the references
 *     (U+FEFF is whitespace, U+0085 is not); tokenizer.json patterns and Llama 3's keep PCRE2's.
 *   - Invalid UTF-8 never stops encoding: bytes that are not valid UTF-8 match no pattern, so they
 *     form pieces of their own between the valid text (which is tokenized as if they were a
 *     boundary) and are merged like any bytes; decode(encode(x)) == x for any bytes.
 *   - tokenizer.json: every added token is a special token (recognised only with the flag); an NFC
 *     normalizer (Qwen2) composes the text before pre-tokenization (Unicode 14 tables from
 *     scripts/make-nfc-table.py; decode then gives the NFC text back); other normalizers, ByteLevel
 *     add_prefix_space, and pre-tokenizers other than ByteLevel, Split (Isolated) and Sequence are
 *     refused (PT_EFORMAT naming them), never approximated.
 *
 * Thread-safety: a tokenizer is read-only after open. Several threads may encode and decode with
 * one tokenizer at once: each thread that encodes gets its own scratch (PCRE2 match data and JIT
 * stack, a 2 MB cache of recent pieces), kept until pt_tokenizer_close.
 */
#ifndef PIPETRAIN_TOKENIZER_H
#define PIPETRAIN_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_tokenizer pt_tokenizer;

/* A growing array of token ids; encode appends. Zero-initialise; the caller frees `ids`. */
typedef struct pt_tok_ids {
    int32_t *ids;
    size_t n, cap;
} pt_tok_ids;

enum {
    PT_TOK_ALLOW_SPECIAL = 1 /* recognise special tokens' text (otherwise it is plain text) */
};

/* Opens a tokenizer by name or file (see above). The built-in files are found in the source tree
 * the program was built from, or under PT_TOKENIZER_DIR when that is set. PT_EINVAL for an unknown
 * name (listing the known ones); PT_EFORMAT naming the file, the line or key and what is wrong for a
 * malformed vocabulary, merges, rank or tokenizer.json file; PT_EIO when a file cannot be read. */
pt_status pt_tokenizer_open(const char *name_or_path, pt_tokenizer **out);
void pt_tokenizer_close(pt_tokenizer *t); /* accepts NULL */

/* Short name for logs and sidecars: "byte", "gpt2", "cl100k", "o200k", or the file's path. Borrowed. */
const char *pt_tokenizer_name(const pt_tokenizer *t);
/* One more than the largest token id, special tokens included (gpt2: 50257). */
int pt_tokenizer_vocab_size(const pt_tokenizer *t);
/* A 64-bit hash of every (id, bytes) pair and every special token: two tokenizers with equal
 * fingerprints encode alike. Data sidecars and checkpoints record it to refuse a mismatch. */
uint64_t pt_tokenizer_fingerprint(const pt_tokenizer *t);
/* The end-of-text (document separator) token: <|endoftext|> for gpt2/cl100k/o200k,
 * <|end_of_text|> or the file's eos for tokenizer.json; -1 when the tokenizer has none (byte). */
int pt_tokenizer_eot(const pt_tokenizer *t);
/* The id of special token `text` ("<|endoftext|>"), or -1 when it is not one. */
int pt_tokenizer_special_id(const pt_tokenizer *t, const char *text);

/* Encodes len bytes of text (any bytes: invalid UTF-8 is encoded too, so decode gives it back) and
 * APPENDS the ids to out (growing it). flags: PT_TOK_ALLOW_SPECIAL or 0. PT_ENOMEM on allocation
 * failure (out keeps what it had). Thread-safe. */
pt_status pt_tokenizer_encode(const pt_tokenizer *t, const char *text, size_t len, int flags, pt_tok_ids *out);

/* The bytes of token `id` (not NUL-terminated) and their count; NULL for an id outside the
 * vocabulary (or a hole in it). Borrowed; valid until close. */
const char *pt_tokenizer_token(const pt_tokenizer *t, int32_t id, size_t *len);

/* Decodes n ids into a malloc'd buffer (*text, *len bytes, NUL-terminated beyond len; caller frees).
 * decode(encode(x)) == x byte for byte. PT_EINVAL naming the first id outside the vocabulary. */
pt_status pt_tokenizer_decode(const pt_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif

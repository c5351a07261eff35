/* pipetrain/data.h — training data: token files (made by `pipetrain prepare`) and the built-in
 * synthetic task, served as (B,T) batches that are a pure function of (seed, split, step, sample).
 *
 * Because a batch depends only on those four values, any split of a global batch across
 * micro-batches, pipeline stages and data-parallel replicas sees exactly the same samples, and a
 * resumed run continues with the batches it would have seen.
 *
 *     pt_dataset *d;
 *     PT_CHECK(pt_dataset_open(NULL, seed, &d));             // the built-in task
 *     int32_t tok[B * T], tgt[B * T];
 *     // micro-batch j of replica r at step s:
 *     PT_CHECK(pt_dataset_batch(d, PT_SPLIT_TRAIN, s, (int64_t)(r * M + j) * B, B, T, tok, tgt));
 *     pt_dataset_close(d);
 *
 * Token file format (docs/data-format.md): a 40-byte little-endian header — magic "PTTOKENS",
 * u32 version (1), u32 bytes per token (1, 2 or 4), u32 vocab size, u32 reserved (0), u64 token
 * count, u64 FNV-1a-64 checksum of the token bytes — then the tokens, unsigned little-endian.
 *
 * The built-in task ("builtin", or "builtin:sort" / "builtin:add") packs short problems written in
 * bytes, one per line, into each sequence: "sort:dcab=abcd\n" or "add:12+345=357\n". Targets are the
 * answer bytes (after '=', up to and including the '\n'); every other target is -1, so the loss is
 * taken on answers only. A problem belongs to the eval split when a hash of its question says so,
 * so held-out problems never appear in training. pt_dataset_score turns greedy predictions into
 * exact-match accuracy.
 *
 * Thread-safety: pt_dataset_batch may be called from several threads at once on one data set (it
 * only reads the data set). Open and close are not concurrent with anything.
 */
#ifndef PIPETRAIN_DATA_H
#define PIPETRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- token files ---- */

#define PT_TOKEN_FILE_MAGIC "PTTOKENS"
#define PT_TOKEN_FILE_VERSION 1
#define PT_TOKEN_FILE_HEADER_BYTES 40

/* Writes a token file at `path` in one go (through `path`.tmp, fsync and rename). The token width
 * is the smallest of 1, 2, 4 bytes that holds vocab_size - 1. PT_EINVAL when a token is outside
 * [0, vocab_size) (naming its index) or vocab_size is not in [1, 2^31); PT_EIO naming the path. */
pt_status pt_token_file_write(const char *path, int vocab_size, const int32_t *tokens, int64_t n_tokens);

/* An open token file being written piece by piece (for inputs larger than memory). */
typedef struct pt_token_writer pt_token_writer;
/* Starts writing `path` (through `path`.tmp until commit). PT_EIO naming the path. */
pt_status pt_token_writer_open(const char *path, int vocab_size, pt_token_writer **out);
/* Appends tokens; PT_EINVAL when one is outside [0, vocab_size). Buffered. */
pt_status pt_token_writer_append(pt_token_writer *w, const int32_t *tokens, size_t n);
/* Finishes the header, fsyncs and renames into place; frees the writer either way. *n_tokens_out
 * (may be NULL) gets the count. PT_EIO naming the path. */
pt_status pt_token_writer_commit(pt_token_writer *w, int64_t *n_tokens_out);
/* Discards an unfinished file (removes `path`.tmp) and frees the writer. Accepts NULL. */
void pt_token_writer_abort(pt_token_writer *w);

/* Reads and checks a whole token file: magic, version, width, vocab, size against the count,
 * checksum, and every token < vocab. *tokens is malloc'd (caller frees). PT_EFORMAT naming the path
 * and what is wrong (bad magic, newer version, truncated at byte N, checksum mismatch, token X at
 * index I outside the vocab of V); PT_EIO when it cannot be read. */
pt_status pt_token_file_read(const char *path, int32_t **tokens, int64_t *n_tokens, int *vocab_size);

/* ---- data sets ---- */

typedef struct pt_dataset pt_dataset;

enum { PT_SPLIT_TRAIN = 0, PT_SPLIT_EVAL = 1 };

/* Opens a data set. path: a token file made by `pipetrain prepare`, or NULL / "builtin" (the sort
 * task) / "builtin:sort" / "builtin:add" for the built-in task. A token file is checked as in
 * pt_token_file_read (and mapped read-only, not copied); its last n/10 tokens are the eval split,
 * the rest the train split (each must hold T + 1 tokens for pt_dataset_batch). Returns
 * PT_EFORMAT/PT_EIO as pt_token_file_read, PT_EINVAL for an unknown built-in name. Blocks while
 * checking the file. */
pt_status pt_dataset_open(const char *path, uint64_t seed, pt_dataset **out);
void pt_dataset_close(pt_dataset *d); /* accepts NULL */

/* Token ids are in [0, pt_dataset_vocab(d)). 256 for the built-in task and byte-level files. */
int pt_dataset_vocab(const pt_dataset *d);

/* 1 for the built-in task (answers only are targets; pt_dataset_score gives exact match), 0 for a
 * token file (every position is a target). */
int pt_dataset_is_task(const pt_dataset *d);

/* A short description for logs: "builtin:sort", or the file path with its token count. Borrowed. */
const char *pt_dataset_name(const pt_dataset *d);

/* Fills tokens and targets (host, (B,T) each, row-major) with samples first_sample ..
 * first_sample + B - 1 of `step` in `split`. Content is a pure function of (seed, split, step,
 * sample index). Sample k of step s's global batch: micro-batch j of replica d holds samples
 * [(d*M + j)*B, +B). Targets are the next token, or -1 where no loss is taken. PT_EINVAL for bad
 * B, T or split, or when a token file's split is shorter than T + 1 tokens (naming both).
 * Does not allocate. */
pt_status pt_dataset_batch(pt_dataset *d, int split, int64_t step, int64_t first_sample, int B, int T,
                           int32_t *tokens, int32_t *targets);

/* Scores greedy predictions (pred (B,T): argmax of the model's output at each position) against
 * targets (B,T). For the built-in task a problem is each maximal run of targets >= 0 within a row
 * (one answer); it counts as correct when every prediction in the run equals its target:
 * *n_correct and *n_total count problems. Teacher-forced argmax at every answer position equals greedy
 * decoding of the answer, so this is the exact-match accuracy of greedy answers. For a token file
 * every position with a target counts on its own (next-token accuracy). Pure function. */
void pt_dataset_score(const pt_dataset *d, const int32_t *targets, const int32_t *pred, int B, int T,
                      int64_t *n_correct, int64_t *n_total);

#ifdef __cplusplus
}
#endif
#endif

/* pipetrain/data.h — training data: token files (made by `pipetrain prepare`) and the built-in
 * synthetic task, served as (B,T) batches that are a pure function of (seed, split, step, sample).
 *
 * Because a batch depends only on those four values, any split of a global batch across
 * micro-batches, pipeline stages and data-parallel replicas sees exactly the same samples, and a
 * resumed run continues with the batches it would have seen.
 *
 *     pt_dataset *d;
 *     PT_CHECK(pt_dataset_open(NULL, seed, &d));             // the built-in task, or shards
 *     PT_CHECK(pt_dataset_set_batch(d, D * M * B, B, T));     // the global batch, eval batch, T
 *     int32_t tok[B * T], tgt[B * T];
 *     // micro-batch j of replica r at step s:
 *     PT_CHECK(pt_dataset_batch(d, PT_SPLIT_TRAIN, s, (int64_t)(r * M + j) * B, B, T, tok, tgt));
 *     pt_dataset_close(d);
 *
 * Token files (docs/data.md): llm.c's shards — a header of 256 little-endian int32 (magic 20240520,
 * version 1, token count, the rest 0) then the tokens as uint16, or magic 20240801 / version 7 and
 * uint32 tokens for vocabularies over 65,536 ids — and pipetrain's older PTTOKENS files (a 40-byte
 * header: magic "PTTOKENS", u32 version 1, u32 bytes per token, u32 vocab, u32 0, u64 token count,
 * u64 FNV-1a-64 of the token bytes). A data set is one such file, a folder of them or a glob, with
 * an optional JSON sidecar written by `pipetrain prepare` (FILE.json beside a file, dataset.json in
 * a folder) naming the tokenizer and the shards.
 *
 * The built-in task ("builtin", or "builtin:sort" / "builtin:add") packs short problems written in
 * bytes, one per line, into each sequence: "sort:dcab=abcd\n" or "add:12+345=357\n". Targets are the
 * answer bytes (after '=', up to and including the '\n'); every other target is -1, so the loss is
 * taken on answers only. A problem belongs to the eval split when a hash of its question says so,
 * so held-out problems never appear in training. pt_dataset_score turns greedy predictions into
 * exact-match accuracy.
 *
 * Token data sets need pt_dataset_set_batch (the global batch) before pt_dataset_batch.
 *
 * Thread-safety: pt_dataset_batch may be called from several threads at once on one data set (it
 * only reads the data set). Open and close are not concurrent with anything.
 */
#ifndef PIPETRAIN_DATA_H
#define PIPETRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/model_config.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* ---- token files ---- */

#define PT_TOKEN_FILE_MAGIC "PTTOKENS"
#define PT_TOKEN_FILE_VERSION 1
#define PT_TOKEN_FILE_HEADER_BYTES 40

/* Writes a PTTOKENS token file at `path` in one go (through `path`.tmp, fsync and rename). The token width
 * is the smallest of 1, 2, 4 bytes that holds vocab_size - 1. PT_EINVAL when a token is outside
 * [0, vocab_size) (naming its index) or vocab_size is not in [1, 2^31); PT_EIO naming the path. */
pt_status pt_token_file_write(const char *path, int vocab_size, const int32_t *tokens, int64_t n_tokens);

/* llm.c's shard format (dev/data/data_common.py in llm.c). */
#define PT_SHARD_MAGIC 20240520     /* uint16 tokens (GPT-2) */
#define PT_SHARD_VERSION 1
#define PT_SHARD_MAGIC_U32 20240801 /* uint32 tokens (llm.c's Llama 3 data) */
#define PT_SHARD_VERSION_U32 7
#define PT_SHARD_HEADER_BYTES 1024  /* 256 int32 */
#define PT_SHARD_MAX_TOKENS INT32_MAX /* the header's count is an int32 */

/* Writes an llm.c shard at `path` in one go (through `path`.tmp, fsync and rename): uint16 tokens
 * when vocab_size <= 65536, else uint32 (magic 20240801, version 7). Errors as pt_token_file_write,
 * and PT_EINVAL for more than PT_SHARD_MAX_TOKENS tokens. */
pt_status pt_shard_write(const char *path, int vocab_size, const int32_t *tokens, int64_t n_tokens);

/* An open token file (either format) being written piece by piece (for inputs larger than memory). */
typedef struct pt_token_writer pt_token_writer;
/* Starts writing a PTTOKENS file at `path` (through `path`.tmp until commit). PT_EIO naming the path. */
pt_status pt_token_writer_open(const char *path, int vocab_size, pt_token_writer **out);
/* Starts writing an llm.c shard at `path` (uint16 or uint32 by vocab_size, as pt_shard_write). */
pt_status pt_shard_writer_open(const char *path, int vocab_size, pt_token_writer **out);
/* Appends tokens; PT_EINVAL when one is outside [0, vocab_size), or (llm.c shards) when the file
 * would pass PT_SHARD_MAX_TOKENS. Buffered. */
pt_status pt_token_writer_append(pt_token_writer *w, const int32_t *tokens, size_t n);
/* Tokens appended so far. */
int64_t pt_token_writer_count(const pt_token_writer *w);
/* Finishes the header, fsyncs and renames into place; frees the writer either way. *n_tokens_out
 * (may be NULL) gets the count. PT_EIO naming the path. */
pt_status pt_token_writer_commit(pt_token_writer *w, int64_t *n_tokens_out);
/* Discards an unfinished file (removes `path`.tmp) and frees the writer. Accepts NULL. */
void pt_token_writer_abort(pt_token_writer *w);

/* Reads and checks a whole token file of either format: magic, version, width, vocab, size against
 * the count, checksum (PTTOKENS), and every token < vocab. *tokens is malloc'd (caller frees).
 * *vocab_size (may be NULL) gets the PTTOKENS header's vocab, or the width's bound for an llm.c shard
 * (65536 for uint16, INT32_MAX for uint32: the format records no vocabulary). PT_EFORMAT naming the
 * path and what is wrong (bad magic, other version, truncated, checksum mismatch, token X at index I
 * (byte offset O) outside the vocab of V); PT_EIO when it cannot be read. */
pt_status pt_token_file_read(const char *path, int32_t **tokens, int64_t *n_tokens, int *vocab_size);

/* ---- prepare: text to shards ---- */

enum { PT_PREP_AUTO = 0, PT_PREP_TEXT = 1, PT_PREP_JSONL = 2 };

typedef struct pt_prepare_opts {
    const char *tokenizer;     /* pt_tokenizer_open's name or file; NULL: "byte" */
    const char *const *inputs; /* files, folders (their files, sorted), globs; "-" is stdin */
    int n_inputs;
    const char *output;        /* a folder (shards NAME_val_000000.bin, NAME_train_000001.bin, ... named
                                  after it, and dataset.json), or FILE.bin (one shard, FILE.bin.json) */
    int64_t shard_tokens;      /* tokens per shard; 0: 100M */
    int64_t val_tokens;        /* the first tokens, for the val shards; -1: 1% of the estimated total,
                                  at least min(10%, 32768), at most 10M. Folder output only. */
    int format;                /* PT_PREP_AUTO (.jsonl/.ndjson/.json: JSON lines, else text), _TEXT, _JSONL */
    int threads;               /* 0: every core */
    int allow_special;         /* recognise special tokens' text (PT_TOK_ALLOW_SPECIAL) */
    int progress;              /* a progress line on stderr for inputs over 4 MB */
    size_t unit_bytes;         /* bytes of input per work unit (0: 1 MiB); tests make it small to cut often */
} pt_prepare_opts;

typedef struct pt_prepare_result {
    int64_t documents, bytes, tokens, val_tokens, train_tokens;
    int shards, threads;
    double seconds;
    char sidecar[4096]; /* the sidecar's path */
} pt_prepare_result;

/* Tokenizes the inputs into llm.c shards (uint16, or uint32 over 65,536 ids) plus a sidecar (the
 * tokenizer's name, vocab size, fingerprint and eot; each shard's split and token count; documents,
 * bytes, tokens). A text file is one document; a JSON line {"text": ...} is one (blank lines are
 * skipped). The end-of-text token goes BEFORE every document (llm.c's convention; the byte tokenizer
 * has none, so its output is the input's bytes). Streams: memory is a few MiB per thread whatever
 * the corpus (a text document is cut between a '\n' that follows a visible ASCII character and an
 * ASCII letter, where the byte/gpt2/cl100k/o200k pre-tokenizers never merge across; other
 * tokenizers' documents, and one JSON line, are held whole). Encodes on `threads` threads; the output is byte-identical for any thread count. Every
 * file goes through tmp + fsync + rename. PT_EINVAL for bad options; PT_EFORMAT naming the file and
 * line for bad JSON or a line with no "text" string; PT_EIO naming the file that cannot be read or
 * written; the tokenizer's errors as pt_tokenizer_open. */
pt_status pt_prepare(const pt_prepare_opts *opts, pt_prepare_result *result);

/* ---- data sets ---- */

typedef struct pt_dataset pt_dataset;

enum { PT_SPLIT_TRAIN = 0, PT_SPLIT_EVAL = 1 };

/* Opens a data set. path: NULL / "builtin" (the sort task) / "builtin:sort" / "builtin:add" for the
 * built-in task, or token files: a FILE, a DIR (the shards its dataset.json lists, else every *.bin
 * in it) or a GLOB ("data/fineweb_train_*.bin"; quote it in a shell). Every file is mapped read-only (not
 * copied) and checked: header, size, and every token < the vocabulary. Files named *_val_* / *_val.*
 * (llm.c's naming) or marked "val" in the sidecar are the eval split, the others the train split;
 * with no val file the last tenth of the tokens is the eval split. The vocabulary and tokenizer come
 * from the sidecar (FILE.json, DIR/dataset.json, or dataset.json beside the glob's first match), else
 * from the files: a PTTOKENS header's vocab ("byte" for 256), llm.c uint16 shards are taken as GPT-2
 * (50257, as llm.c writes them), uint32 ones as Llama 3 (128256). PT_EFORMAT naming the file for a
 * bad magic, truncated body, token >= vocab (with its index and byte offset), a sidecar that
 * disagrees with a shard; PT_EIO when a file cannot be read or a glob matches nothing; PT_EINVAL for
 * an unknown built-in name. Blocks while checking. */
pt_status pt_dataset_open(const char *path, uint64_t seed, pt_dataset **out);
void pt_dataset_close(pt_dataset *d); /* accepts NULL */

/* Tells a token data set the batch geometry, which turns (step, sample) into a sequence index:
 * train_batch is the GLOBAL batch in samples (replicas x micro-batches x micro-batch size),
 * eval_batch the samples of one eval step (0: no eval), seq_len T. The split is cut into
 * non-overlapping sequences of T + 1 tokens (stride T: sequence j of a shard is tokens
 * [jT, jT + T], never crossing a shard); train sample k of step s is sequence P_e(g mod N) with
 * g = s * train_batch + k, N the train sequences, e = g / N the epoch and P_e a permutation of
 * [0, N) computed from (seed, epoch) (a Feistel network with cycle-walking, nothing stored); eval
 * sample k of eval step s is sequence (s * eval_batch + k) mod N_eval, in order. So every train
 * sequence is seen once per epoch and disjoint sample ranges of a step read disjoint sequences.
 * PT_EINVAL naming the data set, the tokens it has and the tokens needed when the train split holds
 * fewer than train_batch sequences, or eval_batch > 0 and the eval split holds none. A no-op for the
 * built-in task. Call before pt_dataset_batch (required for token files); not concurrent with it. */
pt_status pt_dataset_set_batch(pt_dataset *d, int train_batch, int eval_batch, int seq_len);

/* Token ids are in [0, pt_dataset_vocab(d)). 256 for the built-in task and byte-level files. */
int pt_dataset_vocab(const pt_dataset *d);

/* The tokenizer the data were made with: its name ("byte" for the built-in task, "gpt2", a file...),
 * its fingerprint (pt_tokenizer_fingerprint; 0 when no sidecar records it) and its end-of-text id
 * (-1 when none or unknown). Borrowed string. */
const char *pt_dataset_tokenizer(const pt_dataset *d);
uint64_t pt_dataset_fingerprint(const pt_dataset *d);
int pt_dataset_eot(const pt_dataset *d);

/* Tokens in a split (0 for the built-in task), and its sequences once pt_dataset_set_batch ran. */
int64_t pt_dataset_tokens(const pt_dataset *d, int split);
int64_t pt_dataset_sequences(const pt_dataset *d, int split);

/* The sequence index (in [0, pt_dataset_sequences(d, split))) sample `sample` of `step` reads, as
 * pt_dataset_set_batch defines it; *epoch (may be NULL) gets its epoch. PT_EINVAL before set_batch
 * or for the built-in task. For tests and logs. */
pt_status pt_dataset_sequence_of(const pt_dataset *d, int split, int64_t step, int64_t sample, int64_t *seq,
                                 int64_t *epoch);

/* Changes the seed the train order is drawn from (a resumed run takes its checkpoint's). */
void pt_dataset_set_seed(pt_dataset *d, uint64_t seed);

/* Fits a model config to the data's vocabulary: when pt_dataset_vocab(d) is larger than
 * cfg->vocab_size, vocab_size becomes it and vocab_padded the larger of its old value and the
 * vocabulary rounded up to a multiple of 128 (GPT-2's 50257 -> 50304, as llm.c and the presets
 * pad), and `note` (cap bytes, may be NULL) gets one line saying so; otherwise cfg is untouched and
 * note is "". */
void pt_dataset_fit_model(const pt_dataset *d, pt_model_config *cfg, char *note, size_t cap);

/* Adds the data set's description to a run JSON object (the run description checkpoints keep):
 * "data_tokenizer" (name), "data_tokenizer_fingerprint" (16 hex digits, when known), "data_vocab",
 * "data_tokens_per_step" (train_batch x seq_len once set_batch ran: the token position of data step
 * s is s times it). PT_ENOMEM when cJSON cannot allocate. */
pt_status pt_dataset_describe(const pt_dataset *d, struct cJSON *run);

/* Refuses to resume from a checkpoint (its run JSON, `what` naming it) made on data of another
 * tokenizer: PT_EINVAL naming both tokenizers and what to do. Fingerprints are compared when both
 * are known, names otherwise; a run JSON with no "data_tokenizer" (older checkpoints) passes. */
pt_status pt_dataset_check_run(const pt_dataset *d, const char *run_json, const char *what);

/* 1 for the built-in task (answers only are targets; pt_dataset_score gives exact match), 0 for a
 * token file (every position is a target). */
int pt_dataset_is_task(const pt_dataset *d);

/* A short description for logs: "builtin:sort", or the path with its shard and token counts. Borrowed. */
const char *pt_dataset_name(const pt_dataset *d);

/* Fills tokens and targets (host, (B,T) each, row-major) with samples first_sample ..
 * first_sample + B - 1 of `step` in `split`. Content is a pure function of (seed, split, step,
 * sample index) (and, for token files, the geometry given to pt_dataset_set_batch). Sample k of
 * step s's global batch: micro-batch j of replica d holds samples [(d*M + j)*B, +B). Targets are
 * the next token, or -1 where no loss is taken. PT_EINVAL for bad B, T or split, a T other than
 * set_batch's, or a token data set whose set_batch was not called. Does not allocate. */
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

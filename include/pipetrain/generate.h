/* pipetrain/generate.h — text generation with a KV cache, and sampling from logits.
 *
 * A generator runs the forward pass of a pt_model chunk (all layers, or one pipeline stage's
 * range) a few positions at a time, keeping every block's q, k, v of the positions seen so far
 * (the KV cache), so each new token costs one row of work per layer instead of the whole
 * sequence. Both architectures (model_config.h): gpt2, and llama (RMSNorm, q and k rotated at
 * their absolute positions before they enter the cache, grouped-query attention over the
 * n_kv_head cached key/value heads, SwiGLU, the untied lm_head.weight or the tied wte as head). Everything goes through the model's backend (CPU or CUDA); the host only sees token
 * ids, the final logits (or a stage's hidden state) and the sampler's work.
 *
 *     pt_generator *g;
 *     PT_CHECK(pt_generator_create(model, 1, cfg.max_seq_len, &g));      // model: layers 0..last
 *     pt_sampler *smp;
 *     PT_CHECK(pt_sampler_create(&(pt_sample_opts){ .temperature = 0.8f, .top_k = 40, .seed = 1 },
 *                                cfg.vocab_size, &smp));
 *     int32_t out[64];
 *     pt_generate_stats gs;
 *     PT_CHECK(pt_generate(g, smp, prompt, n_prompt, 64, out, NULL, NULL, &gs));
 *
 * The model's own activation slots are not used (create it with micro_batch 1, seq_len 1,
 * n_slots 1, fused_only 1 to keep them small); only its parameters are read. A chunk holding
 * part of the LM head split into vocabulary shards (head_split > 1) is refused: generation reads
 * the whole LM-head matrix (wte, or lm_head.weight) (the parameters are the same; create the
 * model with head_split 1).
 *
 * Thread-safety: one generator (and its model) is used by one thread at a time; a sampler too.
 */
#ifndef PIPETRAIN_GENERATE_H
#define PIPETRAIN_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/model.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the generator: one chunk's forward pass with a KV cache ---- */

typedef struct pt_generator pt_generator;

/* Makes a generator over chunk `m` (borrowed; must outlive it) for `batch` sequences decoded
 * together and up to `max_len` positions each (<= the config's max_seq_len). Allocates, through
 * the model's backend, the KV cache (batch * max_len * W floats per block, W = C + 2 * n_kv_head *
 * head width: 3C for gpt2), the activations of batch * max_len positions and, for llama, the
 * rotary tables of max_len positions (built as the training forward's, models/model.c) once.
 * PT_EINVAL for a bad size or a chunk holding only some of a split head; PT_ENOTSUP when the
 * backend has no attention_decode kernel (or, llama, no RMSNorm / RoPE / SwiGLU kernels). */
pt_status pt_generator_create(pt_model *m, int batch, int max_len, pt_generator **out);
void pt_generator_destroy(pt_generator *g); /* accepts NULL */

/* Forgets every position (the next forward starts at position 0). */
void pt_generator_reset(pt_generator *g);
/* Positions held in the cache (the position the next forward starts at). */
int pt_generator_pos(const pt_generator *g);
/* The batch (sequences decoded together) and the longest sequence the cache holds, as created. */
int pt_generator_batch(const pt_generator *g);
int pt_generator_max_len(const pt_generator *g);

/* Runs the chunk over n new positions of every sequence (pos .. pos+n-1), appending their k, v to
 * the cache. Input (host): tokens (batch, n) ids when the chunk holds the embedding, else x_in
 * (batch, n, C), the previous chunk's output. Output (host): with the head, out = (batch,
 * vocab_size) logits of each sequence's last new position; otherwise out = (batch, n, C), this
 * chunk's output for the next one. Synchronises. PT_EINVAL when pos + n passes max_len (naming
 * the limit) or an id is outside the vocabulary. */
pt_status pt_generator_forward(pt_generator *g, const int32_t *tokens, const float *x_in, int n, float *out);

/* ---- sampling from logits (host) ---- */

typedef struct pt_sample_opts {
    float temperature; /* 0: greedy (the first argmax); else logits / temperature */
    int top_k;         /* keep the k most likely tokens (0: all) */
    float top_p;       /* nucleus: keep the fewest most likely tokens whose probability sums to >= top_p
                        * (0 or >= 1: all); applied after top_k. Tokens below 1e-12 of the most likely
                        * one's probability are not considered for it. */
    uint64_t seed;     /* the draws are a pure function of the seed and the logits */
} pt_sample_opts;

typedef struct pt_sampler pt_sampler;

/* Checks the options (PT_EINVAL naming the bad one: negative temperature or top_k, top_p < 0) and
 * allocates scratch for a vocabulary of `vocab` tokens. */
pt_status pt_sampler_create(const pt_sample_opts *o, int vocab, pt_sampler **out);
void pt_sampler_destroy(pt_sampler *s); /* accepts NULL */
/* The next token drawn from logits (vocab floats). Ties are broken towards the lower id; greedy and
 * top_k 1 return the first argmax. Deterministic for a seed; advances the sampler's generator. */
int32_t pt_sampler_next(pt_sampler *s, const float *logits);

/* ---- the generation loop ---- */

typedef struct pt_generate_stats {
    int n_prompt;      /* prompt tokens per sequence */
    int n_new;         /* tokens generated per sequence */
    double prefill_s;  /* seconds of the prompt's forward pass (its first token's logits included) */
    double decode_s;   /* seconds of the n_new - 1 one-token forward passes and the sampling */
} pt_generate_stats;

/* Called after each generated step with the batch's new ids (batch entries) and the step index;
 * a non-zero return stops generation after that step. */
typedef int (*pt_generate_fn)(void *ctx, const int32_t *ids, int step);

/* Resets g, feeds the prompts (batch * n_prompt ids, row-major; all of one length, >= 1), then
 * samples and feeds one token at a time until max_new tokens per sequence: out (batch, max_new)
 * host ids. g's chunk must hold the whole model (embedding to head). PT_EINVAL naming the fix when
 * n_prompt + max_new passes the generator's max_len. */
pt_status pt_generate(pt_generator *g, pt_sampler *s, const int32_t *prompt, int n_prompt, int max_new, int32_t *out,
                      pt_generate_fn fn, void *ctx, pt_generate_stats *stats);

#ifdef __cplusplus
}
#endif
#endif

/* Generation with a KV cache (include/pipetrain/generate.h).
 *
 * Per block and call of n new positions per sequence (B sequences, cache capacity Tc):
 *   gpt2: ln1 -> qkv (written straight into the block's cache rows when B == 1, else into a
 *   scratch and copied there) -> attention (attention_forward on the whole prompt when the cache is
 *   empty, so a prefill computes what the training forward computes; attention_decode against the
 *   cache otherwise) -> proj + residual -> ln2 -> fc -> gelu -> proj + residual (the residual
 *   add + ln2 and the fc bias + gelu through the fused kernels, as models/model.c).
 *   llama: RMSNorm -> qkv (W = C + 2*NKV*hs floats per row, into the cache as above) -> RoPE in
 *   place at the absolute positions pos..pos+n-1 (before the copy to the cache, so the cache holds
 *   rotated q and k) -> grouped-query attention (NKV) -> proj + residual -> RMSNorm -> gate_up ->
 *   SwiGLU -> down + residual.
 * The head normalises only each sequence's last new position and multiplies it by the LM-head
 * matrix: wte (gpt2, tied llama) or lm_head.weight (untied llama).
 * All buffers (the rotary tables of max_len positions included) are allocated once at create,
 * through the model's backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/generate.h"
#include "pipetrain/timeutil.h"

enum { GB_LN1W, GB_LN1B, GB_QKVW, GB_QKVB, GB_PROJW, GB_PROJB, GB_LN2W, GB_LN2B, GB_FCW, GB_FCB, GB_MPROJW, GB_MPROJB,
       GB_COUNT };
static const char *const gen_block_suffix[GB_COUNT] = {
    "ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "ln2.weight", "ln2.bias", "mlp.fc.weight",   "mlp.fc.bias",   "mlp.proj.weight",  "mlp.proj.bias",
};
_Static_assert(sizeof(gen_block_suffix) / sizeof(gen_block_suffix[0]) == GB_COUNT, "block parameter table");

/* A llama block's tensors (model.h): no biases, fused q/k/v and gate/up projections. */
enum { GL_LN1W, GL_QKVW, GL_PROJW, GL_LN2W, GL_GUW, GL_DOWNW, GL_COUNT };
static const char *const gen_llama_suffix[GL_COUNT] = {
    "ln1.weight", "attn.qkv.weight", "attn.proj.weight", "ln2.weight", "mlp.gate_up.weight", "mlp.down.weight",
};
_Static_assert(sizeof(gen_llama_suffix) / sizeof(gen_llama_suffix[0]) == GL_COUNT, "llama block parameter table");

typedef struct gen_block {
    const float *w[GB_COUNT]; /* device views into the model's parameters (GB_* or, llama, GL_*) */
    float *cache;             /* (B, Tc, W) */
} gen_block;

struct pt_generator {
    pt_model *m;
    const pt_backend *be;
    pt_stream *s;
    int B, Tc, C, NH, V, Vp;
    int llama;                      /* cfg.arch == PT_ARCH_LLAMA */
    int NKV, W, FW, AW;             /* kv heads; qkv row width; MLP hidden widths before / after the activation */
    float eps;                      /* llama's RMSNorm epsilon */
    int has_emb, has_head;
    int pos;
    const float *wte, *wpe, *lnfw, *lnfb;
    const float *head_w;            /* (Vp, C): wte, or llama's untied lm_head.weight */
    int n_blocks;
    gen_block *blocks;
    void *mem;                      /* one device allocation for everything below */
    int32_t *tokens;                /* (B*Tc) */
    float *x, *ln, *mean, *rstd, *qkv, *atty, *tmp, *fch, *fchg, *saved, *scratch, *logits;
    float *rope_cos, *rope_sin;     /* llama (Tc, hs/2): the rotary tables of positions 0..Tc-1 */
    float *host_logits;             /* (B, Vp) */
};

static const float *gen_param(pt_model *m, const char *name, pt_status *st)
{
    const pt_param *p = pt_model_find_tensor(m, name);
    if (!p) {
        if (*st == PT_OK)
            *st = pt_fail(PT_EINVAL, "generator: the model chunk (layers %d..%d) lacks tensor %s",
                          pt_model_first_layer(m), pt_model_last_layer(m), name);
        return NULL;
    }
    return pt_model_params(m) + p->offset;
}

#define GEN_ALIGN 256
static size_t gen_carve(size_t *off, size_t bytes)
{
    size_t at = *off;
    *off += (bytes + GEN_ALIGN - 1) / GEN_ALIGN * GEN_ALIGN;
    return at;
}

pt_status pt_generator_create(pt_model *m, int batch, int max_len, pt_generator **out)
{
    *out = NULL;
    const pt_model_config *cfg = pt_model_config_of(m);
    const pt_backend *be = pt_model_backend(m);
    if (!be->attention_decode)
        return pt_fail(PT_ENOTSUP, "generator: backend %s has no attention_decode kernel; generate on another backend",
                       be->name);
    if (cfg->arch == PT_ARCH_LLAMA && (!be->rmsnorm_forward || !be->rope_forward || !be->swiglu_forward))
        return pt_fail(PT_ENOTSUP, "generator: backend %s has no llama kernels (RMSNorm, RoPE, SwiGLU); generate on "
                                   "another backend", be->name);
    if (batch < 1 || max_len < 1 || max_len > cfg->max_seq_len)
        return pt_fail(PT_EINVAL, "generator: batch %d and length %d must be >= 1, the length at most the context (%d)",
                       batch, max_len, cfg->max_seq_len);
    if (pt_model_has_head_layers(m) && (!pt_model_has_head(m) || !pt_model_find_tensor(m, "lnf.weight")))
        return pt_fail(PT_EINVAL, "generator: the chunk (layers %d..%d) holds only part of the LM head split into %d "
                                  "shards; generate with head_split 1 (the weights are the same)",
                       pt_model_first_layer(m), pt_model_last_layer(m), pt_model_head_layers(cfg));
    pt_generator *g = calloc(1, sizeof *g);
    if (!g)
        return pt_fail(PT_ENOMEM, "generator: out of memory");
    pt_status st = PT_OK;
    g->m = m;
    g->be = be;
    g->s = pt_model_stream(m);
    g->B = batch;
    g->Tc = max_len;
    g->C = cfg->n_embd;
    g->NH = cfg->n_head;
    g->V = cfg->vocab_size;
    g->Vp = cfg->vocab_padded;
    g->llama = cfg->arch == PT_ARCH_LLAMA;
    g->NKV = pt_model_kv_heads(cfg);
    g->W = g->C + 2 * g->NKV * (g->C / g->NH);
    g->FW = g->llama ? 2 * cfg->intermediate_size : 4 * g->C;
    g->AW = g->llama ? cfg->intermediate_size : 4 * g->C;
    g->eps = cfg->rms_norm_eps;
    g->has_emb = pt_model_has_embedding(m);
    g->has_head = pt_model_has_head(m);
    const int first = pt_model_first_layer(m), last = pt_model_last_layer(m), L = cfg->n_layer;
    const int b0 = first < 1 ? 1 : first, b1 = last > L ? L : last;
    g->n_blocks = b1 >= b0 ? b1 - b0 + 1 : 0;
    g->blocks = calloc(g->n_blocks > 0 ? (size_t)g->n_blocks : 1, sizeof(gen_block));
    if (!g->blocks) {
        st = pt_fail(PT_ENOMEM, "generator: out of memory");
        goto fail;
    }
    if (g->has_emb) {
        g->wte = gen_param(m, "wte.weight", &st);
        if (!g->llama)
            g->wpe = gen_param(m, "wpe.weight", &st);
    }
    if (g->has_head) {
        g->head_w = gen_param(m, pt_model_tied(cfg) ? "wte.weight" : "lm_head.weight", &st);
        g->lnfw = gen_param(m, "lnf.weight", &st);
        if (!g->llama)
            g->lnfb = gen_param(m, "lnf.bias", &st);
    }
    const int n_w = g->llama ? GL_COUNT : GB_COUNT;
    for (int j = 0; j < g->n_blocks; j++)
        for (int k = 0; k < n_w; k++) {
            char name[96];
            snprintf(name, sizeof name, "blocks.%d.%s", b0 - 1 + j, g->llama ? gen_llama_suffix[k] : gen_block_suffix[k]);
            g->blocks[j].w[k] = gen_param(m, name, &st);
        }
    if (st != PT_OK)
        goto fail;

    const size_t B = (size_t)batch, N = B * (size_t)max_len, C = (size_t)g->C, W = (size_t)g->W;
    const size_t half = (size_t)(g->C / g->NH / 2), n_rope = g->llama && g->n_blocks > 0 ? (size_t)max_len * half : 0;
    size_t off = 0, o_cache = gen_carve(&off, (size_t)g->n_blocks * B * max_len * W * sizeof(float));
    size_t o_tok = gen_carve(&off, N * sizeof(int32_t)), o_x = gen_carve(&off, N * C * 4),
           o_ln = gen_carve(&off, N * C * 4), o_mean = gen_carve(&off, N * 4), o_rstd = gen_carve(&off, N * 4),
           o_qkv = gen_carve(&off, (batch > 1 ? N : 1) * W * 4), o_atty = gen_carve(&off, N * C * 4),
           o_tmp = gen_carve(&off, N * C * 4), o_fch = gen_carve(&off, N * (size_t)g->FW * 4),
           o_fchg = gen_carve(&off, N * (size_t)g->AW * 4),
           o_saved = gen_carve(&off, be->attention_saved_size(batch, max_len, g->C, g->NH, g->NKV) * 4),
           o_scr = gen_carve(&off, be->attention_scratch_size(batch, max_len, g->C, g->NH, g->NKV) * 4),
           o_log = gen_carve(&off, g->has_head ? B * (size_t)g->Vp * 4 : 4),
           o_cos = gen_carve(&off, n_rope * 4), o_sin = gen_carve(&off, n_rope * 4);
    PT_TRY(pt_backend_alloc(be, &g->mem, off), fail);
    char *base = g->mem;
    for (int j = 0; j < g->n_blocks; j++)
        g->blocks[j].cache = (float *)(base + o_cache) + (size_t)j * B * max_len * W;
    g->tokens = (int32_t *)(base + o_tok);
    g->x = (float *)(base + o_x);
    g->ln = (float *)(base + o_ln);
    g->mean = (float *)(base + o_mean);
    g->rstd = (float *)(base + o_rstd);
    g->qkv = (float *)(base + o_qkv);
    g->atty = (float *)(base + o_atty);
    g->tmp = (float *)(base + o_tmp);
    g->fch = (float *)(base + o_fch);
    g->fchg = (float *)(base + o_fchg);
    g->saved = (float *)(base + o_saved);
    g->scratch = (float *)(base + o_scr);
    g->logits = (float *)(base + o_log);
    if (n_rope > 0) {
        g->rope_cos = (float *)(base + o_cos);
        g->rope_sin = (float *)(base + o_sin);
        /* the training forward's tables (pt_model_rope_tables), so a prompt's rotations are its bits */
        PT_TRY(pt_model_rope_tables(cfg, g->Tc, g->be, g->s, g->rope_cos, g->rope_sin), fail);
    }
    if (g->has_head) {
        g->host_logits = malloc(B * (size_t)g->Vp * sizeof(float));
        if (!g->host_logits) {
            st = pt_fail(PT_ENOMEM, "generator: out of memory for %zu logits", B * (size_t)g->Vp);
            goto fail;
        }
    }
    *out = g;
    return PT_OK;
fail:
    pt_generator_destroy(g);
    return st;
}

void pt_generator_destroy(pt_generator *g)
{
    if (!g)
        return;
    free(g->host_logits);
    pt_backend_free(g->be, g->mem);
    free(g->blocks);
    free(g);
}

void pt_generator_reset(pt_generator *g) { g->pos = 0; }
int pt_generator_pos(const pt_generator *g) { return g->pos; }
int pt_generator_batch(const pt_generator *g) { return g->B; }
int pt_generator_max_len(const pt_generator *g) { return g->Tc; }

/* The block's new rows' q, k, v: the qkv matmul of g->ln into the cache rows pos..pos+n-1 of each
 * sequence (straight there when B == 1, else through g->qkv), rotated first for llama. Returns the
 * contiguous (B, n, W) rows attention_forward reads on a prefill. */
static pt_status gen_qkv(pt_generator *g, const gen_block *bl, const float *w, const float *bias, int n,
                         const float **rows)
{
    const pt_backend *be = g->be;
    pt_stream *s = g->s;
    const int B = g->B, C = g->C, W = g->W, t0 = g->pos;
    const size_t ld = (size_t)W;
    float *dst = B == 1 ? bl->cache + (size_t)t0 * ld : g->qkv;
    PT_CHECK(be->matmul_forward(s, dst, g->ln, w, bias, B * n, C, W));
    if (g->llama) /* token i of each sequence is at position t0 + i */
        PT_CHECK(be->rope_forward(s, dst, g->rope_cos, g->rope_sin, B, n, g->NH, g->NKV, C / g->NH, t0));
    if (B > 1)
        for (int b = 0; b < B; b++)
            PT_CHECK(be->memcpy_d2d(s, bl->cache + ((size_t)b * g->Tc + t0) * ld, g->qkv + (size_t)b * n * ld,
                                    (size_t)n * ld * sizeof(float)));
    *rows = B == 1 ? bl->cache : g->qkv;
    return PT_OK;
}

/* Attention of the new rows: the training kernel on a prompt (cache empty), else against the cache. */
static pt_status gen_attention(pt_generator *g, const gen_block *bl, const float *rows, int n)
{
    if (g->pos == 0)
        return g->be->attention_forward(g->s, g->atty, g->saved, g->scratch, rows, g->B, n, g->C, g->NH, g->NKV);
    return g->be->attention_decode(g->s, g->atty, bl->cache, g->B, g->Tc, g->pos, n, g->C, g->NH, g->NKV);
}

static pt_status gen_block_forward(pt_generator *g, const gen_block *bl, int n)
{
    const pt_backend *be = g->be;
    pt_stream *s = g->s;
    const int C = g->C, N = g->B * n;
    const float *rows;
    PT_CHECK(be->layernorm_forward(s, g->ln, g->mean, g->rstd, g->x, bl->w[GB_LN1W], bl->w[GB_LN1B], N, C));
    PT_CHECK(gen_qkv(g, bl, bl->w[GB_QKVW], bl->w[GB_QKVB], n, &rows));
    PT_CHECK(gen_attention(g, bl, rows, n));
    PT_CHECK(be->matmul_forward(s, g->tmp, g->atty, bl->w[GB_PROJW], bl->w[GB_PROJB], N, C, C));
    PT_CHECK(be->add_layernorm_forward(s, g->x, g->ln, g->mean, g->rstd, g->x, g->tmp, bl->w[GB_LN2W], bl->w[GB_LN2B],
                                       N, C, 0));
    PT_CHECK(be->matmul_forward(s, g->fch, g->ln, bl->w[GB_FCW], NULL, N, C, 4 * C));
    PT_CHECK(be->bias_gelu_forward(s, g->fch, g->fchg, bl->w[GB_FCB], N, 4 * C, 0));
    PT_CHECK(be->matmul_forward(s, g->tmp, g->fchg, bl->w[GB_MPROJW], bl->w[GB_MPROJB], N, 4 * C, C));
    PT_CHECK(be->add(s, g->x, g->x, g->tmp, (size_t)N * C));
    return PT_OK;
}

/* A llama block, as models/model.c's llama_block_forward on the new rows. */
static pt_status gen_llama_block_forward(pt_generator *g, const gen_block *bl, int n)
{
    const pt_backend *be = g->be;
    pt_stream *s = g->s;
    const int C = g->C, N = g->B * n, H = g->AW;
    const float *rows;
    PT_CHECK(be->rmsnorm_forward(s, g->ln, g->rstd, g->x, bl->w[GL_LN1W], N, C, g->eps));
    PT_CHECK(gen_qkv(g, bl, bl->w[GL_QKVW], NULL, n, &rows));
    PT_CHECK(gen_attention(g, bl, rows, n));
    PT_CHECK(be->matmul_forward(s, g->tmp, g->atty, bl->w[GL_PROJW], NULL, N, C, C));
    PT_CHECK(be->add_rmsnorm_forward(s, g->x, g->ln, g->rstd, g->x, g->tmp, bl->w[GL_LN2W], N, C, g->eps, 0));
    PT_CHECK(be->matmul_forward(s, g->fch, g->ln, bl->w[GL_GUW], NULL, N, C, 2 * H));
    PT_CHECK(be->swiglu_forward(s, g->fchg, g->fch, N, H));
    PT_CHECK(be->matmul_forward(s, g->tmp, g->fchg, bl->w[GL_DOWNW], NULL, N, H, C));
    PT_CHECK(be->add(s, g->x, g->x, g->tmp, (size_t)N * C));
    return PT_OK;
}

/* The final norm of rows x (count rows of C) into ln: LayerNorm (gpt2) or RMSNorm (llama). */
static pt_status gen_final_norm(pt_generator *g, float *ln, float *mean, float *rstd, const float *x, int count)
{
    if (g->llama)
        return g->be->rmsnorm_forward(g->s, ln, rstd, x, g->lnfw, count, g->C, g->eps);
    return g->be->layernorm_forward(g->s, ln, mean, rstd, x, g->lnfw, g->lnfb, count, g->C);
}

pt_status pt_generator_forward(pt_generator *g, const int32_t *tokens, const float *x_in, int n, float *out)
{
    const pt_backend *be = g->be;
    pt_stream *s = g->s;
    const int B = g->B, C = g->C, N = B * n;
    if (n < 1 || g->pos + n > g->Tc)
        return pt_fail(PT_EINVAL, "generator: %d new position(s) after %d would pass the generator's length %d; "
                                  "generate fewer tokens or create it longer (at most the context)",
                       n, g->pos, g->Tc);
    if (g->has_emb) {
        if (!tokens)
            return pt_fail(PT_EINVAL, "generator: the chunk holds the embedding; pass token ids");
        for (int i = 0; i < N; i++)
            if (tokens[i] < 0 || tokens[i] >= g->V)
                return pt_fail(PT_EINVAL, "generator: token id %d is outside the vocabulary [0, %d); check the "
                                          "tokenizer matches the model", tokens[i], g->V);
        PT_CHECK(be->memcpy_h2d(s, g->tokens, tokens, (size_t)N * sizeof(int32_t)));
        PT_CHECK(be->embedding_forward(s, g->x, g->tokens, g->wte, g->wpe ? g->wpe + (size_t)g->pos * C : NULL, B, n,
                                       C));
    } else {
        if (!x_in)
            return pt_fail(PT_EINVAL, "generator: the chunk starts after the embedding; pass its input hidden state");
        PT_CHECK(be->memcpy_h2d(s, g->x, x_in, (size_t)N * C * sizeof(float)));
    }
    for (int j = 0; j < g->n_blocks; j++)
        PT_CHECK(g->llama ? gen_llama_block_forward(g, &g->blocks[j], n) : gen_block_forward(g, &g->blocks[j], n));
    if (!g->has_head) {
        PT_CHECK(be->memcpy_d2h(s, out, g->x, (size_t)N * C * sizeof(float)));
        g->pos += n;
        return PT_OK;
    }
    /* the last new position of each sequence: row b*n + n-1, normalised into row b of ln */
    if (n == 1) {
        PT_CHECK(gen_final_norm(g, g->ln, g->mean, g->rstd, g->x, B));
    } else {
        for (int b = 0; b < B; b++)
            PT_CHECK(gen_final_norm(g, g->ln + (size_t)b * C, g->mean + b, g->rstd + b,
                                    g->x + ((size_t)b * n + n - 1) * C, 1));
    }
    PT_CHECK(be->matmul_forward(s, g->logits, g->ln, g->head_w, NULL, B, C, g->Vp));
    PT_CHECK(be->memcpy_d2h(s, g->host_logits, g->logits, (size_t)B * g->Vp * sizeof(float)));
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * g->V, g->host_logits + (size_t)b * g->Vp, (size_t)g->V * sizeof(float));
    g->pos += n;
    return PT_OK;
}

/* ---- sampler ---- */

struct pt_sampler {
    pt_sample_opts o;
    int V;
    uint64_t rng;
    int32_t *idx;  /* (V) candidates */
    double *prob;  /* (V) */
};

static uint64_t gen_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double gen_uniform(pt_sampler *s) { return (double)(gen_splitmix64(&s->rng) >> 11) * 0x1.0p-53; }

pt_status pt_sampler_create(const pt_sample_opts *o, int vocab, pt_sampler **out)
{
    *out = NULL;
    if (!(o->temperature >= 0.0f) || !isfinite(o->temperature))
        return pt_fail(PT_EINVAL, "sampler: temperature %g must be a finite number >= 0 (0: greedy)", o->temperature);
    if (o->top_k < 0)
        return pt_fail(PT_EINVAL, "sampler: top-k %d must be >= 0 (0: all tokens)", o->top_k);
    if (!(o->top_p >= 0.0f))
        return pt_fail(PT_EINVAL, "sampler: top-p %g must be in [0, 1] (0 or 1: all tokens)", o->top_p);
    if (vocab < 1)
        return pt_fail(PT_EINVAL, "sampler: vocabulary of %d tokens", vocab);
    pt_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->idx = malloc((size_t)vocab * sizeof(int32_t));
        s->prob = malloc((size_t)vocab * sizeof(double));
    }
    if (!s || !s->idx || !s->prob) {
        pt_sampler_destroy(s);
        return pt_fail(PT_ENOMEM, "sampler: out of memory for a vocabulary of %d", vocab);
    }
    s->o = *o;
    s->V = vocab;
    s->rng = o->seed ^ 0x5851F42D4C957F2Dull;
    *out = s;
    return PT_OK;
}

void pt_sampler_destroy(pt_sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->prob);
    free(s);
}

/* Candidate order (qsort_r, ctx = the logits): higher logit first, then lower id. */
static int gen_cmp(const void *a, const void *b, void *ctx)
{
    const float *lg = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = lg[i], y = lg[j];
    if (x != y)
        return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* Worse-first comparison for the top-k min-heap: is a worse than b? */
static int gen_worse(const float *lg, int32_t a, int32_t b) { return lg[a] < lg[b] || (lg[a] == lg[b] && a > b); }

static void gen_sift_down(const float *lg, int32_t *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && gen_worse(lg, h[l], h[w]))
            w = l;
        if (r < n && gen_worse(lg, h[r], h[w]))
            w = r;
        if (w == i)
            return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

int32_t pt_sampler_next(pt_sampler *s, const float *lg)
{
    const int V = s->V;
    int best = 0;
    for (int v = 1; v < V; v++)
        if (lg[v] > lg[best])
            best = v;
    const int k = s->o.top_k > 0 && s->o.top_k < V ? s->o.top_k : V;
    if (s->o.temperature == 0.0f || k == 1)
        return best;
    const double inv_t = 1.0 / s->o.temperature, mx = lg[best];
    const int nucleus = s->o.top_p > 0.0f && s->o.top_p < 1.0f;
    int n = 0;
    if (k < V) { /* the k best by a min-heap of size k, then sorted */
        for (int v = 0; v < V; v++) {
            if (n < k) {
                s->idx[n++] = v;
                if (n == k)
                    for (int i = k / 2 - 1; i >= 0; i--)
                        gen_sift_down(lg, s->idx, k, i);
            } else if (gen_worse(lg, s->idx[0], v)) {
                s->idx[0] = v;
                gen_sift_down(lg, s->idx, k, 0);
            }
        }
    } else if (nucleus) { /* every token that can matter (see generate.h), then sorted */
        const double floor_logit = mx + log(1e-12) / inv_t;
        for (int v = 0; v < V; v++)
            if (lg[v] >= floor_logit)
                s->idx[n++] = v;
    } else {
        for (int v = 0; v < V; v++)
            s->idx[n++] = v;
    }
    if (k < V || nucleus) {
        qsort_r(s->idx, (size_t)n, sizeof(int32_t), gen_cmp, (void *)lg);
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        s->prob[i] = exp(((double)lg[s->idx[i]] - mx) * inv_t);
        total += s->prob[i];
    }
    if (nucleus) { /* the fewest leading candidates holding top_p of the mass */
        double cum = 0.0, want = s->o.top_p * total;
        int keep = 0;
        while (keep < n) {
            cum += s->prob[keep++];
            if (cum >= want)
                break;
        }
        n = keep;
        total = cum;
    }
    double r = gen_uniform(s) * total, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->prob[i];
        if (r < cum)
            return s->idx[i];
    }
    return s->idx[n - 1];
}

/* ---- the loop ---- */

pt_status pt_generate(pt_generator *g, pt_sampler *smp, const int32_t *prompt, int n_prompt, int max_new, int32_t *out,
                      pt_generate_fn fn, void *ctx, pt_generate_stats *stats)
{
    if (!g->has_emb || !g->has_head)
        return pt_fail(PT_EINVAL, "generate: the generator's chunk (layers %d..%d) is not the whole model; use "
                                  "pt_generator_forward stage by stage",
                       pt_model_first_layer(g->m), pt_model_last_layer(g->m));
    if (n_prompt < 1)
        return pt_fail(PT_EINVAL, "generate: the prompt is empty; give at least one token");
    if (max_new < 0 || (long)n_prompt + max_new > g->Tc)
        return pt_fail(PT_EINVAL, "generate: %d prompt tokens + %d new tokens pass the context of %d; shorten the "
                                  "prompt or ask for at most %d new tokens",
                       n_prompt, max_new, g->Tc, g->Tc - n_prompt > 0 ? g->Tc - n_prompt : 0);
    const int B = g->B;
    float *logits = malloc((size_t)B * g->V * sizeof(float));
    int32_t *ids = malloc((size_t)B * sizeof(int32_t));
    if (!logits || !ids) {
        free(logits);
        free(ids);
        return pt_fail(PT_ENOMEM, "generate: out of memory for %d rows of logits", B);
    }
    pt_status st = PT_OK;
    pt_generator_reset(g);
    int64_t t0 = pt_now_ns(), t1 = t0;
    int step = 0;
    if (max_new > 0)
        PT_TRY(pt_generator_forward(g, prompt, NULL, n_prompt, logits), done);
    t1 = pt_now_ns();
    for (; step < max_new; step++) {
        for (int b = 0; b < B; b++) {
            ids[b] = pt_sampler_next(smp, logits + (size_t)b * g->V);
            out[(size_t)b * max_new + step] = ids[b];
        }
        if (fn && fn(ctx, ids, step)) {
            step++;
            break;
        }
        if (step + 1 < max_new)
            PT_TRY(pt_generator_forward(g, ids, NULL, 1, logits), done);
    }
done:;
    int64_t t2 = pt_now_ns();
    if (stats) {
        stats->n_prompt = n_prompt;
        stats->n_new = step;
        stats->prefill_s = pt_seconds_between(t0, t1);
        stats->decode_s = pt_seconds_between(t1, t2);
    }
    free(logits);
    free(ids);
    return st;
}

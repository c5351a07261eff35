/* tests/kernels/kernel_ref.c — see kernel_ref.h. */
#include "kernel_ref.h"

#include <math.h>
#include <stdlib.h>

void ref_matmul(double *out, const double *inp, const double *w, const double *b, int N, int C, int OC)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++)
                acc += inp[(size_t)n * C + c] * w[(size_t)o * C + c];
            out[(size_t)n * OC + o] = acc;
        }
}

void ref_layernorm(double *out, const double *inp, const double *w, const double *b, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (x[c] - m) * (x[c] - m);
        v /= C;
        double r = 1.0 / sqrt(v + 1e-5);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (x[c] - m) * r * w[c] + b[c];
    }
}

void ref_rmsnorm(double *out, const double *inp, const double *w, int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C;
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += x[c] * x[c];
        double r = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = x[c] * r * w[c];
    }
}

void ref_rope(double *qkv, const double *cos, const double *sin, int B, int T, int NH, int NKV, int hs, int pos0)
{
    const int half = hs / 2;
    const size_t W = (size_t)(NH + 2 * NKV) * hs;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH + NKV; h++) { /* the q heads, then the k heads */
                double *x = qkv + ((size_t)b * T + t) * W + (size_t)h * hs;
                const double *c = cos + (size_t)(pos0 + t) * half, *s = sin + (size_t)(pos0 + t) * half;
                for (int i = 0; i < half; i++) {
                    double x0 = x[i], x1 = x[i + half];
                    x[i] = x0 * c[i] - x1 * s[i];
                    x[i + half] = x1 * c[i] + x0 * s[i];
                }
            }
}

void ref_swiglu(double *out, const double *gu, int N, int H)
{
    for (int n = 0; n < N; n++)
        for (int i = 0; i < H; i++) {
            double g = gu[(size_t)n * 2 * H + i], u = gu[(size_t)n * 2 * H + H + i];
            out[(size_t)n * H + i] = g / (1.0 + exp(-g)) * u;
        }
}

void ref_gelu(double *out, const double *inp, int n)
{
    const double k = sqrt(2.0 / M_PI);
    for (int i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
}

void ref_attention_row(double *out_row, const double *qkv, int b, int t, int h, int T, int C, int NH, int NKV)
{
    int hs = C / NH, kvh = h / (NH / NKV);
    size_t W = (size_t)C + 2 * (size_t)NKV * hs;
    double scale = 1.0 / sqrt((double)hs);
    const double *q = qkv + ((size_t)b * T + t) * W + (size_t)h * hs;
    double *s = malloc(sizeof(double) * (size_t)(t + 1));
    double mx = -INFINITY;
    for (int j = 0; j <= t; j++) {
        const double *k = qkv + ((size_t)b * T + j) * W + C + (size_t)kvh * hs;
        double d = 0;
        for (int i = 0; i < hs; i++)
            d += q[i] * k[i];
        s[j] = d * scale;
        if (s[j] > mx)
            mx = s[j];
    }
    double sum = 0;
    for (int j = 0; j <= t; j++) {
        s[j] = exp(s[j] - mx);
        sum += s[j];
    }
    for (int i = 0; i < hs; i++)
        out_row[i] = 0;
    for (int j = 0; j <= t; j++) {
        const double *v = qkv + ((size_t)b * T + j) * W + C + (size_t)(NKV + kvh) * hs;
        for (int i = 0; i < hs; i++)
            out_row[i] += s[j] / sum * v[i];
    }
    free(s);
}

void ref_attention(double *out, const double *qkv, int B, int T, int C, int NH, int NKV)
{
    int hs = C / NH;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++)
                ref_attention_row(out + ((size_t)b * T + t) * C + (size_t)h * hs, qkv, b, t, h, T, C, NH, NKV);
}

void ref_embedding(double *out, const int32_t *tokens, const double *wte, const double *wpe, int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                out[((size_t)b * T + t) * C + c] = wte[(size_t)tokens[b * T + t] * C + c] + wpe[(size_t)t * C + c];
}

void ref_crossentropy(double *losses, const double *logits, const int32_t *targets, int N, int V)
{
    for (int n = 0; n < N; n++) {
        const double *x = logits + (size_t)n * V;
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++)
            if (x[i] > mx)
                mx = x[i];
        for (int i = 0; i < V; i++)
            sum += exp(x[i] - mx);
        losses[n] = targets[n] >= 0 ? log(sum) + mx - x[targets[n]] : 0.0;
    }
}

void ref_embedding_range(double *out, const int32_t *tokens, const double *wte, const double *wpe, int v0, int V,
                         int B, int T, int C)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int32_t tok = tokens[b * T + t];
            int in = tok >= v0 && tok < v0 + V;
            for (int c = 0; c < C; c++)
                out[((size_t)b * T + t) * C + c] = (in ? wte[(size_t)(tok - v0) * C + c] : 0.0) +
                                                   (wpe ? wpe[(size_t)t * C + c] : 0.0);
        }
}

void ref_xent_stats(double *stats, const double *logits, const int32_t *targets, int N, int V, int v0, int v1,
                    int n_valid)
{
    for (int n = 0; n < N; n++) {
        const double *x = logits + (size_t)n * V;
        double *st = stats + (size_t)n * 5;
        double mx = -INFINITY, sum = 0, best = -INFINITY;
        int best_j = -1;
        for (int i = v0; i < v1; i++)
            if (x[i] > mx)
                mx = x[i];
        for (int i = v0; i < v1; i++)
            sum += exp(x[i] - mx);
        for (int i = v0; i < v1 && i < n_valid; i++)
            if (best_j < 0 || x[i] > best) {
                best = x[i];
                best_j = i;
            }
        st[0] = mx;
        st[1] = sum;
        st[2] = targets[n] >= v0 && targets[n] < v1 ? x[targets[n]] : 0.0;
        st[3] = best;
        st[4] = best_j;
    }
}

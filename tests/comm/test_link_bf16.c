/* tests/comm/test_link_bf16.c — the "host memory" link kind with pt_link_opts.bf16_messages
 * (comm.link_bf16): 2 ranks on the cpu backend, started by the launcher (comm_launch --nproc 2).
 *
 *  - A link created with bf16_messages = 1 must be "host memory" and say "stage messages as bf16"
 *    in pt_link_describe. Rank 0 sends messages of n floats (n = 1, 7, 17, 1000, 1000003, then 7
 *    again: the one staging buffer and receive index reused) through pt_link_send_begin /
 *    pt_link_send_wait; the floats are random and mostly not bf16 values, with ties, NaNs
 *    (signalling ones too), infinities, subnormals and signed zeros among them. Its source must
 *    be unchanged afterwards. Rank 1 receives with pt_link_recv_post / pt_link_recv_wait into a
 *    buffer of n floats filled with garbage (and a guard float past it) and checks every element
 *    equals pt_bf16_round(src) bitwise (both ranks regenerate src from the seed), the guard kept.
 *  - The bytes on the wire: every message from 8 KiB takes pt_comm's direct path (the link's
 *    staging buffers are pt_comm_buf_alloc memory, the peer is on this host; PT_COMM_DIRECT_MIN
 *    is set to 4096 by the ctest), whose counter pt_comm_direct_bytes gives the message's size:
 *    2n bytes for the 1000003-float message with the flag, on both ranks.
 *  - The same job with a link created with bf16_messages = 0: no "bf16" in the description, the
 *    exact floats delivered, 4n bytes counted.
 * Exit status 0 = pass; a failure prints the rank, n, element, input, want and got bits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/bf16.h"
#include "pipetrain/comm.h"
#include "pipetrain/link.h"
#include "pipetrain/timeutil.h"

static int g_rank;

#define CHECK(cond, ...)                                                                                            \
    do {                                                                                                            \
        if (!(cond)) {                                                                                              \
            fprintf(stderr, "FAIL rank %d: ", g_rank);                                                              \
            fprintf(stderr, __VA_ARGS__);                                                                           \
            fprintf(stderr, "\n");                                                                                  \
            return 1;                                                                                               \
        }                                                                                                           \
    } while (0)
#define OK(call) CHECK((call) == PT_OK, "%s: %s", #call, pt_last_error())

#define NBIG ((size_t)1000003)
#define KIND_SEND_ACT 4 /* pt_comm matches SEND_ACT with RECV_ACT (schedule.h's order) */
#define KIND_RECV_ACT 5

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* Element i of message `seed`: mostly activations-like floats in [-8, 8) with all 23 mantissa
 * bits random (so not bf16 values); every 16th a raw random bit pattern; a few fixed specials. */
static float src_value(uint64_t seed, size_t i)
{
    static const uint32_t special[] = { 0x3f808000u, 0x3f818000u, 0xbf818000u, 0x7f7fffffu, 0x80000000u,
                                        0x00000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
                                        0xff80ffffu, 0x7fffffffu, 0x00400000u, 0x00018000u, 0x807fffffu };
    const size_t n_special = sizeof special / sizeof special[0];
    uint64_t r = mix(seed * 0x100000001b3ull + i);
    if (i % 97 == 5)
        return from_bits(special[(i / 97) % n_special]);
    if ((r & 15) == 0)
        return from_bits((uint32_t)(r >> 32));
    return (float)((double)(r >> 11) / 9007199254740992.0 * 16.0 - 8.0);
}

static void fill_src(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = src_value(seed, i);
}

/* One message of n floats from rank 0 to rank 1 on link l; bf16: what rank 1 must get is the
 * rounded source. Checks the direct-path byte count when want_direct is not 0. */
static int one_message(pt_comm *c, pt_link *l, float *buf, size_t n, uint64_t seed, int bf16, uint64_t want_direct,
                       int64_t step)
{
    const int64_t dl = pt_deadline_after_ms(60000);
    const uint64_t d0 = pt_comm_direct_bytes(c);
    if (g_rank == 0) {
        fill_src(buf, n, seed);
        pt_msg_id id = { KIND_SEND_ACT, 0, 0, step };
        OK(pt_link_send_begin(l, 0, buf, n * sizeof(float), 1, &id, 0));
        OK(pt_link_send_wait(l, 0, dl, "the test message to rank 1"));
        for (size_t i = 0; i < n; i++) {
            float w = src_value(seed, i);
            CHECK(memcmp(&buf[i], &w, 4) == 0, "n %zu: the sender's source element %zu changed: 0x%08x, was 0x%08x",
                  n, i, bits_of(buf[i]), bits_of(w));
        }
    } else {
        memset(buf, 0xa5, n * sizeof(float)); /* garbage, and a NaN-free pattern unlike any wanted value */
        const uint32_t guard = 0x5a5a1234u;
        memcpy(&buf[n], &guard, 4);
        pt_msg_id rid = { KIND_RECV_ACT, 0, 0, step };
        OK(pt_link_recv_post(l, 0, buf, n * sizeof(float), 0, &rid, 0, dl));
        OK(pt_link_recv_wait(l, 0, dl, "the test message from rank 0"));
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < n; i++) {
            float s = src_value(seed, i), w = bf16 ? pt_bf16_round(s) : s;
            if (memcmp(&buf[i], &w, 4) != 0 && bad++ == 0)
                first = i;
        }
        CHECK(bad == 0, "n %zu (%s): %zu elements wrong; first element %zu: sent 0x%08x, want 0x%08x, got 0x%08x", n,
              bf16 ? "bf16 messages" : "fp32 messages", bad, first, bits_of(src_value(seed, first)),
              bits_of(bf16 ? pt_bf16_round(src_value(seed, first)) : src_value(seed, first)), bits_of(buf[first]));
        CHECK(memcmp(&buf[n], &guard, 4) == 0, "n %zu: the receive wrote past its %zu floats (0x%08x)", n, n,
              bits_of(buf[n]));
    }
    if (want_direct)
        CHECK(pt_comm_direct_bytes(c) - d0 == want_direct,
              "n %zu (%s): %llu bytes went by the direct path, want %llu (the message's size on the wire)", n,
              bf16 ? "bf16 messages" : "fp32 messages", (unsigned long long)(pt_comm_direct_bytes(c) - d0),
              (unsigned long long)want_direct);
    return 0;
}

static int run(pt_comm *c, const pt_backend *be, pt_stream *s, float *buf, int bf16)
{
    pt_link_channel ch = { .sender = 0, .receiver = 1, .is_grad = 0 };
    pt_link_opts lo = { .comm = c, .be = be, .compute = s, .msg_bytes = NBIG * sizeof(float), .n_send_bufs = 1,
                        .n_recv_ids = 1, .n_recv_bufs = 1, .channels = &ch, .n_channels = 1, .timeout_ms = 60000,
                        .bf16_messages = bf16 };
    pt_link *l = NULL;
    OK(pt_link_create(&lo, &l));
    const char *d = pt_link_describe(l);
    CHECK(strncmp(d, "host memory", 11) == 0, "the link is \"%s\", want host memory (cpu backend)", d);
    if (bf16)
        CHECK(strstr(d, "stage messages as bf16") != NULL, "bf16_messages = 1, but the description \"%s\" does not "
              "say \"stage messages as bf16\"", d);
    else
        CHECK(strstr(d, "bf16") == NULL, "bf16_messages = 0, but the description \"%s\" names bf16", d);
    if (g_rank == 0)
        printf("link (bf16_messages %d): %s\n", bf16, d);
    const size_t ns[] = { 1, 7, 17, 1000, NBIG, 7 };
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        uint64_t want = ns[k] == NBIG ? ns[k] * (bf16 ? 2 : 4) : 0;
        if (one_message(c, l, buf, ns[k], 1000 + 10 * (uint64_t)bf16 + k, bf16, want, (int64_t)(100 * bf16 + k)))
            return 1;
    }
    OK(pt_comm_barrier(c, NULL, pt_deadline_after_ms(60000)));
    pt_link_destroy(l, 0);
    if (g_rank == 1)
        printf("ok   rank 1: bf16_messages %d: n 1, 7, 17, 1000, %zu, 7 received as %s; %zu floats moved %zu bytes by "
               "the direct path\n",
               bf16, NBIG, bf16 ? "pt_bf16_round(src) bitwise" : "the exact floats", NBIG, NBIG * (bf16 ? 2 : 4));
    return 0;
}

int main(void)
{
    const char *dm = getenv("PT_COMM_DIRECT_MIN");
    if (dm == NULL || atol(dm) <= 0 || (size_t)atol(dm) > 2 * NBIG) {
        fprintf(stderr, "test_link_bf16: set PT_COMM_DIRECT_MIN=4096 (the byte count is read from the direct path)\n");
        return 2;
    }
    pt_comm *c = NULL;
    if (pt_comm_create(NULL, &c) != PT_OK) {
        fprintf(stderr, "test_link_bf16: %s\n", pt_last_error());
        return 1;
    }
    g_rank = pt_comm_rank(c);
    CHECK(pt_comm_size(c) == 2, "run with 2 ranks (comm_launch --nproc 2), not %d", pt_comm_size(c));
    const pt_backend *be = NULL;
    OK(pt_backend_get("cpu", &be));
    pt_stream *s = NULL;
    OK(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &s));
    float *buf = malloc((NBIG + 1) * sizeof(float));
    CHECK(buf != NULL, "out of memory");
    int rc = run(c, be, s, buf, 1);
    if (rc == 0)
        rc = run(c, be, s, buf, 0);
    free(buf);
    be->stream_destroy(s);
    pt_comm_destroy(c);
    return rc;
}

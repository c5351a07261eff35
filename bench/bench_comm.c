/* `pipetrain bench comm [--provider NAME] [--json] [--max-size BYTES]`: point-to-point latency
 * and bandwidth per message size between two ranks it starts itself (through pt_launch), for
 * each provider and for three paths, next to single-thread memcpy bandwidth measured in the
 * same run:
 *   tagged  malloc'd buffers, PT_COMM_RMA_MIN and PT_COMM_DIRECT_MIN off: the provider's messages
 *   rma     malloc'd buffers, PT_COMM_RMA_MIN=1: the RMA-read rendezvous from 48 B
 *   direct  buffers from pt_comm_buf_alloc, PT_COMM_DIRECT_MIN=1: the receiver copies out of the
 *           sender's shared memory from 48 B (smaller messages stay tagged); the run fails
 *           rather than print this label when no byte went that way
 *
 * Latency: half the round trip of a ping-pong, best of a few rounds. Bandwidth: rank 0 streams
 * a window of messages, rank 1 answers each window with one byte; bytes / time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/comm.h"
#include "pipetrain/timeutil.h"

#define KIND_SEND_ACT 4

static size_t next_size(size_t s) { return s * 4; }

/* messages in flight per bandwidth window */
static int window_of(size_t bytes) { return bytes >= (64u << 20) ? 2 : 8; }

static void libc_memcpy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }

/* Single-thread bandwidth of `copy` (glibc's memcpy, or pt_comm_memcpy: the direct path's copy)
 * from src to dst, best of three rounds. */
static double copy_GBps(void (*copy)(void *, const void *, size_t), void *dst, const void *src, size_t bytes)
{
    size_t reps = bytes >= (64u << 20) ? 3 : (size_t)((256u << 20) / bytes) + 1;
    if (reps > 100000)
        reps = 100000;
    double best = 0;
    for (int round = 0; round < 3; round++) {
        int64_t t0 = pt_now_ns();
        for (size_t i = 0; i < reps; i++) {
            copy(dst, src, bytes);
            __asm__ volatile("" ::"r"(dst) : "memory"); /* keep every copy */
        }
        double s = pt_seconds_between(t0, pt_now_ns());
        double gbps = (double)bytes * (double)reps / s / 1e9;
        if (gbps > best)
            best = gbps;
    }
    return best;
}

static pt_status xfer(pt_comm *c, int send, int peer, int mb, void *buf, size_t bytes, int64_t dl)
{
    pt_msg_id id = { KIND_SEND_ACT, mb & 0xffff, 0, 0 };
    pt_comm_req *r;
    PT_CHECK(send ? pt_comm_isend(c, peer, &id, buf, bytes, &r) : pt_comm_irecv(c, peer, &id, buf, bytes, &r));
    return pt_comm_wait(c, r, dl);
}

/* One rank of the measurement; rank 0 writes "bytes latency_us GBps" lines to `out`. */
static void *bench_alloc(int shared, size_t bytes)
{
    void *p = NULL;
    if (shared)
        return pt_comm_buf_alloc(bytes, &p) == PT_OK ? p : NULL;
    return malloc(bytes);
}

static void bench_free(int shared, void *p)
{
    if (shared)
        pt_comm_buf_free(p);
    else
        free(p);
}

#define MAX_SIZES 40

/* The message sizes: the comma-separated list `text` (each as PT_OPT_BYTES reads it), or, when
 * it is NULL, 8 B, 32 B, ... (x4) up to max_size, which is always the last. */
static pt_status size_list(const char *text, size_t max_size, size_t *sizes, int *n)
{
    *n = 0;
    if (!text) {
        for (size_t b = 8; *n < MAX_SIZES; b = next_size(b)) {
            sizes[(*n)++] = b < max_size ? b : max_size;
            if (b >= max_size)
                break;
        }
        return PT_OK;
    }
    char buf[512];
    if (strlen(text) >= sizeof buf)
        return pt_fail(PT_EINVAL, "--sizes: the list is too long");
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_SIZES)
            return pt_fail(PT_EINVAL, "--sizes: at most %d sizes", MAX_SIZES);
        PT_CHECK(pt_args_parse_bytes(tok, &sizes[*n]));
        if (sizes[*n] < 1)
            return pt_fail(PT_EINVAL, "--sizes: %s is not a message size (at least 1 byte)", tok);
        (*n)++;
    }
    if (*n == 0)
        return pt_fail(PT_EINVAL, "--sizes: give at least one size, e.g. 16M,32M,64M,256M");
    return PT_OK;
}

static pt_status worker(const size_t *sizes, int n_sizes, int shared, FILE *out)
{
    size_t max_size = 0;
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] > max_size)
            max_size = sizes[i];
    pt_comm *c;
    PT_CHECK(pt_comm_create(NULL, &c));
    pt_status st = PT_OK;
    int me = pt_comm_rank(c), peer = 1 - me;
    uint8_t *sbuf = NULL, *rbuf = NULL, ack = 0;
    if (pt_comm_size(c) != 2) {
        st = pt_fail(PT_EINVAL, "bench comm: the worker needs exactly 2 ranks, got %d", pt_comm_size(c));
        goto out;
    }
    /* the receives of a window are outstanding together, so each gets its own buffer */
    size_t pool = 0;
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] * (size_t)window_of(sizes[i]) > pool)
            pool = sizes[i] * (size_t)window_of(sizes[i]);
    sbuf = bench_alloc(shared, max_size);
    rbuf = bench_alloc(shared, pool);
    if (!sbuf || !rbuf) {
        st = pt_fail(PT_ENOMEM, "bench comm: cannot allocate %zu + %zu bytes", max_size, pool);
        goto out;
    }
    memset(sbuf, 1, max_size);
    memset(rbuf, 0, pool);
    int64_t tmo = pt_comm_timeout_ms(c);
    int mb = 0;
    for (int si = 0; si < n_sizes; si++) {
        size_t bytes = sizes[si];
        /* latency: ping-pong */
        int iters = bytes <= 65536 ? 2000 : bytes <= (4u << 20) ? 50 : 4;
        double best_rtt = 1e30;
        for (int round = 0; round < 3 && st == PT_OK; round++) {
            PT_TRY(pt_comm_barrier(c, NULL, pt_deadline_after_ms(tmo)), out);
            int64_t t0 = pt_now_ns();
            for (int i = 0; i < iters; i++) {
                int64_t dl = pt_deadline_after_ms(tmo);
                if (me == 0) {
                    PT_TRY(xfer(c, 1, peer, mb, sbuf, bytes, dl), out);
                    PT_TRY(xfer(c, 0, peer, mb + 1, rbuf, bytes, dl), out);
                } else {
                    PT_TRY(xfer(c, 0, peer, mb, rbuf, bytes, dl), out);
                    PT_TRY(xfer(c, 1, peer, mb + 1, sbuf, bytes, dl), out);
                }
                mb = (mb + 2) & 0xfffe;
            }
            double rtt = pt_seconds_between(t0, pt_now_ns()) / iters;
            if (rtt < best_rtt)
                best_rtt = rtt;
        }
        /* bandwidth: windows of W messages, acknowledged by one byte */
        int W = window_of(bytes);
        size_t total = bytes >= (64u << 20) ? 2 * bytes : (512u << 20);
        int windows = (int)(total / (bytes * (size_t)W));
        if (windows < 2)
            windows = 2;
        if (windows > 400)
            windows = 400;
        double best_bw = 0;
        for (int round = 0; round < 2 && st == PT_OK; round++) {
            PT_TRY(pt_comm_barrier(c, NULL, pt_deadline_after_ms(tmo)), out);
            int64_t t0 = pt_now_ns();
            for (int w = 0; w < windows; w++) {
                int64_t dl = pt_deadline_after_ms(tmo);
                pt_comm_req *r[8];
                pt_msg_id id = { KIND_SEND_ACT, 0, 1, (int64_t)w };
                for (int k = 0; k < W; k++) {
                    id.microbatch = k;
                    st = me == 0 ? pt_comm_isend(c, peer, &id, sbuf, bytes, &r[k])
                                 : pt_comm_irecv(c, peer, &id, rbuf + (size_t)k * bytes, bytes, &r[k]);
                    if (st != PT_OK) {
                        pt_comm_waitall(c, r, k, pt_now_ns());
                        goto out;
                    }
                }
                PT_TRY(pt_comm_waitall(c, r, W, dl), out);
                PT_TRY(xfer(c, me == 1, peer, 60000 + (w & 1), &ack, 1, dl), out);
            }
            double s = pt_seconds_between(t0, pt_now_ns());
            double gbps = (double)bytes * W * windows / s / 1e9;
            if (gbps > best_bw)
                best_bw = gbps;
        }
        if (me == 0 && out)
            fprintf(out, "%zu %.3f %.4f\n", bytes, best_rtt / 2 * 1e6, best_bw);
    }
    if (me == 0 && out)
        fprintf(out, "direct %llu\n", (unsigned long long)pt_comm_direct_bytes(c));
out:
    bench_free(shared, sbuf);
    bench_free(shared, rbuf);
    pt_comm_destroy(c);
    return st;
}

int pt_bench_comm(int argc, char **argv)
{
    const char *provider = NULL, *out_path = NULL, *sizes_text = NULL;
    int json = 0, worker_mode = 0, shared = 0;
    size_t max_size = (size_t)256 << 20;
    pt_opt opts[] = {
        { "provider", PT_OPT_STRING, &provider, "NAME", "libfabric provider to measure (default: shm and tcp)", 0 },
        { "max-size", PT_OPT_BYTES, &max_size, "BYTES", "largest message (sizes go 8 B, x4, ... up to it)", 0 },
        { "sizes", PT_OPT_STRING, &sizes_text, "LIST", "comma-separated message sizes instead (e.g. 16M,32M,64M,256M)",
          0 },
        { "json", PT_OPT_FLAG, &json, NULL, "print one JSON object per line", 0 },
        { "worker", PT_OPT_FLAG, &worker_mode, NULL, "internal: run as one of the two measuring ranks", 0 },
        { "out", PT_OPT_STRING, &out_path, "FILE", "internal: where rank 0 of --worker writes its results", 0 },
        { "shared", PT_OPT_FLAG, &shared, NULL, "internal: --worker's buffers come from pt_comm_buf_alloc", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench comm [--provider NAME] [--max-size BYTES | --sizes LIST] [--json]",
                         "Point-to-point latency and bandwidth between two local ranks per message size, for each\n"
                         "provider and for the tagged, RMA-read and direct (shared-memory) paths, next to memcpy\n"
                         "bandwidth measured in the same run.",
                         opts, (int)(sizeof opts / sizeof opts[0]), NULL };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (max_size < 8)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--max-size must be at least 8 bytes"));
    int n_sizes = 0;
    size_t sizes[MAX_SIZES];
    double mcpy[MAX_SIZES], ccpy[MAX_SIZES];
    st = size_list(sizes_text, max_size, sizes, &n_sizes);
    if (st != PT_OK)
        return pt_cli_finish(st);
    max_size = 0;
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] > max_size)
            max_size = sizes[i];
    if (worker_mode) {
        FILE *f = NULL;
        if (out_path && getenv("RANK") && atoi(getenv("RANK")) == 0 && !(f = fopen(out_path, "w")))
            return pt_cli_finish(pt_fail(PT_EIO, "cannot write %s", out_path));
        st = worker(sizes, n_sizes, shared, f);
        if (f)
            fclose(f);
        return pt_cli_finish(st);
    }

    /* memcpy reference, same sizes, same run: measured before the ranks start and again after
     * each provider and path; the best figure is the one reported (the ratio errs low) */
    uint8_t *a = malloc(max_size), *b = malloc(max_size);
    if (!a || !b) {
        free(a);
        free(b);
        return pt_cli_finish(pt_fail(PT_ENOMEM, "cannot allocate 2 x %zu bytes for memcpy", max_size));
    }
    memset(a, 1, max_size);
    memset(b, 2, max_size);
    for (int i = 0; i < n_sizes; i++) {
        mcpy[i] = copy_GBps(libc_memcpy, b, a, sizes[i]);
        ccpy[i] = copy_GBps(pt_comm_memcpy, b, a, sizes[i]);
    }

    const char *provs[2] = { "shm", "tcp" };
    int n_provs = 2;
    if (provider) {
        provs[0] = provider;
        n_provs = 1;
    }
    char tmp[] = "/tmp/pt-bench-comm-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(a);
        free(b);
        return pt_cli_finish(pt_fail(PT_EIO, "cannot create a temporary file in /tmp"));
    }
    close(fd);
    char sizes_arg[MAX_SIZES * 24] = "";
    for (int i = 0; i < n_sizes; i++)
        snprintf(sizes_arg + strlen(sizes_arg), sizeof sizes_arg - strlen(sizes_arg), "%s%zu", i ? "," : "", sizes[i]);
    /* rows are kept and printed at the end, against the final (best) memcpy figures */
    struct row { int prov, path, size; double lat, bw; } rows[2 * 3 * MAX_SIZES];
    int n_rows = 0;
    int rc = 0;
    static const char *const path_names[] = { "tagged", "rma", "direct" };
    for (int pi = 0; pi < n_provs && rc == 0; pi++) {
        for (int path = 0; path < 3 && rc == 0; path++) {
            setenv("PT_FABRIC_PROVIDER", provs[pi], 1);
            setenv("PT_COMM_RMA_MIN", path == 1 ? "1" : "off", 1);
            setenv("PT_COMM_DIRECT_MIN", path == 2 ? "1" : "off", 1);
            char *args[] = { "/proc/self/exe", "bench", "comm", "--worker", "--sizes", sizes_arg, "--out", tmp,
                             path == 2 ? "--shared" : NULL, NULL };
            pt_launch_opts lo = { .nproc = 2, .nodes = 1, .node_rank = 0, .master = NULL };
            int code = 0;
            fflush(stdout);
            st = pt_launch(&lo, args, &code);
            if (st != PT_OK) {
                fprintf(stderr, "pipetrain bench comm: %s on %s (%s path): %s\n", "measurement failed", provs[pi],
                        path_names[path], pt_last_error());
                rc = 1;
                break;
            }
            for (int i = 0; i < n_sizes; i++) {
                double m = copy_GBps(libc_memcpy, b, a, sizes[i]), k = copy_GBps(pt_comm_memcpy, b, a, sizes[i]);
                if (m > mcpy[i])
                    mcpy[i] = m;
                if (k > ccpy[i])
                    ccpy[i] = k;
            }
            FILE *f = fopen(tmp, "r");
            int first_row = n_rows;
            size_t bytes;
            double lat, bw;
            while (f && fscanf(f, "%zu %lf %lf", &bytes, &lat, &bw) == 3)
                for (int i = 0; i < n_sizes; i++)
                    if (sizes[i] == bytes && n_rows < (int)(sizeof rows / sizeof rows[0])) {
                        rows[n_rows++] = (struct row){ pi, path, i, lat, bw };
                        break;
                    }
            unsigned long long direct = 0;
            int have_direct = f && fscanf(f, " direct %llu", &direct) == 1;
            if (f)
                fclose(f);
            if (path == 2 && (!have_direct || direct == 0)) {
                fprintf(stderr, "pipetrain bench comm: on %s no message took the direct path (the ranks could not "
                                "map each other's buffers); not reporting tagged messages under that label\n",
                        provs[pi]);
                n_rows = first_row;
                rc = 1;
            }
        }
    }
    /* memcpy: glibc's, the reference of the targets; copy: pt_comm_memcpy, what the direct path
     * runs, alone in one thread (the transport's own cost shows against it) */
    if (!json)
        printf("%-12s %-7s %12s %12s %10s %12s %9s %10s %8s\n", "provider", "path", "bytes", "latency_us", "GB/s",
               "memcpy_GB/s", "of_memcpy", "copy_GB/s", "of_copy");
    for (int i = 0; i < n_rows; i++) {
        const struct row *w = &rows[i];
        double m = mcpy[w->size], k = ccpy[w->size];
        if (json)
            printf("{\"bench\":\"comm\",\"provider\":\"%s\",\"path\":\"%s\",\"bytes\":%zu,\"latency_us\":%.3f,"
                   "\"bandwidth_GBps\":%.4f,\"memcpy_GBps\":%.4f,\"of_memcpy\":%.3f,\"copy_GBps\":%.4f,"
                   "\"of_copy\":%.3f}\n",
                   provs[w->prov], path_names[w->path], sizes[w->size], w->lat, w->bw, m, m > 0 ? w->bw / m : 0.0, k,
                   k > 0 ? w->bw / k : 0.0);
        else
            printf("%-12s %-7s %12zu %12.2f %10.3f %12.3f %9.3f %10.3f %8.3f\n", provs[w->prov], path_names[w->path],
                   sizes[w->size], w->lat, w->bw, m, m > 0 ? w->bw / m : 0.0, k, k > 0 ? w->bw / k : 0.0);
    }
    fflush(stdout);
    unlink(tmp);
    free(a);
    free(b);
    unsetenv("PT_COMM_RMA_MIN");
    unsetenv("PT_COMM_DIRECT_MIN");
    return rc;
}

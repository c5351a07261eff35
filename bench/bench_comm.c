/* `pipetrain bench comm [--provider NAME] [--json] [--max-size BYTES]`: point-to-point latency
 * and bandwidth per message size between two ranks it starts itself (through pt_launch), for
 * each provider and for the tagged and RMA-write paths, next to single-thread memcpy
 * bandwidth measured in the same run.
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

static double memcpy_GBps(void *dst, const void *src, size_t bytes)
{
    size_t reps = bytes >= (64u << 20) ? 3 : (size_t)((256u << 20) / bytes) + 1;
    if (reps > 100000)
        reps = 100000;
    double best = 0;
    for (int round = 0; round < 3; round++) {
        int64_t t0 = pt_now_ns();
        for (size_t i = 0; i < reps; i++) {
            memcpy(dst, src, bytes);
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
static pt_status worker(size_t max_size, FILE *out)
{
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
    for (size_t b = 8;; b = next_size(b)) {
        size_t sz = b < max_size ? b : max_size;
        size_t need = sz * (size_t)window_of(sz);
        if (need > pool)
            pool = need;
        if (b >= max_size)
            break;
    }
    sbuf = malloc(max_size);
    rbuf = malloc(pool);
    if (!sbuf || !rbuf) {
        st = pt_fail(PT_ENOMEM, "bench comm: cannot allocate %zu + %zu bytes", max_size, pool);
        goto out;
    }
    memset(sbuf, 1, max_size);
    memset(rbuf, 0, pool);
    int64_t tmo = pt_comm_timeout_ms(c);
    int mb = 0;
    for (size_t bytes = 8; bytes <= max_size; bytes = bytes < max_size && next_size(bytes) > max_size ? max_size
                                                                                                  : next_size(bytes)) {
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
        if (bytes == max_size)
            break;
    }
out:
    free(sbuf);
    free(rbuf);
    pt_comm_destroy(c);
    return st;
}

int pt_bench_comm(int argc, char **argv)
{
    const char *provider = NULL, *out_path = NULL;
    int json = 0, worker_mode = 0;
    size_t max_size = (size_t)256 << 20;
    pt_opt opts[] = {
        { "provider", PT_OPT_STRING, &provider, "NAME", "libfabric provider to measure (default: shm and tcp)", 0 },
        { "max-size", PT_OPT_BYTES, &max_size, "BYTES", "largest message (sizes go 8 B, x4, ... up to it)", 0 },
        { "json", PT_OPT_FLAG, &json, NULL, "print one JSON object per line", 0 },
        { "worker", PT_OPT_FLAG, &worker_mode, NULL, "internal: run as one of the two measuring ranks", 0 },
        { "out", PT_OPT_STRING, &out_path, "FILE", "internal: where rank 0 of --worker writes its results", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench comm [--provider NAME] [--max-size BYTES] [--json]",
                         "Point-to-point latency and bandwidth between two local ranks per message size, for each\n"
                         "provider and for the tagged and RMA-write paths, next to memcpy bandwidth.",
                         opts, (int)(sizeof opts / sizeof opts[0]), NULL };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (max_size < 8)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--max-size must be at least 8 bytes"));
    if (worker_mode) {
        FILE *f = NULL;
        if (out_path && getenv("RANK") && atoi(getenv("RANK")) == 0 && !(f = fopen(out_path, "w")))
            return pt_cli_finish(pt_fail(PT_EIO, "cannot write %s", out_path));
        st = worker(max_size, f);
        if (f)
            fclose(f);
        return pt_cli_finish(st);
    }

    /* memcpy reference, same sizes, same run */
    int n_sizes = 0;
    size_t sizes[40];
    double mcpy[40];
    for (size_t b = 8; n_sizes < 40; b = next_size(b)) {
        sizes[n_sizes++] = b < max_size ? b : max_size;
        if (b >= max_size)
            break;
    }
    uint8_t *a = malloc(max_size), *b = malloc(max_size);
    if (!a || !b) {
        free(a);
        free(b);
        return pt_cli_finish(pt_fail(PT_ENOMEM, "cannot allocate 2 x %zu bytes for memcpy", max_size));
    }
    memset(a, 1, max_size);
    memset(b, 2, max_size);
    for (int i = 0; i < n_sizes; i++)
        mcpy[i] = memcpy_GBps(b, a, sizes[i]);
    free(a);
    free(b);

    const char *provs[2] = { "shm", "tcp" };
    int n_provs = 2;
    if (provider) {
        provs[0] = provider;
        n_provs = 1;
    }
    char tmp[] = "/tmp/pt-bench-comm-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        return pt_cli_finish(pt_fail(PT_EIO, "cannot create a temporary file in /tmp"));
    close(fd);
    char max_arg[32];
    snprintf(max_arg, sizeof max_arg, "%zu", max_size);
    if (!json)
        printf("%-12s %-7s %12s %12s %12s %12s\n", "provider", "path", "bytes", "latency_us", "GB/s", "memcpy_GB/s");
    int rc = 0;
    for (int pi = 0; pi < n_provs && rc == 0; pi++) {
        for (int path = 0; path < 2 && rc == 0; path++) {
            setenv("PT_FABRIC_PROVIDER", provs[pi], 1);
            setenv("PT_COMM_RMA_MIN", path ? "1" : "off", 1);
            char *args[] = { "/proc/self/exe", "bench", "comm", "--worker", "--max-size", max_arg, "--out", tmp,
                             NULL };
            pt_launch_opts lo = { .nproc = 2, .nodes = 1, .node_rank = 0, .master = NULL };
            int code = 0;
            fflush(stdout);
            st = pt_launch(&lo, args, &code);
            if (st != PT_OK) {
                fprintf(stderr, "pipetrain bench comm: %s on %s (%s path): %s\n", "measurement failed", provs[pi],
                        path ? "rma" : "tagged", pt_last_error());
                rc = 1;
                break;
            }
            FILE *f = fopen(tmp, "r");
            size_t bytes;
            double lat, bw;
            while (f && fscanf(f, "%zu %lf %lf", &bytes, &lat, &bw) == 3) {
                double m = 0;
                for (int i = 0; i < n_sizes; i++)
                    if (sizes[i] == bytes)
                        m = mcpy[i];
                if (json)
                    printf("{\"bench\":\"comm\",\"provider\":\"%s\",\"path\":\"%s\",\"bytes\":%zu,\"latency_us\":%.3f,"
                           "\"bandwidth_GBps\":%.4f,\"memcpy_GBps\":%.4f,\"of_memcpy\":%.3f}\n",
                           provs[pi], path ? "rma" : "tagged", bytes, lat, bw, m, m > 0 ? bw / m : 0.0);
                else
                    printf("%-12s %-7s %12zu %12.2f %12.3f %12.3f\n", provs[pi], path ? "rma" : "tagged", bytes, lat,
                           bw, m);
            }
            if (f)
                fclose(f);
            fflush(stdout);
        }
    }
    unlink(tmp);
    unsetenv("PT_COMM_RMA_MIN");
    return rc;
}

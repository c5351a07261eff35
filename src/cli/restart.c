/* Automatic restarts of a training job (`train --max-restarts N`, `launch --max-restarts N --
 * pipetrain train ...`): see cli.h, pt_cli_launch_restarting.
 *
 * One node: this launcher restarts its ranks. Several nodes: one agent per node (each node's
 * launcher). Node 0's agent leads: it listens on the master port + 1, every other agent connects
 * and says hello, and then, attempt by attempt (the attempt number is the generation):
 *   leader -> GO(g, resume)     every agent starts its ranks with PT_RESTART_COUNT = g
 *   agent  -> DONE(g, status)   its ranks all ended: 0 ok, 1 one failed (which, how), 2 stopped
 *   leader -> STOP(g)           the job failed elsewhere: kill your ranks now
 *   leader -> EXIT(code)        the end: every agent exits with code
 * The leader sends GO(g + 1) only after every agent's DONE(g), that is after every rank of attempt g
 * is reaped, and the ranks' rendezvous refuses a hello of another attempt (bootstrap.c), so a rank
 * of an old generation can never join a new one. An agent whose connection drops is a node that
 * dropped out: the leader waits --rejoin-timeout for that node's agent to connect again (a node
 * that came back, its launcher started again with the same command), then restarts; an agent that
 * loses the leader kills its ranks and ends.
 * Elastic shrink (`--nodes MIN:MAX`): a node that does not rejoin in time is left out when at least
 * MIN nodes remain: the others are renumbered (GO carries each agent's node rank and the count) and
 * every node's train command gets --dp D' = D x N'/N and --micro-batches M' = M x D / D', so a step
 * still takes M x B x D sequences; the restart resumes from the newest checkpoint, which reshards. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/timeutil.h"

#define MAX_FAILURES 64
#define SAME_STEP_LIMIT 3 /* failures at one step: the first run and two restarts */

typedef struct failure {
    pt_launch_failure f;
    int node;          /* the node whose rank failed; -1 with no rank: the node itself dropped out */
    char host[64];
    int64_t step;    /* the step the job was running: the last logged + 1 */
    int64_t restore; /* the checkpoint step the restart took (-1: from the start) */
} failure;

/* The last "step" of RUN_DIR/metrics.jsonl (rank 0 writes one line per step, flushed), or -1. */
static int64_t last_logged_step(const char *run_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    int64_t last = -1;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "\"step\":");
        if (s && !strstr(line, "\"eval_loss\""))
            last = strtoll(s + 7, NULL, 10);
    }
    fclose(f);
    return last;
}

static void describe(const failure *x, char *buf, size_t cap)
{
    if (x->f.rank < 0)
        snprintf(buf, cap, "node %d (host %s) dropped out during step %lld", x->node, x->host, (long long)x->step);
    else if (x->f.signal)
        snprintf(buf, cap, "rank %d (host %s) was killed by signal %d (%s) during step %lld", x->f.rank, x->host,
                 x->f.signal, strsignal(x->f.signal), (long long)x->step);
    else
        snprintf(buf, cap, "rank %d (host %s) exited with status %d during step %lld", x->f.rank, x->host,
                 x->f.exit_status, (long long)x->step);
}

static void print_all(const failure *fs, int n)
{
    for (int i = 0; i < n; i++) {
        char d[256];
        describe(&fs[i], d, sizeof d);
        fprintf(stderr, "pipetrain:   failure %d: %s\n", i + 1, d);
    }
}

/* ---- the decision after a failed attempt (one node, or the leader of several) ---- */

typedef struct restarter {
    const pt_cli_restart *r;
    failure fs[MAX_FAILURES];
    int n_fail;
    char **argv;
    int argc, has_resume;
    int snapshots; /* the train command has --snapshot-every K > 0 */
    int dp, micro_batches;          /* the train command's now (a shrink changes them) */
    char dp_buf[32], mb_buf[48];    /* their rewritten argv words */
} restarter;

/* Rewrites the value of option `name` ("--name V" or "--name=V") in argv to v, in buf. 0: done;
 * -1: argv has no such option. */
static int set_opt(char **argv, int argc, const char *name, int v, char *buf, size_t cap)
{
    size_t len = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strncmp(argv[i] + 2, name, len) != 0)
            continue;
        if (argv[i][2 + len] == '=') {
            snprintf(buf, cap, "--%s=%d", name, v);
            argv[i] = buf;
            return 0;
        }
        if (argv[i][2 + len] == 0 && i + 1 < argc) {
            snprintf(buf, cap, "%d", v);
            argv[i + 1] = buf;
            return 0;
        }
    }
    return -1;
}

/* The train command of a shrunk job: --dp dp, --micro-batches mb. */
static pt_status shrink_argv(restarter *rs, int dp, int mb)
{
    if (set_opt(rs->argv, rs->argc, "dp", dp, rs->dp_buf, sizeof rs->dp_buf) != 0 ||
        set_opt(rs->argv, rs->argc, "micro-batches", mb, rs->mb_buf, sizeof rs->mb_buf) != 0)
        return pt_fail(PT_EINVAL, "elastic shrink: the train command lost its --dp or --micro-batches");
    rs->dp = dp;
    rs->micro_batches = mb;
    return PT_OK;
}

/* Records failure f (of `node`, on `host`) of attempt `attempt`, prints its line and decides: 1 to
 * restart (PT_RESTART_FAILED_AT_NS set, --resume added once a checkpoint exists), 0 to give up
 * with *st the status to return. */
static int after_failure(restarter *rs, int attempt, const pt_launch_failure *f, int node, const char *host,
                         pt_status *st)
{
    const pt_cli_restart *r = rs->r;
    failure *x = &rs->fs[rs->n_fail < MAX_FAILURES ? rs->n_fail : MAX_FAILURES - 1];
    memset(x, 0, sizeof *x);
    x->f = *f;
    x->node = node;
    snprintf(x->host, sizeof x->host, "%s", host);
    x->step = last_logged_step(r->run_dir) + 1;
    x->restore = pt_ckpt_resume_step(r->ckpt_dir);
    if (x->step < 1)
        x->step = x->restore + 1;
    char d[256];
    describe(x, d, sizeof d);
    if (r->steps > 0 && x->restore >= r->steps) {
        *st = pt_fail(PT_ECOMM, "%s, after the checkpoint of the last step (%lld) was written: not restarted, "
                                "that checkpoint is complete",
                      d, (long long)x->restore);
        return 0;
    }
    if (rs->n_fail < MAX_FAILURES)
        rs->n_fail++;
    int same = 0;
    for (int i = 0; i < rs->n_fail; i++)
        same += rs->fs[i].step == x->step;
    if (attempt >= r->max_restarts) {
        fprintf(stderr, "pipetrain: %s; --max-restarts %d used up, stopping. Every failure:\n", d, r->max_restarts);
        print_all(rs->fs, rs->n_fail);
        *st = pt_fail(PT_ECOMM, "%d failure%s, --max-restarts %d used up (the last: %s)", rs->n_fail,
                      rs->n_fail == 1 ? "" : "s", r->max_restarts, d);
        return 0;
    }
    if (same >= SAME_STEP_LIMIT) {
        fprintf(stderr,
                "pipetrain: %s; the job failed during step %lld %d times (restarted %d times from the same state), so "
                "it is stopped rather than looping. Every failure:\n",
                d, (long long)x->step, same, same - 1);
        print_all(rs->fs, rs->n_fail);
        *st = pt_fail(PT_ECOMM,
                      "the job fails during step %lld every time (%d times); look at that step's batch or for a NaN "
                      "(the loss and grad_norm in %s/metrics.jsonl), then continue with --resume",
                      (long long)x->step, same, r->run_dir);
        return 0;
    }
    /* recovery time: from the failure to the restarted job's first step (its rank 0 reports it) */
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)(pt_wall_ns() - (pt_now_ns() - f->at_ns)));
    setenv("PT_RESTART_FAILED_AT_NS", v, 1);
    if (x->restore >= 0 && !rs->has_resume) {
        rs->argv[rs->argc++] = "--resume";
        rs->argv[rs->argc] = NULL;
        rs->has_resume = 1;
    }
    /* with snapshots the ranks take the newest one they share when it is newer (they say which) */
    const char *snap = rs->snapshots ? "the newest in-memory snapshot newer than the checkpoint, else " : "";
    if (x->restore >= 0)
        fprintf(stderr, "pipetrain: %s; restart %d of at most %d from %scheckpoint step %lld (%s)\n", d, attempt + 1,
                r->max_restarts, snap, (long long)x->restore, r->ckpt_dir);
    else
        fprintf(stderr, "pipetrain: %s; restart %d of at most %d from %sthe start (no checkpoint in %s yet)\n", d,
                attempt + 1, r->max_restarts, snap, r->ckpt_dir);
    fflush(stderr);
    return 1;
}

/* The ranks' environment of an attempt: its number, and (a restart) when it was started. */
static void set_attempt(int attempt)
{
    char v[32];
    snprintf(v, sizeof v, "%d", attempt);
    setenv("PT_RESTART_COUNT", v, 1);
    snprintf(v, sizeof v, "%lld", (long long)pt_wall_ns());
    setenv("PT_RESTART_RELAUNCH_AT_NS", v, 1);
}

static void my_host(char *h, size_t cap)
{
    snprintf(h, cap, "?");
    gethostname(h, cap - 1);
    h[cap - 1] = 0;
}

/* ---- the node agents' messages ---- */

#define AGENT_MAGIC 0x70744167u /* "pTAg" */
enum { AG_HELLO = 1, AG_GO, AG_DONE, AG_STOP, AG_EXIT };
enum { DONE_OK = 0, DONE_FAILED = 1, DONE_STOPPED = 2 };

typedef struct agent_msg {
    uint32_t magic, type;
    int32_t gen, node, status; /* status: DONE_* for DONE, the exit code for EXIT */
    int32_t rank, exit_status, sig, resume, nodes; /* nodes: HELLO the agent's --nodes; GO the job's now */
    int32_t dp, micro_batches;  /* GO: the train command's --dp and --micro-batches (0: as given) */
    int64_t failed_at_wall_ns;  /* GO after a failure: PT_RESTART_FAILED_AT_NS */
    char host[64];
} agent_msg;

/* 0: sent; -1: failed. Short writes are finished; bounded by a 10 s deadline. */
static int ag_send(int fd, const agent_msg *m)
{
    const char *p = (const char *)m;
    size_t left = sizeof *m;
    int64_t dl = pt_now_ns() + 10000000000LL;
    while (left > 0) {
        ssize_t w = send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            left -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (pt_deadline_passed(dl))
            return -1;
        struct pollfd pf = { fd, POLLOUT, 0 };
        poll(&pf, 1, 100);
    }
    return 0;
}

/* 0: a whole message; -1: the peer closed or failed; -2: the deadline passed. */
static int ag_recv(int fd, agent_msg *m, int64_t deadline_ns)
{
    char *p = (char *)m;
    size_t got = 0;
    while (got < sizeof *m) {
        int64_t left = (deadline_ns - pt_now_ns()) / 1000000;
        if (deadline_ns != INT64_MAX && left <= 0)
            return -2;
        struct pollfd pf = { fd, POLLIN, 0 };
        int pr = poll(&pf, 1, deadline_ns == INT64_MAX || left > 1000 ? 1000 : (int)left);
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr <= 0)
            continue;
        ssize_t r = recv(fd, p + got, sizeof *m - got, 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
            return -1;
        if (r > 0)
            got += (size_t)r;
    }
    return m->magic == AGENT_MAGIC ? 0 : -1;
}

static agent_msg ag_msg(int type, int gen)
{
    agent_msg m;
    memset(&m, 0, sizeof m);
    m.magic = AGENT_MAGIC;
    m.type = (uint32_t)type;
    m.gen = gen;
    return m;
}

/* master "ADDR:PORT" -> host and the agents' port (PORT + 1). */
static pt_status agent_addr(const char *master, char *host, size_t cap, int *port)
{
    const char *colon = master ? strrchr(master, ':') : NULL;
    if (!colon || colon == master || (size_t)(colon - master) >= cap)
        return pt_fail(PT_EINVAL, "--max-restarts with --nodes needs --master ADDR:PORT");
    memcpy(host, master, (size_t)(colon - master));
    host[colon - master] = 0;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    *port = atoi(colon + 1) + 1;
    if (*port < 2 || *port > 65535)
        return pt_fail(PT_EINVAL, "--master %s: a port below 65535 is needed (the node agents use PORT + 1)", master);
    return PT_OK;
}

/* ---- the leader (node 0) ---- */

typedef struct leader {
    int nodes, gen;    /* nodes: the job's now (fewer after a shrink) */
    int max_nodes;     /* the launch's --nodes (MAX) */
    int *orig;         /* [nodes] each node's --node-rank (its number before any shrink) */
    int *fd;           /* [nodes] each agent's socket (-1: none; fd[0] unused) */
    int *done;         /* [nodes] DONE(gen) received (or the node was lost) */
    char (*host)[64];  /* [nodes] */
    int failed;        /* attempt gen failed somewhere */
    failure first;     /* its first failure */
    int have_first;
} leader;

static void leader_stop_others(leader *L)
{
    agent_msg m = ag_msg(AG_STOP, L->gen);
    for (int n = 1; n < L->nodes; n++)
        if (L->fd[n] >= 0 && !L->done[n])
            (void)ag_send(L->fd[n], &m);
}

static void leader_note_failure(leader *L, const pt_launch_failure *f, int node, const char *host)
{
    L->failed = 1;
    if (L->have_first)
        return;
    L->have_first = 1;
    memset(&L->first, 0, sizeof L->first);
    L->first.f = *f;
    L->first.node = node;
    snprintf(L->first.host, sizeof L->first.host, "%s", host);
}

/* One message (or the loss) of node n's agent during attempt L->gen. */
static void leader_take(leader *L, int n, int rr, const agent_msg *m)
{
    if (rr != 0) { /* the node dropped out */
        close(L->fd[n]);
        L->fd[n] = -1;
        L->done[n] = 1;
        pt_launch_failure f = { .rank = -1, .exit_status = -1, .at_ns = pt_now_ns() };
        leader_note_failure(L, &f, L->orig[n], L->host[n]);
        leader_stop_others(L);
        return;
    }
    if (m->type != AG_DONE || m->gen != L->gen)
        return; /* stale */
    L->done[n] = 1;
    if (m->status == DONE_FAILED) {
        pt_launch_failure f = { .rank = m->rank, .exit_status = m->exit_status, .signal = m->sig,
                                .at_ns = pt_now_ns() };
        leader_note_failure(L, &f, L->orig[n], m->host);
        leader_stop_others(L);
    }
}

static int leader_watch(void *ctx, int fd)
{
    leader *L = ctx;
    for (int n = 1; n < L->nodes; n++) {
        if (L->fd[n] != fd)
            continue;
        agent_msg m;
        int rr = ag_recv(fd, &m, pt_now_ns() + 5000000000LL);
        leader_take(L, n, rr, &m);
        return L->failed ? 3 : (L->done[n] ? 2 : 0);
    }
    return 2;
}

/* Accepts agents until every node 1..nodes-1 has one, or the deadline. At the deadline, with
 * min_nodes > 0 and at least min_nodes present (node 0 with them), returns PT_OK with *short_of set
 * (the leader then shrinks the job); else PT_ETIMEDOUT naming the missing nodes. */
static pt_status leader_accept(leader *L, int lfd, int64_t deadline_ns, const char *why, int min_nodes,
                               int *short_of)
{
    if (short_of)
        *short_of = 0;
    for (;;) {
        int missing = 0;
        for (int n = 1; n < L->nodes; n++)
            missing += L->fd[n] < 0;
        if (!missing)
            return PT_OK;
        int64_t left = (deadline_ns - pt_now_ns()) / 1000000;
        if (left <= 0) {
            if (min_nodes > 0 && L->nodes - missing >= min_nodes) {
                *short_of = missing;
                return PT_OK;
            }
            char list[256] = "", more[160] = "";
            size_t off = 0;
            for (int n = 1; n < L->nodes && off < sizeof list - 8; n++)
                if (L->fd[n] < 0)
                    off += (size_t)snprintf(list + off, sizeof list - off, "%s%d", off ? ", " : "", L->orig[n]);
            if (min_nodes > 0)
                snprintf(more, sizeof more, " (%d node%s left, fewer than the --nodes %d:%d minimum)",
                         L->nodes - missing, L->nodes - missing == 1 ? "" : "s", min_nodes, L->max_nodes);
            else
                snprintf(more, sizeof more, ", or give --nodes MIN:%d to continue on fewer nodes", L->max_nodes);
            return pt_fail(PT_ETIMEDOUT, "node agent: node%s %s did not %s%s; start `pipetrain launch --max-restarts "
                                         "...` there with its --node-rank%s",
                           missing > 1 ? "s" : "", list, why, min_nodes > 0 ? more : "", min_nodes > 0 ? "" : more);
        }
        struct pollfd pf = { lfd, POLLIN, 0 };
        if (poll(&pf, 1, left > 1000 ? 1000 : (int)left) <= 0)
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        agent_msg m;
        int at = -1; /* the node's place now: its --node-rank among the job's nodes */
        if (ag_recv(fd, &m, pt_now_ns() + 5000000000LL) == 0 && m.type == AG_HELLO && m.nodes == L->max_nodes)
            for (int n = 1; n < L->nodes; n++)
                if (L->orig[n] == m.node && L->fd[n] < 0)
                    at = n;
        if (at < 0) { /* not an agent of this job, a node already there, or one the job shrank without */
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        L->fd[at] = fd;
        m.host[sizeof m.host - 1] = 0;
        snprintf(L->host[at], sizeof L->host[at], "%s", m.host);
    }
}

/* The job after nodes dropped out and did not rejoin (leader_accept's short_of): the nodes left
 * (node 0 and every agent still connected, in their order) become nodes 0..N'-1, and the train
 * command keeps the global batch with D' = D x N'/N replicas and M' = M x D / D' micro-batches.
 * Refused (the job ends) when the N' nodes cannot hold whole replicas or M x D is not a multiple of
 * D'. One line on stderr says what changed. */
static pt_status leader_shrink(leader *L, pt_launch_opts *lo, restarter *rs, double join_s)
{
    const int N = L->nodes, D = rs->dp, M = rs->micro_batches;
    int N2 = 1;
    char gone[256] = "";
    size_t off = 0;
    for (int n = 1; n < N; n++) {
        if (L->fd[n] >= 0)
            N2++;
        else if (off < sizeof gone - 16)
            off += (size_t)snprintf(gone + off, sizeof gone - off, "%s%d", off ? ", " : "", L->orig[n]);
    }
    const int missing = N - N2, world = lo->nproc * N, P = D > 0 && world % D == 0 ? world / D : 0;
    if (P <= 0)
        return pt_fail(PT_EINVAL, "elastic shrink: --dp %d does not divide the %d ranks of %d nodes; the job cannot "
                                  "be re-planned", D, world, N);
    if ((lo->nproc * N2) % P != 0)
        return pt_fail(PT_EINVAL, "node%s %s did not rejoin within %.3g s, and the %d node%s left (%d ranks) cannot hold "
                                  "whole replicas of %d pipeline stages; start node%s %s again, or use --stages that "
                                  "divide %d ranks",
                       missing > 1 ? "s" : "", gone, join_s, N2, N2 == 1 ? "" : "s", lo->nproc * N2, P,
                       missing > 1 ? "s" : "", gone, lo->nproc * N2);
    const int D2 = lo->nproc * N2 / P;
    if ((M * D) % D2 != 0)
        return pt_fail(PT_EINVAL, "node%s %s did not rejoin within %.3g s, and on %d replica%s the global batch of "
                                  "--micro-batches %d x --dp %d cannot be kept (%d is not a multiple of %d); start "
                                  "node%s %s again, or give --micro-batches a multiple of %d",
                       missing > 1 ? "s" : "", gone, join_s, D2, D2 == 1 ? "" : "s", M, D, M * D, D2,
                       missing > 1 ? "s" : "", gone, D2);
    const int M2 = M * D / D2;
    PT_CHECK(shrink_argv(rs, D2, M2));
    int k = 1;
    for (int n = 1; n < N; n++) {
        if (L->fd[n] < 0)
            continue;
        L->fd[k] = L->fd[n];
        L->orig[k] = L->orig[n];
        memmove(L->host[k], L->host[n], sizeof L->host[k]);
        k++;
    }
    L->nodes = N2;
    lo->nodes = N2;
    fprintf(stderr, "pipetrain: node%s %s did not rejoin within %.3g s: continuing on %d node%s, D %d -> %d, "
                    "micro-batches %d -> %d, global batch kept\n",
            missing > 1 ? "s" : "", gone, join_s, N2, N2 == 1 ? "" : "s", D, D2, M, M2);
    fflush(stderr);
    return PT_OK;
}

static pt_status run_leader(pt_launch_opts *lo, restarter *rs, int *exit_code)
{
    const pt_cli_restart *r = rs->r;
    char host[256];
    int port;
    PT_CHECK(agent_addr(lo->master, host, sizeof host, &port));
    int nodes = lo->nodes;
    leader L = { .nodes = nodes, .max_nodes = nodes };
    L.fd = malloc(sizeof(int) * (size_t)nodes);
    L.orig = malloc(sizeof(int) * (size_t)nodes);
    L.done = calloc((size_t)nodes, sizeof(int));
    L.host = calloc((size_t)nodes, sizeof *L.host);
    int *wfds = malloc(sizeof(int) * (size_t)nodes);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    pt_status st = PT_OK;
    if (!L.fd || !L.orig || !L.done || !L.host || !wfds) {
        st = pt_fail(PT_ENOMEM, "node agent: out of memory");
        goto out;
    }
    for (int n = 0; n < nodes; n++) {
        L.fd[n] = -1;
        L.orig[n] = n;
    }
    const int min_nodes = r->min_nodes > 0 && r->min_nodes < nodes ? r->min_nodes : 0;
    int one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0) {
        st = pt_fail(PT_EIO, "node agent: cannot listen on port %d (the --master port + 1): %s; pick another --master "
                             "port", port, strerror(errno));
        goto out;
    }
    double join_s = r->rejoin_timeout_s > 0 ? r->rejoin_timeout_s : 300;
    PT_TRY(leader_accept(&L, lfd, pt_now_ns() + (int64_t)(300 * 1e9), "connect within 300 s", 0, NULL), out);
    fprintf(stderr, "pipetrain: node agent: all %d nodes joined (agents on port %d)\n", nodes, port);
    for (int attempt = 0;; attempt++) {
        L.gen = attempt;
        L.failed = L.have_first = 0;
        set_attempt(attempt);
        agent_msg go = ag_msg(AG_GO, attempt);
        go.resume = rs->has_resume;
        const char *fa = getenv("PT_RESTART_FAILED_AT_NS");
        go.failed_at_wall_ns = fa ? strtoll(fa, NULL, 10) : 0;
        go.nodes = L.nodes;
        go.dp = rs->dp;
        go.micro_batches = rs->micro_batches;
        int nw = 0;
        for (int n = 1; n < L.nodes; n++) {
            L.done[n] = 0;
            go.node = n;
            if (ag_send(L.fd[n], &go) != 0) {
                agent_msg none;
                leader_take(&L, n, -1, &none);
            } else {
                wfds[nw++] = L.fd[n];
            }
        }
        pt_launch_failure f;
        lo->failure = &f;
        lo->kill_on_failure = 1;
        lo->watch_fds = wfds;
        lo->n_watch = nw;
        lo->on_watch = leader_watch;
        lo->watch_ctx = &L;
        if (!L.failed) {
            st = pt_launch(lo, rs->argv, exit_code);
            if (st != PT_OK && f.rank >= 0 && !f.after_signal) {
                char h[64];
                my_host(h, sizeof h);
                leader_note_failure(&L, &f, 0, h);
                leader_stop_others(&L);
            }
        }
        if (st != PT_OK && f.after_signal) { /* the user stopped the job: it ends everywhere */
            agent_msg ex = ag_msg(AG_EXIT, attempt);
            ex.status = *exit_code;
            leader_stop_others(&L);
            for (int n = 1; n < L.nodes; n++)
                if (L.fd[n] >= 0)
                    (void)ag_send(L.fd[n], &ex);
            goto out;
        }
        if (st != PT_OK && f.rank < 0 && !f.stopped && !L.failed)
            goto out; /* the launch itself failed */
        /* every other node's DONE (their ranks end at once on STOP) */
        int64_t dl = pt_now_ns() + 120000000000LL;
        for (int n = 1; n < L.nodes; n++) {
            while (L.fd[n] >= 0 && !L.done[n]) {
                agent_msg m;
                int rr = ag_recv(L.fd[n], &m, dl);
                leader_take(&L, n, rr, &m);
            }
        }
        if (!L.failed && st == PT_OK) {
            agent_msg ex = ag_msg(AG_EXIT, attempt);
            for (int n = 1; n < L.nodes; n++)
                if (L.fd[n] >= 0)
                    (void)ag_send(L.fd[n], &ex);
            goto out;
        }
        pt_clear_error();
        if (!L.have_first) { /* stopped with no failure named: should not happen */
            pt_launch_failure none = { .rank = -1, .exit_status = -1, .at_ns = pt_now_ns() };
            leader_note_failure(&L, &none, 0, "?");
        }
        if (!after_failure(rs, attempt, &L.first.f, L.first.node, L.first.host, &st)) {
            agent_msg ex = ag_msg(AG_EXIT, attempt);
            ex.status = 1;
            for (int n = 1; n < L.nodes; n++)
                if (L.fd[n] >= 0)
                    (void)ag_send(L.fd[n], &ex);
            if (exit_code)
                *exit_code = 1;
            goto out;
        }
        char why[64];
        snprintf(why, sizeof why, "rejoin within %.3g s", join_s);
        int short_of = 0;
        PT_TRY(leader_accept(&L, lfd, pt_now_ns() + (int64_t)(join_s * 1e9), why, min_nodes, &short_of), out);
        if (short_of > 0) {
            st = leader_shrink(&L, lo, rs, join_s);
            if (st != PT_OK) {
                if (exit_code)
                    *exit_code = 1;
                goto out;
            }
        }
    }
out:
    if (st != PT_OK && L.fd) { /* whatever ended the leader ends every agent */
        agent_msg ex = ag_msg(AG_EXIT, L.gen);
        ex.status = exit_code && *exit_code ? *exit_code : 1;
        for (int n = 1; n < L.nodes; n++)
            if (L.fd[n] >= 0)
                (void)ag_send(L.fd[n], &ex);
    }
    for (int n = 1; L.fd && n < L.nodes; n++)
        if (L.fd[n] >= 0)
            close(L.fd[n]);
    if (lfd >= 0)
        close(lfd);
    free(L.fd);
    free(L.orig);
    free(L.done);
    free(L.host);
    free(wfds);
    return st;
}

/* ---- an agent of node 1.. ---- */

typedef struct follower {
    int fd, stop, lost;
} follower;

static int follower_watch(void *ctx, int fd)
{
    follower *F = ctx;
    agent_msg m;
    int rr = ag_recv(fd, &m, pt_now_ns() + 5000000000LL);
    if (rr != 0) {
        F->lost = 1;
        return 3;
    }
    if (m.type == AG_STOP || m.type == AG_EXIT) {
        F->stop = 1;
        return 3;
    }
    return 0;
}

static pt_status run_follower(pt_launch_opts *lo, restarter *rs, int *exit_code)
{
    char host[256];
    int port;
    PT_CHECK(agent_addr(lo->master, host, sizeof host, &port));
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int fd = -1;
    int64_t dl = pt_now_ns() + 300000000000LL;
    while (fd < 0) {
        if (getaddrinfo(host, ps, &hints, &res) == 0) {
            for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
                fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
                if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
                    close(fd);
                    fd = -1;
                }
            }
            freeaddrinfo(res);
        }
        if (fd >= 0)
            break;
        if (pt_deadline_passed(dl))
            return pt_fail(PT_ETIMEDOUT, "node agent: cannot reach node 0's agent at %s:%d within 300 s; start node "
                                         "0's `pipetrain launch --max-restarts ...` (it listens on the --master port + 1)",
                           host, port);
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    agent_msg hi = ag_msg(AG_HELLO, 0);
    hi.node = lo->node_rank;
    hi.nodes = lo->nodes;
    my_host(hi.host, sizeof hi.host);
    if (ag_send(fd, &hi) != 0) {
        close(fd);
        return pt_fail(PT_ECOMM, "node agent: node 0's agent closed the connection at hello");
    }
    pt_status st = PT_OK;
    for (int got_go = 0;;) {
        agent_msg m;
        int rr = ag_recv(fd, &m, INT64_MAX);
        if (rr != 0 && !got_go) {
            st = pt_fail(PT_ECOMM, "node agent: node 0's agent closed the connection after this node's hello: node %d "
                                   "is not (or no longer) in the job (a job that shrank does not take a node back), "
                                   "or this launcher's --nodes or --node-rank differs from the job's",
                         lo->node_rank);
            break;
        }
        if (rr != 0) {
            st = pt_fail(PT_ECOMM, "node agent: lost node 0's agent (it ended or its node dropped out); node 0's "
                                   "output says why");
            break;
        }
        got_go |= m.type == AG_GO;
        if (m.type == AG_EXIT) {
            if (exit_code)
                *exit_code = m.status;
            st = m.status == 0 ? PT_OK
                               : pt_fail(PT_ECOMM, "the job ended with status %d; node 0's launcher names every failure",
                                         m.status);
            break;
        }
        if (m.type != AG_GO)
            continue; /* a STOP that came after this node's ranks had ended */
        set_attempt(m.gen);
        if (m.nodes > 0 && (m.nodes != lo->nodes || m.node != lo->node_rank)) { /* the job shrank */
            fprintf(stderr, "pipetrain: node %d: continuing as node %d of %d\n", lo->node_rank, m.node, m.nodes);
            lo->nodes = m.nodes;
            lo->node_rank = m.node;
        }
        if (m.dp > 0 && (m.dp != rs->dp || m.micro_batches != rs->micro_batches)) {
            st = shrink_argv(rs, m.dp, m.micro_batches);
            if (st != PT_OK)
                break;
        }
        if (m.failed_at_wall_ns > 0) {
            char v[32];
            snprintf(v, sizeof v, "%lld", (long long)m.failed_at_wall_ns);
            setenv("PT_RESTART_FAILED_AT_NS", v, 1);
        }
        if (m.resume && !rs->has_resume) {
            rs->argv[rs->argc++] = "--resume";
            rs->argv[rs->argc] = NULL;
            rs->has_resume = 1;
        }
        follower F = { .fd = fd };
        pt_launch_failure f;
        lo->failure = &f;
        lo->kill_on_failure = 1;
        lo->watch_fds = &fd;
        lo->n_watch = 1;
        lo->on_watch = follower_watch;
        lo->watch_ctx = &F;
        pt_status ls = pt_launch(lo, rs->argv, exit_code);
        if (F.lost) {
            st = pt_fail(PT_ECOMM, "node agent: lost node 0's agent while the ranks ran; they were stopped");
            break;
        }
        agent_msg d = ag_msg(AG_DONE, m.gen);
        d.node = lo->node_rank;
        my_host(d.host, sizeof d.host);
        d.status = ls == PT_OK ? DONE_OK : f.rank >= 0 ? DONE_FAILED : DONE_STOPPED;
        d.rank = f.rank;
        d.exit_status = f.exit_status;
        d.sig = f.signal;
        if (d.status == DONE_FAILED) {
            char what[160];
            if (f.signal)
                snprintf(what, sizeof what, "killed by signal %d", f.signal);
            else
                snprintf(what, sizeof what, "exited with status %d", f.exit_status);
            fprintf(stderr, "pipetrain: node %d: rank %d %s; told node 0's agent\n", lo->node_rank, f.rank, what);
        }
        pt_clear_error();
        if (ag_send(fd, &d) != 0) {
            st = pt_fail(PT_ECOMM, "node agent: lost node 0's agent");
            break;
        }
    }
    close(fd);
    return st;
}

pt_status pt_cli_launch_restarting(pt_launch_opts *lo, char **argv, int argc, const pt_cli_restart *r, int *exit_code)
{
    if (r->max_restarts <= 0) {
        unsetenv("PT_RESTART_COUNT");
        return pt_launch(lo, argv, exit_code);
    }
    restarter *rs = calloc(1, sizeof *rs);
    if (!rs)
        return pt_fail(PT_ENOMEM, "out of memory");
    rs->r = r;
    rs->argv = argv;
    rs->argc = argc;
    rs->dp = r->dp;
    rs->micro_batches = r->micro_batches;
    for (int i = 0; i < argc; i++) {
        rs->has_resume |= strcmp(argv[i], "--resume") == 0;
        if (strcmp(argv[i], "--snapshot-every") == 0 && i + 1 < argc)
            rs->snapshots = atoll(argv[i + 1]) > 0;
        else if (strncmp(argv[i], "--snapshot-every=", 17) == 0)
            rs->snapshots = atoll(argv[i] + 17) > 0;
    }
    pt_status st;
    if (lo->nodes > 1)
        st = lo->node_rank == 0 ? run_leader(lo, rs, exit_code) : run_follower(lo, rs, exit_code);
    else {
        pt_launch_failure f;
        lo->failure = &f;
        lo->kill_on_failure = 1; /* the survivors' state is discarded: the restart reloads the checkpoint */
        char h[64];
        my_host(h, sizeof h);
        for (int attempt = 0;; attempt++) {
            set_attempt(attempt);
            st = pt_launch(lo, rs->argv, exit_code);
            if (st != PT_ECOMM || f.rank < 0 || f.after_signal)
                break; /* done, stopped (or failing) on the user's signal, or the launch itself failed */
            pt_clear_error();
            if (!after_failure(rs, attempt, &f, 0, h, &st))
                break;
        }
    }
    free(rs);
    return st;
}

/* comm/bootstrap.c — who am I (environment), and the TCP rendezvous at MASTER_ADDR:MASTER_PORT
 * where rank 0 checks every rank's version and config hash, picks the provider, gathers and
 * scatters endpoint addresses, and measures clock offsets.
 *
 * Wire format: messages of {u32 type, u32 length, payload} in host byte order (all ranks of a
 * job run the same build, which the version check enforces). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"
#include "pipetrain/timeutil.h"

enum { MSG_HELLO = 1, MSG_ERR, MSG_PROV, MSG_ADDR, MSG_ALLADDR, MSG_PING, MSG_PONG, MSG_OFFSET };

#define BOOT_MAGIC 0x70744254u /* "pTBt" */
#define N_PINGS 8

typedef struct boot_hello {
    uint32_t magic;
    int32_t rank, size, local_rank;
    uint64_t config_hash;
    int32_t generation; /* PT_RESTART_COUNT: the attempt of a restarted job (0 without one) */
    char version[32];
    char host[128];
    char provider[64];
} boot_hello;

/* ---------------------------------------------------------------- environment */

/* pipetrain/comm.h (here: the rendezvous is its first reader) */
int pt_comm_env_restart_count(const char **from)
{
    static const char *const vars[] = { "PT_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && v[0]) {
            if (from)
                *from = vars[i];
            int n = atoi(v);
            return n > 0 ? n : 0;
        }
    }
    if (from)
        *from = NULL;
    return 0;
}

static int env_int(const char *name, int *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1000000000L)
        return -1;
    *out = (int)x;
    return 1;
}

static pt_status env_pair(pt_boot_env *e, const char *rank_name, const char *size_name)
{
    int r = env_int(rank_name, &e->rank), s = env_int(size_name, &e->size);
    if (r < 0 || s < 0)
        return pt_fail(PT_EINVAL, "%s=%s, %s=%s: not non-negative integers; fix the job's environment", rank_name,
                       getenv(rank_name), size_name, getenv(size_name) ? getenv(size_name) : "(unset)");
    if (r == 0 || s == 0)
        return pt_fail(PT_EINVAL, "%s is set but %s is not; set both (or neither for a single process)",
                       r ? rank_name : size_name, r ? size_name : rank_name);
    return PT_OK;
}

pt_status pt_boot_env_read(pt_boot_env *e)
{
    memset(e, 0, sizeof *e);
    e->size = 1;
    e->local_size = 1;
    int have_master_default = 0;
    if (getenv("RANK") || getenv("WORLD_SIZE")) {
        PT_CHECK(env_pair(e, "RANK", "WORLD_SIZE"));
        e->source = "launcher/torchrun";
        e->local_rank = e->rank;
        e->local_size = e->size;
        if (env_int("LOCAL_RANK", &e->local_rank) < 0 || env_int("LOCAL_WORLD_SIZE", &e->local_size) < 0)
            return pt_fail(PT_EINVAL, "LOCAL_RANK or LOCAL_WORLD_SIZE is not a non-negative integer");
        have_master_default = 1;
    } else if (getenv("SLURM_PROCID") && getenv("SLURM_NTASKS")) {
        PT_CHECK(env_pair(e, "SLURM_PROCID", "SLURM_NTASKS"));
        e->source = "srun";
        e->local_rank = 0;
        e->local_size = 1;
        if (env_int("SLURM_LOCALID", &e->local_rank) < 0)
            return pt_fail(PT_EINVAL, "SLURM_LOCALID is not a non-negative integer");
        int jobid = 0;
        if (!getenv("MASTER_PORT") && env_int("SLURM_JOB_ID", &jobid) > 0)
            e->master_port = 20000 + jobid % 20000; /* same on every task of the job */
        if (!getenv("MASTER_ADDR") && getenv("SLURM_LAUNCH_NODE_IPADDR"))
            snprintf(e->master_addr, sizeof e->master_addr, "%s", getenv("SLURM_LAUNCH_NODE_IPADDR"));
    } else if (getenv("OMPI_COMM_WORLD_RANK") || getenv("OMPI_COMM_WORLD_SIZE")) {
        PT_CHECK(env_pair(e, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"));
        e->source = "mpirun";
        e->local_rank = 0;
        if (env_int("OMPI_COMM_WORLD_LOCAL_RANK", &e->local_rank) < 0 ||
            env_int("OMPI_COMM_WORLD_LOCAL_SIZE", &e->local_size) < 0)
            return pt_fail(PT_EINVAL, "OMPI_COMM_WORLD_LOCAL_RANK/SIZE is not a non-negative integer");
    } else if (getenv("PMI_RANK") || getenv("PMI_SIZE")) {
        PT_CHECK(env_pair(e, "PMI_RANK", "PMI_SIZE"));
        e->source = "mpirun";
        e->local_rank = 0;
    } else {
        e->source = "none";
        e->rank = 0;
        e->size = 1;
        return PT_OK;
    }
    if (e->size < 1 || e->size > PT_COMM_MAX_RANKS)
        return pt_fail(PT_EINVAL, "world size %d (from %s) is outside 1..%d", e->size, e->source, PT_COMM_MAX_RANKS);
    if (e->rank >= e->size)
        return pt_fail(PT_EINVAL, "rank %d is not below the world size %d (from %s); fix the job's environment",
                       e->rank, e->size, e->source);
    if (e->local_size < 1)
        e->local_size = 1;
    const char *addr = getenv("MASTER_ADDR");
    if (addr && *addr)
        snprintf(e->master_addr, sizeof e->master_addr, "%s", addr);
    else if (!e->master_addr[0] && (have_master_default || e->size == 1))
        snprintf(e->master_addr, sizeof e->master_addr, "127.0.0.1");
    int port = 0;
    int pr = env_int("MASTER_PORT", &port);
    if (pr < 0 || (pr > 0 && (port < 1 || port > 65535)))
        return pt_fail(PT_EINVAL, "MASTER_PORT=%s is not a TCP port (1..65535)", getenv("MASTER_PORT"));
    if (pr > 0)
        e->master_port = port;
    if (e->size > 1 && (!e->master_addr[0] || e->master_port == 0))
        return pt_fail(PT_EINVAL, "rank %d of %d (from %s): MASTER_ADDR and MASTER_PORT must name rank 0's "
                                  "rendezvous; export both (mpirun: -x MASTER_ADDR -x MASTER_PORT)",
                       e->rank, e->size, e->source);
    return PT_OK;
}

/* ---------------------------------------------------------------- sockets with deadlines */

static int remaining_ms(int64_t deadline_ns)
{
    if (deadline_ns == INT64_MAX)
        return 1000;
    int64_t left = (deadline_ns - pt_now_ns()) / 1000000;
    if (left < 0)
        return 0;
    return left > 1000 ? 1000 : (int)left + 1;
}

/* 0 ok, -1 error (errno), -2 deadline, -3 peer closed */
static int sock_io(int fd, void *p, size_t n, int writing, int64_t deadline_ns)
{
    char *c = p;
    while (n > 0) {
        struct pollfd pfd = { fd, writing ? POLLOUT : POLLIN, 0 };
        int ms = remaining_ms(deadline_ns);
        if (ms == 0)
            return -2;
        int pr = poll(&pfd, 1, ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return -1;
        if (pr == 0)
            continue;
        ssize_t k = writing ? send(fd, c, n, MSG_NOSIGNAL) : recv(fd, c, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k < 0)
            return errno == ECONNRESET || errno == EPIPE ? -3 : -1;
        if (k == 0)
            return -3;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static pt_status io_fail(int r, int me, int peer, const char *what, int64_t timeout_ms)
{
    char who[32];
    if (peer == 0 && me != 0)
        snprintf(who, sizeof who, "rank 0");
    else
        snprintf(who, sizeof who, "rank %d", peer);
    if (r == -2)
        return pt_fail(PT_ETIMEDOUT, "rank %d: rendezvous: no answer (%s) from %s within %.3g s; check %s's log or raise PT_COMM_TIMEOUT",
                       me, what, who, (double)timeout_ms / 1000.0, who);
    if (r == -3)
        return pt_fail(PT_ECOMM, "rank %d: rendezvous: %s closed the connection while %s (it probably failed; see its log)",
                       me, who, what);
    return pt_fail(PT_ECOMM, "rank %d: rendezvous: socket error with %s while %s: %s", me, who, what, strerror(errno));
}

static int msg_send(int fd, uint32_t type, const void *p, uint32_t len, int64_t deadline_ns)
{
    uint32_t h[2] = { type, len };
    int r = sock_io(fd, h, sizeof h, 1, deadline_ns);
    if (r == 0 && len)
        r = sock_io(fd, (void *)p, len, 1, deadline_ns);
    return r;
}

/* Receives one message; the payload is malloc'd (NUL-terminated for convenience). */
static int msg_recv(int fd, uint32_t *type, void **p, uint32_t *len, int64_t deadline_ns)
{
    uint32_t h[2];
    *p = NULL;
    int r = sock_io(fd, h, sizeof h, 0, deadline_ns);
    if (r)
        return r;
    if (h[1] > (64u << 20)) {
        errno = EPROTO;
        return -1;
    }
    char *buf = malloc((size_t)h[1] + 1);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    r = sock_io(fd, buf, h[1], 0, deadline_ns);
    if (r) {
        free(buf);
        return r;
    }
    buf[h[1]] = 0;
    *type = h[0];
    *len = h[1];
    *p = buf;
    return 0;
}

static void send_err_all(pt_boot *b, int size, const char *text)
{
    int64_t dl = pt_now_ns() + 1000000000LL;
    for (int i = 1; i < size; i++)
        if (b->fds[i] >= 0)
            msg_send(b->fds[i], MSG_ERR, text, (uint32_t)strlen(text) + 1, dl);
}

/* Fails with the current message and tells every connected rank (rank 0 only). */
static pt_status fail_all(pt_boot *b, int size, pt_status st)
{
    send_err_all(b, size, pt_last_error());
    return st;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void local_ip_of(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    out[0] = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST);
    if (strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.')) /* IPv4 reached through the dual-stack socket */
        memmove(out, out + 7, strlen(out + 7) + 1);
}

static int64_t timeout_of(int64_t deadline_ns)
{
    return deadline_ns == INT64_MAX ? 0 : (deadline_ns - pt_now_ns()) / 1000000;
}

/* ---------------------------------------------------------------- rendezvous */

static void hello_fill(boot_hello *h, const pt_boot_env *e, uint64_t hash, const char *prov)
{
    memset(h, 0, sizeof *h);
    h->magic = BOOT_MAGIC;
    h->rank = e->rank;
    h->size = e->size;
    h->local_rank = e->local_rank;
    h->config_hash = hash;
    h->generation = pt_comm_env_restart_count(NULL);
    snprintf(h->version, sizeof h->version, "%s", PT_VERSION_STRING);
    gethostname(h->host, sizeof h->host - 1);
    if (prov)
        snprintf(h->provider, sizeof h->provider, "%s", prov);
}

static pt_status rendezvous_root(const pt_boot_env *e, uint64_t hash, const char *prov_req, int64_t deadline_ns,
                                 pt_boot *b)
{
    int64_t t_start = pt_now_ns();
    int64_t timeout_ms = timeout_of(deadline_ns);
    pt_status st = PT_OK;
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int v6 = lfd >= 0;
    if (lfd < 0)
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return pt_fail(PT_ECOMM, "rank 0: cannot create the rendezvous socket: %s", strerror(errno));
    int one = 1, zero = 0;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int br;
    if (v6) {
        setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        struct sockaddr_in6 a = { 0 };
        a.sin6_family = AF_INET6;
        a.sin6_addr = in6addr_any;
        a.sin6_port = htons((uint16_t)e->master_port);
        br = bind(lfd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = { 0 };
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_ANY);
        a.sin_port = htons((uint16_t)e->master_port);
        br = bind(lfd, (struct sockaddr *)&a, sizeof a);
    }
    if (br < 0 || listen(lfd, 128) < 0) {
        st = pt_fail(PT_ECOMM, "rank 0: cannot listen on port %d for the rendezvous: %s; choose another MASTER_PORT",
                     e->master_port, strerror(errno));
        close(lfd);
        return st;
    }
    b->fds = malloc(sizeof(int) * (size_t)e->size);
    b->hostnames = calloc((size_t)e->size, sizeof(char *));
    if (!b->fds || !b->hostnames) {
        close(lfd);
        return pt_fail(PT_ENOMEM, "rank 0: out of memory for %d ranks", e->size);
    }
    for (int i = 0; i < e->size; i++)
        b->fds[i] = -1;
    boot_hello mine;
    hello_fill(&mine, e, hash, prov_req);
    b->hostnames[0] = strdup(mine.host);
    int arrived = 1;
    while (arrived < e->size) {
        struct pollfd pfd = { lfd, POLLIN, 0 };
        int ms = remaining_ms(deadline_ns);
        if (ms == 0)
            break;
        int pr = poll(&pfd, 1, ms);
        if (pr <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        set_nodelay(fd);
        uint32_t type, len;
        void *p;
        int64_t hdl = pt_now_ns() + 5000000000LL;
        if (hdl > deadline_ns)
            hdl = deadline_ns;
        if (msg_recv(fd, &type, &p, &len, hdl) != 0) {
            close(fd); /* not one of ours, or it died while saying hello */
            continue;
        }
        boot_hello *h = p;
        if (type != MSG_HELLO || len != sizeof *h || h->magic != BOOT_MAGIC) {
            free(p);
            close(fd);
            continue;
        }
        h->version[sizeof h->version - 1] = 0;
        h->host[sizeof h->host - 1] = 0;
        h->provider[sizeof h->provider - 1] = 0;
        if (h->generation != mine.generation) {
            /* a rank of another attempt of a restarted job (its node's launcher has not stopped it
             * yet): it must never join this one; it is told why and the rendezvous goes on */
            char why[256];
            snprintf(why, sizeof why, "rendezvous: rank %d of restart attempt %d tried to join attempt %d at %s; it "
                     "belongs to an attempt that was given up",
                     h->rank, h->generation, mine.generation, h->host);
            msg_send(fd, MSG_ERR, why, (uint32_t)strlen(why) + 1, hdl);
            close(fd);
            free(p);
            continue;
        }
        if (h->size != e->size || h->rank < 1 || h->rank >= e->size || b->fds[h->rank] >= 0) {
            if (h->size != e->size)
                pt_fail(PT_EINVAL, "rendezvous: rank %d says the world has %d ranks, rank 0 says %d; start every rank "
                                   "with the same WORLD_SIZE", h->rank, h->size, e->size);
            else
                pt_fail(PT_EINVAL, "rendezvous: two processes claim rank %d (of %d); give each process its own RANK",
                        h->rank, e->size);
            msg_send(fd, MSG_ERR, pt_last_error(), (uint32_t)strlen(pt_last_error()) + 1, hdl);
            close(fd);
            free(p);
            st = fail_all(b, e->size, PT_EINVAL);
            goto out;
        }
        b->fds[h->rank] = fd;
        b->hostnames[h->rank] = strdup(h->host);
        arrived++;
        if (strcmp(h->version, mine.version) != 0) {
            st = pt_fail(PT_EINVAL, "rendezvous: rank %d runs pipetrain %s but rank 0 runs %s; run the same build "
                                    "on every rank", h->rank, h->version, mine.version);
            free(p);
            st = fail_all(b, e->size, st);
            goto out;
        }
        if (h->config_hash != hash) {
            st = pt_fail(PT_EINVAL, "rendezvous: rank %d has configuration hash %016llx but rank 0 has %016llx; start "
                                    "every rank with the same model, plan and schedule", h->rank,
                         (unsigned long long)h->config_hash, (unsigned long long)hash);
            free(p);
            st = fail_all(b, e->size, st);
            goto out;
        }
        free(p);
    }
    if (arrived < e->size) {
        char list[256];
        size_t off = 0;
        int n_missing = 0;
        list[0] = 0;
        for (int i = 1; i < e->size; i++) {
            if (b->fds[i] >= 0)
                continue;
            n_missing++;
            if (off < sizeof list - 16)
                off += (size_t)snprintf(list + off, sizeof list - off, "%s%d", n_missing > 1 ? ", " : "", i);
            else if (off < sizeof list - 4)
                off += (size_t)snprintf(list + off, sizeof list - off, "...");
        }
        st = pt_fail(PT_ETIMEDOUT, "rendezvous at port %d: rank%s %s of %d did not arrive within %.3g s; check that "
                                   "%s started and can reach MASTER_ADDR:MASTER_PORT (or raise PT_COMM_TIMEOUT)",
                     e->master_port, n_missing > 1 ? "s" : "", list, e->size, pt_seconds_between(t_start, pt_now_ns()),
                     n_missing > 1 ? "they" : "it");
        st = fail_all(b, e->size, st);
        goto out;
    }
    /* provider: what rank 0 was asked for, else shm when every rank shares rank 0's host */
    if (prov_req && *prov_req) {
        snprintf(b->provider, sizeof b->provider, "%s", prov_req);
    } else {
        int one_host = 1;
        for (int i = 1; i < e->size; i++)
            if (strcmp(b->hostnames[i], b->hostnames[0]) != 0)
                one_host = 0;
        snprintf(b->provider, sizeof b->provider, "%s", one_host ? "shm" : "tcp");
    }
    for (int i = 1; i < e->size; i++) {
        int r = msg_send(b->fds[i], MSG_PROV, b->provider, (uint32_t)strlen(b->provider) + 1, deadline_ns);
        if (r) {
            st = fail_all(b, e->size, io_fail(r, 0, i, "sending the provider", timeout_ms));
            goto out;
        }
    }
    if (e->size > 1)
        local_ip_of(b->fds[1], b->local_ip, sizeof b->local_ip);
out:
    close(lfd);
    return st;
}

static pt_status rendezvous_rank(const pt_boot_env *e, uint64_t hash, const char *prov_req, int64_t deadline_ns,
                                 pt_boot *b)
{
    int64_t timeout_ms = timeout_of(deadline_ns);
    char port[16];
    snprintf(port, sizeof port, "%d", e->master_port);
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gr = getaddrinfo(e->master_addr, port, &hints, &res);
    if (gr != 0)
        return pt_fail(PT_EINVAL, "rank %d: MASTER_ADDR=%s: %s; set it to rank 0's host name or address", e->rank,
                       e->master_addr, gai_strerror(gr));
    int fd = -1, last_errno = 0;
    while (fd < 0) {
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
            if (fd < 0)
                continue;
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                last_errno = errno;
                close(fd);
                fd = -1;
            }
        }
        if (fd >= 0)
            break;
        if (pt_deadline_passed(deadline_ns)) {
            freeaddrinfo(res);
            return pt_fail(PT_ETIMEDOUT, "rank %d: cannot reach rank 0's rendezvous at %s:%d within %.3g s (%s); check "
                                         "that rank 0 started and MASTER_ADDR/MASTER_PORT, or raise PT_COMM_TIMEOUT",
                           e->rank, e->master_addr, e->master_port, (double)timeout_ms / 1000.0,
                           strerror(last_errno));
        }
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    freeaddrinfo(res);
    set_nodelay(fd);
    b->fd_master = fd;
    local_ip_of(fd, b->local_ip, sizeof b->local_ip);
    boot_hello h;
    hello_fill(&h, e, hash, prov_req);
    int r = msg_send(fd, MSG_HELLO, &h, sizeof h, deadline_ns);
    if (r)
        return io_fail(r, e->rank, 0, "sending hello", timeout_ms);
    uint32_t type, len;
    void *p;
    /* rank 0 answers by its own deadline (naming any missing rank): allow for our later start */
    r = msg_recv(fd, &type, &p, &len, deadline_ns == INT64_MAX ? deadline_ns : deadline_ns + 5000000000LL);
    if (r)
        return io_fail(r, e->rank, 0, "the provider choice (rank 0 waits for every rank to arrive)", timeout_ms);
    if (type == MSG_ERR) {
        pt_status st = pt_fail(PT_ECOMM, "rank %d: %s", e->rank, (char *)p);
        free(p);
        return st;
    }
    if (type != MSG_PROV) {
        free(p);
        return pt_fail(PT_EINTERNAL, "rank %d: rendezvous: unexpected message %u from rank 0", e->rank, type);
    }
    snprintf(b->provider, sizeof b->provider, "%s", (char *)p);
    free(p);
    return PT_OK;
}

pt_status pt_boot_rendezvous(const pt_boot_env *e, uint64_t config_hash, const char *provider_req, int64_t deadline_ns,
                             pt_boot *b)
{
    memset(b, 0, sizeof *b);
    b->fd_master = -1;
    if (e->rank == 0)
        return rendezvous_root(e, config_hash, provider_req, deadline_ns, b);
    return rendezvous_rank(e, config_hash, provider_req, deadline_ns, b);
}

/* ---------------------------------------------------------------- address exchange and clocks */

static pt_status exchange_root(const pt_boot_env *e, pt_boot *b, const void *addr, size_t addr_len, const char *err,
                               void **all, int64_t *offset_ns, int64_t deadline_ns)
{
    int64_t timeout_ms = timeout_of(deadline_ns);
    pt_status st = PT_OK;
    if (!addr) {
        st = pt_fail(PT_ECOMM, "rank 0: %s", err);
        return fail_all(b, e->size, st);
    }
    char *buf = malloc(addr_len * (size_t)e->size);
    if (!buf)
        return fail_all(b, e->size, pt_fail(PT_ENOMEM, "rank 0: out of memory for addresses"));
    memcpy(buf, addr, addr_len);
    for (int i = 1; i < e->size; i++) {
        uint32_t type, len;
        void *p;
        int r = msg_recv(b->fds[i], &type, &p, &len, deadline_ns);
        if (r) {
            st = fail_all(b, e->size, io_fail(r, 0, i, "the endpoint address", timeout_ms));
            goto fail;
        }
        if (type == MSG_ERR) {
            st = pt_fail(PT_ECOMM, "rank %d: %s", i, (char *)p);
            free(p);
            st = fail_all(b, e->size, st);
            goto fail;
        }
        if (type != MSG_ADDR || len != addr_len) {
            free(p);
            st = fail_all(b, e->size, pt_fail(PT_ECOMM, "rendezvous: rank %d sent a %u-byte endpoint address, rank 0's "
                                                        "is %zu bytes; use the same provider everywhere", i, len,
                                              addr_len));
            goto fail;
        }
        memcpy(buf + addr_len * (size_t)i, p, addr_len);
        free(p);
    }
    for (int i = 1; i < e->size; i++) {
        int r = msg_send(b->fds[i], MSG_ALLADDR, buf, (uint32_t)(addr_len * (size_t)e->size), deadline_ns);
        if (r) {
            st = fail_all(b, e->size, io_fail(r, 0, i, "sending the addresses", timeout_ms));
            goto fail;
        }
    }
    /* clock offsets: the ping-pong with the smallest round trip brackets the peer's reading best */
    for (int i = 1; i < e->size; i++) {
        int64_t best_rtt = INT64_MAX, best_off = 0;
        for (int k = 0; k < N_PINGS; k++) {
            int64_t t0 = pt_now_ns();
            uint32_t type, len;
            void *p;
            int r = msg_send(b->fds[i], MSG_PING, NULL, 0, deadline_ns);
            if (!r)
                r = msg_recv(b->fds[i], &type, &p, &len, deadline_ns);
            if (r) {
                st = fail_all(b, e->size, io_fail(r, 0, i, "the clock ping-pong", timeout_ms));
                goto fail;
            }
            int64_t t1 = pt_now_ns(), tk = 0;
            if (type == MSG_PONG && len == sizeof tk)
                memcpy(&tk, p, sizeof tk);
            free(p);
            if (t1 - t0 < best_rtt) {
                best_rtt = t1 - t0;
                best_off = t0 + (t1 - t0) / 2 - tk;
            }
        }
        int r = msg_send(b->fds[i], MSG_OFFSET, &best_off, sizeof best_off, deadline_ns);
        if (r) {
            st = fail_all(b, e->size, io_fail(r, 0, i, "sending the clock offset", timeout_ms));
            goto fail;
        }
    }
    *offset_ns = 0;
    *all = buf;
    return PT_OK;
fail:
    free(buf);
    return st;
}

static pt_status exchange_rank(const pt_boot_env *e, pt_boot *b, const void *addr, size_t addr_len, const char *err,
                               void **all, int64_t *offset_ns, int64_t deadline_ns)
{
    int64_t timeout_ms = timeout_of(deadline_ns);
    int r = addr ? msg_send(b->fd_master, MSG_ADDR, addr, (uint32_t)addr_len, deadline_ns)
                 : msg_send(b->fd_master, MSG_ERR, err, (uint32_t)strlen(err) + 1, deadline_ns);
    if (!addr)
        return pt_fail(PT_ECOMM, "rank %d: %s", e->rank, err);
    if (r)
        return io_fail(r, e->rank, 0, "sending the endpoint address", timeout_ms);
    *all = NULL;
    for (;;) {
        uint32_t type, len;
        void *p;
        r = msg_recv(b->fd_master, &type, &p, &len, deadline_ns);
        if (r) {
            free(*all);
            *all = NULL;
            return io_fail(r, e->rank, 0, "the addresses of the other ranks", timeout_ms);
        }
        if (type == MSG_ERR) {
            pt_status st = pt_fail(PT_ECOMM, "rank %d: %s", e->rank, (char *)p);
            free(p);
            free(*all);
            *all = NULL;
            return st;
        }
        if (type == MSG_ALLADDR && len == addr_len * (size_t)e->size) {
            *all = p;
            continue;
        }
        if (type == MSG_PING) {
            free(p);
            int64_t now = pt_now_ns();
            r = msg_send(b->fd_master, MSG_PONG, &now, sizeof now, deadline_ns);
            if (r) {
                free(*all);
                *all = NULL;
                return io_fail(r, e->rank, 0, "answering the clock ping", timeout_ms);
            }
            continue;
        }
        if (type == MSG_OFFSET && len == sizeof(int64_t) && *all) {
            memcpy(offset_ns, p, sizeof(int64_t));
            free(p);
            return PT_OK;
        }
        free(p);
        free(*all);
        *all = NULL;
        return pt_fail(PT_EINTERNAL, "rank %d: rendezvous: unexpected message %u (%u bytes) from rank 0", e->rank,
                       type, len);
    }
}

pt_status pt_boot_exchange(const pt_boot_env *e, pt_boot *b, const void *addr, size_t addr_len, const char *err,
                           void **all, int64_t *offset_ns, int64_t deadline_ns)
{
    *all = NULL;
    *offset_ns = 0;
    if (e->rank == 0)
        return exchange_root(e, b, addr, addr_len, err, all, offset_ns, deadline_ns);
    return exchange_rank(e, b, addr, addr_len, err, all, offset_ns, deadline_ns);
}

void pt_boot_close(pt_boot *b, int size)
{
    if (b->fd_master >= 0)
        close(b->fd_master);
    b->fd_master = -1;
    if (b->fds) {
        for (int i = 0; i < size; i++)
            if (b->fds[i] >= 0)
                close(b->fds[i]);
        free(b->fds);
        b->fds = NULL;
    }
    if (b->hostnames) {
        for (int i = 0; i < size; i++)
            free(b->hostnames[i]);
        free(b->hostnames);
        b->hostnames = NULL;
    }
}

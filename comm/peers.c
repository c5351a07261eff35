/* comm/peers.c — watching same-host peer processes, so that a rank that died is noticed at
 * once instead of through a timeout, and before libfabric is entered again.
 *
 * Why: libfabric's shm provider guards each rank's command queue with a spin lock in shared
 * memory that the senders take. A rank killed while it holds one leaves it held for good, and
 * the next fi_cq_read (or send) of a survivor spins inside libfabric forever: no deadline of
 * ours can fire while we are inside that call. So a monitor thread per comm sleeps in poll()
 * on the same-host peers' pidfds (readable when the process ends, zombie or not) and records
 * the first rank that ends. Waits on that rank then fail at once naming it (after one more
 * look at what it delivered), and the monitor turns watchdog: a libfabric call (PT_FI) that
 * stays inside for STUCK_MS is spinning on the dead rank's lock, and a signal makes its
 * handler jump back to the public entry point (PT_FAB_GUARDED in fabric.c), which fails
 * naming the dead rank; the comm then never enters libfabric again, not even to close it.
 * The signal is SIGRTMIN+6, taken only while nobody else handles it; without it (or without
 * the thread) deaths are still noticed, by polling, but a call already stuck stays stuck.
 *
 * A peer is watched only when it is certainly the process we think: same boot id (same
 * kernel, hence same host), and /proc/PID/stat start time equal to the one it sent at
 * rendezvous, read after the pidfd was opened (so a reused pid is not mistaken for the
 * peer). Peers on other hosts, in another pid namespace, or where pidfd_open is missing keep
 * only the deadline. A dead peer's shm region name is unlinked by the survivor that notices,
 * since the killed process could not. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "comm_internal.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define PEER_IDENT_MAGIC 0x70747069u /* "ptpi" */
#define STUCK_TICK_MS 50
#define STUCK_MS 250 /* more than one blocking CQ read (SREAD_MAX_MS in fabric.c) */

/* Field 22 (starttime, clock ticks since boot) of /proc/PID/stat; 0 when unreadable. */
static uint64_t proc_start_time(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name (field 2) may hold spaces and parentheses */
    if (!p)
        return 0;
    p++;
    /* after ')': field 3 (state) is the first; starttime is field 22, the 20th after it */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return 0;
    }
    return strtoull(p + 1, NULL, 10);
}

/* ---- escape from a libfabric call (see comm_internal.h) ---- */

static _Thread_local sigjmp_buf *t_jmp;             /* innermost guarded entry point */
static _Thread_local volatile sig_atomic_t t_armed; /* inside a PT_FI call under t_jmp */
static int g_escape_sig;                            /* 0: none (another handler owns it) */
static pthread_once_t g_escape_once = PTHREAD_ONCE_INIT;

static void on_escape_signal(int sig)
{
    (void)sig;
    if (t_armed && t_jmp) {
        t_armed = 0;
        siglongjmp(*t_jmp, 1); /* the signal stays blocked; pt_peers_escaped unblocks it */
    }
}

static void escape_install(void)
{
    int sig = SIGRTMIN + 6;
    struct sigaction old;
    if (sig > SIGRTMAX || sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_escape_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) == 0)
        g_escape_sig = sig;
}

sigjmp_buf *pt_escape_push(sigjmp_buf *env)
{
    sigjmp_buf *prev = t_jmp;
    t_jmp = env;
    return prev;
}

void pt_escape_pop(sigjmp_buf *prev) { t_jmp = prev; }

void pt_fab_enter(pt_comm *c)
{
    if (c->escaped && t_jmp)
        siglongjmp(*t_jmp, 1); /* the provider's state is not to be trusted any more */
    c->fabric_thread = pthread_self();
    atomic_fetch_add(&c->fab_seq, 1);
    atomic_store(&c->in_fabric, 1);
    t_armed = 1;
}

ssize_t pt_fab_leave(pt_comm *c, ssize_t ret)
{
    t_armed = 0;
    atomic_store(&c->in_fabric, 0);
    return ret;
}

pt_status pt_peers_escaped(pt_comm *c, sigjmp_buf *prev, const char *waiting_for)
{
    t_jmp = prev;
    t_armed = 0;
    atomic_store(&c->in_fabric, 0);
    if (g_escape_sig) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, g_escape_sig);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    c->escaped = 1;
    if (!waiting_for)
        return PT_ECOMM;
    if (pt_peers_dead(c) < 0) /* only a dead peer makes the jump */
        return pt_fail(PT_ECOMM, "rank %d: communication was interrupted", c->rank);
    return pt_peers_fail(c, waiting_for);
}

static void *monitor_main(void *arg)
{
    pt_comm *c = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals stay the application threads' business */
    int n = c->n_watched;
    for (;;) {
        if (poll(c->peer_poll, (nfds_t)n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (c->peer_poll[n].revents)
            return NULL; /* stop pipe closed */
        for (int i = 0; i < n; i++)
            if (c->peer_poll[i].revents) {
                atomic_store(&c->dead_async, c->peer_poll_rank[i]);
                goto watchdog;
            }
    }
watchdog:
    /* A peer is gone. Calls into libfabric still run (what it delivered before dying is
     * there to read), but one that stays inside the same call for STUCK_MS is spinning on a
     * lock the dead peer holds: signal it out. Blocking reads last SREAD_MAX_MS at most. */
    if (!g_escape_sig)
        return NULL;
    uint64_t seen = 0;
    int ticks = 0;
    for (;;) {
        int r = poll(&c->peer_poll[n], 1, STUCK_TICK_MS);
        if (r > 0)
            return NULL; /* stop pipe closed */
        uint64_t seq = atomic_load(&c->fab_seq);
        if (!atomic_load(&c->in_fabric) || seq != seen) {
            seen = seq;
            ticks = 0;
            continue;
        }
        if (++ticks * STUCK_TICK_MS >= STUCK_MS) {
            pthread_kill(c->fabric_thread, g_escape_sig);
            ticks = 0;
        }
    }
}

void pt_peer_ident_self(pt_peer_ident *id, const char *shm_region)
{
    memset(id, 0, sizeof *id);
    if (shm_region && strlen(shm_region) < sizeof id->shm_region)
        snprintf(id->shm_region, sizeof id->shm_region, "%s", shm_region);
    id->magic = PEER_IDENT_MAGIC;
    id->pid = (int32_t)getpid();
    id->start_time = proc_start_time(id->pid);
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, id->boot_id, sizeof id->boot_id - 1);
        close(fd);
        if (n < 0)
            n = 0;
        id->boot_id[n] = 0;
        char *nl = strchr(id->boot_id, '\n');
        if (nl)
            *nl = 0;
    }
}

pt_status pt_peers_watch(pt_comm *c, const pt_peer_ident *ids)
{
    c->dead_rank = -1;
    atomic_store(&c->dead_async, -1);
    c->monitor_stop[0] = c->monitor_stop[1] = -1;
    c->peer_pid = malloc(sizeof(int) * (size_t)c->size);
    c->peer_poll = malloc(sizeof(struct pollfd) * ((size_t)c->size + 1)); /* + the monitor's stop pipe */
    c->peer_poll_rank = malloc(sizeof(int) * (size_t)c->size);
    c->peer_region = calloc((size_t)c->size, sizeof *c->peer_region);
    c->peer_pidfd = malloc(sizeof(int) * (size_t)c->size);
    c->can_map = calloc((size_t)c->size, 1);
    if (!c->peer_pid || !c->peer_poll || !c->peer_poll_rank || !c->peer_region || !c->peer_pidfd || !c->can_map)
        return pt_fail(PT_ENOMEM, "rank %d: out of memory for the peer watch", c->rank);
    const pt_peer_ident *me = &ids[c->rank];
    for (int r = 0; r < c->size; r++)
        c->peer_pidfd[r] = -1;
    for (int r = 0; r < c->size; r++) {
        const pt_peer_ident *p = &ids[r];
        c->peer_pid[r] = p->magic == PEER_IDENT_MAGIC ? p->pid : 0;
        if (p->magic == PEER_IDENT_MAGIC && memchr(p->shm_region, 0, sizeof p->shm_region))
            memcpy(c->peer_region[r], p->shm_region, sizeof c->peer_region[r]);
        if (r == c->rank || p->magic != PEER_IDENT_MAGIC || !me->boot_id[0] || !p->start_time ||
            strcmp(me->boot_id, p->boot_id) != 0)
            continue;
        int fd = (int)syscall(SYS_pidfd_open, (pid_t)p->pid, 0);
        if (fd < 0)
            continue; /* gone already, another pid namespace, or no pidfd_open: deadline only */
        if (proc_start_time(p->pid) != p->start_time) {
            close(fd); /* not the same process (another pid namespace, or the pid was reused) */
            continue;
        }
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        c->peer_poll[c->n_watched] = (struct pollfd){ .fd = fd, .events = POLLIN };
        c->peer_poll_rank[c->n_watched] = r;
        c->n_watched++;
        c->peer_pidfd[r] = fd;
        c->can_map[r] = (unsigned char)pt_shmbuf_probe_peer(c, r, p); /* the direct path's precondition */
    }
    if (c->n_watched == 0)
        return PT_OK;
    pthread_once(&g_escape_once, escape_install);
    if (pipe2(c->monitor_stop, O_CLOEXEC) != 0) {
        c->monitor_stop[0] = c->monitor_stop[1] = -1;
        return PT_OK; /* no monitor: every libfabric call polls the pidfds */
    }
    c->peer_poll[c->n_watched] = (struct pollfd){ .fd = c->monitor_stop[0], .events = POLLIN };
    if (pthread_create(&c->monitor, NULL, monitor_main, c) == 0)
        c->monitor_on = 1;
    return PT_OK;
}

int pt_peers_dead(pt_comm *c)
{
    if (c->dead_rank >= 0 || c->n_watched == 0)
        return c->dead_rank;
    if (c->monitor_on) {
        int d = atomic_load(&c->dead_async);
        if (d < 0)
            return -1;
        c->dead_rank = d;
    } else {
        if (poll(c->peer_poll, (nfds_t)c->n_watched, 0) <= 0)
            return -1; /* none ended (or EINTR: asked again on the next call) */
        for (int i = 0; i < c->n_watched; i++)
            if (c->peer_poll[i].revents) {
                c->dead_rank = c->peer_poll_rank[i];
                break;
            }
        if (c->dead_rank < 0)
            return -1;
    }
    /* A killed rank leaves its shm region behind in /dev/shm; it is certainly dead (and was
     * on this host), so its region's name goes. Our mapping of it stays valid. */
    if (c->dead_rank >= 0 && strncmp(c->peer_region[c->dead_rank], "pipetrain-", 10) == 0)
        (void)shm_unlink(c->peer_region[c->dead_rank]);
    return c->dead_rank;
}

int pt_peers_exited(pt_comm *c, int peer)
{
    if (pt_peers_dead(c) == peer)
        return 1;
    int fd = c->peer_pidfd && peer >= 0 && peer < c->size ? c->peer_pidfd[peer] : -1;
    if (fd < 0 || c->dead_rank >= 0)
        return 0;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, 0) != 1)
        return 0;
    /* ended before the monitor said so: record it the way pt_peers_dead would */
    c->dead_rank = peer;
    if (strncmp(c->peer_region[peer], "pipetrain-", 10) == 0)
        (void)shm_unlink(c->peer_region[peer]);
    return 1;
}

int pt_peers_gone(pt_comm *c, int peer)
{
    int fd = c->peer_pidfd && peer >= 0 && peer < c->size ? c->peer_pidfd[peer] : -1;
    if (fd < 0)
        return 0;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 1;
}

pt_status pt_peers_fail(pt_comm *c, const char *waiting_for)
{
    int d = c->dead_rank;
    return pt_fail(PT_ECOMM, "rank %d: rank %d (pid %d, same host) exited while rank %d %s; check rank %d's log "
                             "for why it ended",
                   c->rank, d, c->peer_pid ? c->peer_pid[d] : 0, c->rank, waiting_for, d);
}

void pt_peers_close(pt_comm *c)
{
    if (c->monitor_on) {
        close(c->monitor_stop[1]); /* POLLHUP on the read end */
        c->monitor_stop[1] = -1;
        pthread_join(c->monitor, NULL);
        c->monitor_on = 0;
    }
    if (c->monitor_stop[0] >= 0)
        close(c->monitor_stop[0]);
    if (c->monitor_stop[1] >= 0)
        close(c->monitor_stop[1]);
    c->monitor_stop[0] = c->monitor_stop[1] = -1;
    for (int i = 0; i < c->n_watched; i++)
        close(c->peer_poll[i].fd);
    c->n_watched = 0;
    free(c->peer_pid);
    free(c->peer_poll);
    free(c->peer_poll_rank);
    free(c->peer_region);
    free(c->peer_pidfd);
    free(c->can_map);
    c->peer_pidfd = NULL;
    c->can_map = NULL;
    c->peer_region = NULL;
    c->peer_pid = NULL;
    c->peer_poll = NULL;
    c->peer_poll_rank = NULL;
}

/* comm/shmbuf.c — shared-memory message buffers and the direct same-host path's mappings.
 *
 * pt_comm_buf_alloc gives each buffer its own memfd (anonymous shared memory: no name in
 * /dev/shm, so nothing is left behind whatever way the process ends; the kernel frees the
 * pages when the last descriptor and mapping are gone). The owner keeps the descriptor open
 * while the buffer lives. A same-host peer that receives a direct announce (fabric.c) naming
 * (descriptor number, inode, segment size, offset) takes a copy of that descriptor from the
 * owner with pidfd_getfd(2) — or, where ptrace permission is refused, by opening
 * /proc/PID/fd/N — checks that it is the announced segment (same inode, large enough),
 * maps it read-only and copies the message out with one memcpy. Mappings are cached per
 * communicator, keyed by (peer, descriptor number) and checked against the inode, so the
 * runtime's fixed staging buffers are mapped once.
 *
 * A mapping stays valid when its owner dies (the receiver holds the pages), so a copy under
 * way is never hurt by a dying sender; what a death can lose is the announce or the finished
 * message, which the peer watch (peers.c) and the deadline cover.
 *
 * At rendezvous every rank publishes a one-page probe buffer holding its identity; a peer that
 * can map it and read that identity back can map the rank's buffers (probe_peer), and says so
 * in the connection check (comm.c). Only then does a sender use the direct path to it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "comm_internal.h"

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

/* ---- the process-wide segment registry ---- */

typedef struct pt_seg {
    uintptr_t base;
    size_t len;  /* mapped bytes (a multiple of the page size) */
    int fd;      /* memfd, -1 when the buffer could not be shared (plain anonymous memory) */
    uint64_t ino;
    struct pt_seg *next;
} pt_seg;

static pthread_mutex_t g_seg_lock = PTHREAD_MUTEX_INITIALIZER;
static pt_seg *g_segs;

static size_t page_round(size_t bytes)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    if (bytes == 0)
        bytes = 1;
    return (bytes + pg - 1) / pg * pg;
}

pt_status pt_comm_buf_alloc(size_t bytes, void **out)
{
    if (!out)
        return pt_fail(PT_EINVAL, "pt_comm_buf_alloc: out is NULL");
    *out = NULL;
    size_t len = page_round(bytes);
    if (len < bytes)
        return pt_fail(PT_EINVAL, "pt_comm_buf_alloc: %zu bytes is too large", bytes);
    pt_seg *s = calloc(1, sizeof *s);
    if (!s)
        return pt_fail(PT_ENOMEM, "out of memory for a message buffer's record");
    s->fd = (int)syscall(SYS_memfd_create, "pipetrain-buf", MFD_CLOEXEC);
    void *p = MAP_FAILED;
    struct stat sb;
    if (s->fd >= 0 && ftruncate(s->fd, (off_t)len) == 0 && fstat(s->fd, &sb) == 0) {
        s->ino = (uint64_t)sb.st_ino;
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
    }
    if (p == MAP_FAILED) {
        /* no shareable memory (memfd missing, or a memory limit on shmem): the buffer still
         * works, it just never takes the direct path */
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            free(s);
            return pt_fail(PT_ENOMEM, "out of memory for a %zu-byte message buffer (%s)", bytes, strerror(errno));
        }
    }
    s->base = (uintptr_t)p;
    s->len = len;
    pthread_mutex_lock(&g_seg_lock);
    s->next = g_segs;
    g_segs = s;
    pthread_mutex_unlock(&g_seg_lock);
    *out = p;
    return PT_OK;
}

void pt_comm_buf_free(void *buf)
{
    if (!buf)
        return;
    pt_seg *s = NULL;
    pthread_mutex_lock(&g_seg_lock);
    for (pt_seg **pp = &g_segs; *pp; pp = &(*pp)->next)
        if ((*pp)->base == (uintptr_t)buf) {
            s = *pp;
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&g_seg_lock);
    if (!s)
        return; /* not ours: documented as ignored */
    munmap((void *)s->base, s->len);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

int pt_shmbuf_find(const void *buf, size_t bytes, pt_shm_ref *ref)
{
    uintptr_t a = (uintptr_t)buf;
    int found = 0;
    pthread_mutex_lock(&g_seg_lock);
    for (pt_seg *s = g_segs; s; s = s->next)
        if (s->fd >= 0 && a >= s->base && a - s->base <= s->len && bytes <= s->len - (a - s->base)) {
            ref->fd = s->fd;
            ref->ino = s->ino;
            ref->seg_bytes = s->len;
            ref->offset = a - s->base;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&g_seg_lock);
    return found;
}

/* ---- the copy ---- */

/* From this size on, the copy bypasses the caches. glibc's memcpy here switches to non-temporal
 * stores only above 240 MiB (its threshold from this VM's cache sizes), so every line of a large
 * destination is first read for ownership and then written back: at 16 MiB into rotating
 * buffers that is 11 GB/s against 20 GB/s with streaming stores; below a few MiB, where the
 * destination stays in cache, plain memcpy is faster (bench/results/comm.md). */
#define STREAM_MIN ((size_t)4 << 20)

void pt_comm_memcpy(void *dst, const void *src, size_t n)
{
#if defined(__x86_64__)
    if (n >= STREAM_MIN) {
        char *d = dst;
        const char *s = src;
        size_t head = (64 - ((uintptr_t)d & 63)) & 63; /* stores go to whole, aligned lines */
        memcpy(d, s, head);
        d += head;
        s += head;
        n -= head;
        size_t body = n & ~(size_t)63;
        for (size_t i = 0; i < body; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
            _mm_stream_si128((__m128i *)(void *)(d + i), a);
            _mm_stream_si128((__m128i *)(void *)(d + i + 16), b);
            _mm_stream_si128((__m128i *)(void *)(d + i + 32), c);
            _mm_stream_si128((__m128i *)(void *)(d + i + 48), e);
        }
        _mm_sfence(); /* streaming stores are weakly ordered: done before the FIN is sent */
        memcpy(d + body, s + body, n - body);
        return;
    }
#endif
    memcpy(dst, src, n);
}

/* ---- a peer's segments, as seen by this rank ---- */

/* A descriptor for the peer's segment `fd`, checked to be inode `ino` of at least `min_bytes`;
 * -1 (errno set) when it cannot be had or is not that segment. */
static int peer_fd(pt_comm *c, int peer, int fd, uint64_t ino, uint64_t min_bytes)
{
    int got = -1;
    int pidfd = c->peer_pidfd ? c->peer_pidfd[peer] : -1;
    if (pidfd < 0 || fd < 0) {
        errno = ESRCH;
        return -1;
    }
    /* PT_COMM_NO_PIDFD_GETFD=1 goes straight to /proc (where a seccomp filter would kill the
     * process on pidfd_getfd instead of refusing it; and to test that path) */
    static int skip_getfd = -1;
    if (skip_getfd < 0) {
        const char *e = getenv("PT_COMM_NO_PIDFD_GETFD");
        skip_getfd = e && *e && strcmp(e, "0") != 0;
    }
    if (skip_getfd)
        errno = EPERM;
    else
        got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    if (got < 0 && errno != EBADF) {
        /* no ptrace permission (or no pidfd_getfd): /proc/PID/fd/N asks only for read access.
         * The pidfd still refers to the peer we checked at rendezvous, and the inode check
         * below catches a pid reused since. */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/%d", c->peer_pid[peer], fd);
        got = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (got < 0)
        return -1;
    struct stat sb;
    if (fstat(got, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_ino != ino ||
        (uint64_t)sb.st_size < min_bytes) {
        close(got);
        errno = ESTALE;
        return -1;
    }
    return got;
}

static void map_drop(pt_peer_map *m)
{
    if (m->base)
        munmap(m->base, m->len);
    memset(m, 0, sizeof *m);
}

const void *pt_shmbuf_peer_map(pt_comm *c, int peer, const pt_rma_desc *d, char *why, size_t why_cap)
{
    if (d->seg_bytes == 0 || d->addr > d->seg_bytes || d->bytes > d->seg_bytes - d->addr) {
        snprintf(why, why_cap, "the announce names bytes %llu..%llu of a %llu-byte segment",
                 (unsigned long long)d->addr, (unsigned long long)(d->addr + d->bytes),
                 (unsigned long long)d->seg_bytes);
        return NULL;
    }
    pt_peer_map *slot = NULL;
    for (int i = 0; i < PT_PEER_MAPS; i++) {
        pt_peer_map *m = &c->maps[i];
        if (m->base && m->peer == peer && m->fd == d->seg_fd) {
            if (m->ino == d->seg_ino && m->len >= d->seg_bytes) {
                m->last_use = ++c->map_clock;
                return (const char *)m->base + d->addr;
            }
            map_drop(m); /* the owner freed that buffer; its descriptor number now names another */
        }
        if (!slot || !m->base || (slot->base && m->last_use < slot->last_use))
            slot = m;
    }
    int fd = peer_fd(c, peer, d->seg_fd, d->seg_ino, d->seg_bytes);
    if (fd < 0) {
        snprintf(why, why_cap, "cannot take rank %d's buffer descriptor %d: %s", peer, (int)d->seg_fd,
                 strerror(errno));
        return NULL;
    }
    /* MAP_POPULATE: the page tables are filled now, not by faults in the middle of a copy */
    void *p = mmap(NULL, (size_t)d->seg_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    int err = errno;
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(why, why_cap, "cannot map %llu bytes of rank %d's buffer: %s", (unsigned long long)d->seg_bytes,
                 peer, strerror(err));
        return NULL;
    }
    map_drop(slot);
    slot->base = p;
    slot->len = (size_t)d->seg_bytes;
    slot->peer = peer;
    slot->fd = d->seg_fd;
    slot->ino = d->seg_ino;
    slot->last_use = ++c->map_clock;
    return (const char *)p + d->addr;
}

void pt_shmbuf_close(pt_comm *c)
{
    for (int i = 0; i < PT_PEER_MAPS; i++)
        map_drop(&c->maps[i]);
    pt_comm_buf_free(c->probe);
    c->probe = NULL;
    free(c->direct_to);
    c->direct_to = NULL;
}

/* ---- the probe ---- */

pt_status pt_shmbuf_probe_create(pt_comm *c, const pt_peer_ident *self, pt_probe_desc *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    PT_CHECK(pt_comm_buf_alloc(sizeof *self, &c->probe));
    memcpy(c->probe, self, sizeof *self);
    pt_shm_ref ref;
    if (!pt_shmbuf_find(c->probe, sizeof *self, &ref))
        return PT_OK; /* not shareable here: peers will find nothing and say so */
    out->fd = (int32_t)ref.fd;
    out->ino = ref.ino;
    out->bytes = ref.seg_bytes;
    return PT_OK;
}

int pt_shmbuf_probe_peer(pt_comm *c, int peer, const pt_peer_ident *id)
{
    if (!c->peer_pidfd || c->peer_pidfd[peer] < 0 || id->probe.fd < 0)
        return 0;
    int fd = peer_fd(c, peer, id->probe.fd, id->probe.ino, id->probe.bytes);
    if (fd < 0)
        return 0;
    void *p = mmap(NULL, (size_t)id->probe.bytes, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return 0;
    /* what the peer wrote into its probe must read back here: the memory really is shared */
    const pt_peer_ident *seen = p;
    int ok = seen->pid == id->pid && seen->start_time == id->start_time &&
             memcmp(seen->boot_id, id->boot_id, sizeof id->boot_id) == 0;
    munmap(p, (size_t)id->probe.bytes);
    return ok;
}

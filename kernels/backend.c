/* kernels/backend.c — backend lookup and the process-wide byte account of pt_backend_alloc.
 *
 * The account must know the size of every block at free time, and device memory (CUDA) cannot
 * carry a host-readable header, so sizes live in a small open-addressing hash table keyed by
 * the pointer, guarded by one mutex. Allocation is never on a hot path (slots and buffers are
 * allocated once), so a lock is cheap enough.
 */
#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"

#ifdef PT_HAVE_CUDA_BACKEND
extern const pt_backend pt_backend_cuda;
#endif

pt_status pt_backend_get(const char *name, const pt_backend **out)
{
    *out = NULL;
    if (name == NULL)
        return pt_fail(PT_EINVAL, "no backend named; use \"cpu\" or \"cuda\"");
    if (strcmp(name, "cpu") == 0) {
        *out = &pt_backend_cpu;
        return PT_OK;
    }
    if (strcmp(name, "cuda") == 0) {
#ifdef PT_HAVE_CUDA_BACKEND
        *out = &pt_backend_cuda;
        return PT_OK;
#else
        return pt_fail(PT_ENOTSUP, "backend \"cuda\" is not in this build; rebuild with -DPT_CUDA=ON on a "
                                   "machine with the CUDA toolkit");
#endif
    }
    return pt_fail(PT_EINVAL, "unknown backend \"%s\"; use \"cpu\" or \"cuda\"", name);
}

/* ---- the account ---- */

typedef struct pt_alloc_entry {
    uintptr_t ptr; /* 0: empty; PT_TOMBSTONE: deleted */
    size_t bytes;
} pt_alloc_entry;

#define PT_TOMBSTONE ((uintptr_t)1)

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pt_alloc_entry *g_table;  /* capacity g_cap (a power of two), or NULL before the first alloc */
static size_t g_cap, g_used;     /* g_used counts live entries and tombstones */
static size_t g_in_use, g_peak;

static size_t pt_alloc_hash(uintptr_t p, size_t cap)
{
    uint64_t h = (uint64_t)p * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing; blocks are 256-aligned */
    return (size_t)(h >> 17) & (cap - 1);
}

/* Inserts into `table`, reusing the first empty or deleted slot on the probe path (a live pointer
 * is never in the table twice, so this cannot shadow an entry). Caller made room. */
static void pt_alloc_insert(pt_alloc_entry *table, size_t cap, uintptr_t p, size_t bytes)
{
    size_t i = pt_alloc_hash(p, cap);
    while (table[i].ptr != 0 && table[i].ptr != PT_TOMBSTONE)
        i = (i + 1) & (cap - 1);
    table[i].ptr = p;
    table[i].bytes = bytes;
}

/* Caller holds g_lock. Keeps the load (live + tombstones) under one half. */
static int pt_alloc_reserve(void)
{
    if ((g_used + 1) * 2 <= g_cap)
        return 0;
    size_t live = 0;
    for (size_t i = 0; i < g_cap; i++)
        live += g_table[i].ptr > PT_TOMBSTONE;
    size_t cap = 1024;
    while ((live + 1) * 4 > cap)
        cap *= 2;
    pt_alloc_entry *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < g_cap; i++)
        if (g_table[i].ptr > PT_TOMBSTONE)
            pt_alloc_insert(t, cap, g_table[i].ptr, g_table[i].bytes);
    free(g_table);
    g_table = t;
    g_cap = cap;
    g_used = live;
    return 0;
}

pt_status pt_backend_alloc(const pt_backend *be, void **ptr, size_t bytes)
{
    *ptr = NULL;
    void *p = NULL;
    PT_CHECK(be->alloc(&p, bytes));
    pthread_mutex_lock(&g_lock);
    if (pt_alloc_reserve() != 0) {
        pthread_mutex_unlock(&g_lock);
        be->free(p);
        return pt_fail(PT_ENOMEM, "out of host memory for the allocation table (allocating %zu bytes on %s)",
                       bytes, be->name);
    }
    pt_alloc_insert(g_table, g_cap, (uintptr_t)p, bytes);
    g_used++;
    g_in_use += bytes;
    if (g_in_use > g_peak)
        g_peak = g_in_use;
    pthread_mutex_unlock(&g_lock);
    *ptr = p;
    return PT_OK;
}

void pt_backend_free(const pt_backend *be, void *ptr)
{
    if (ptr == NULL)
        return;
    pthread_mutex_lock(&g_lock);
    int found = 0;
    if (g_cap > 0) {
        size_t i = pt_alloc_hash((uintptr_t)ptr, g_cap);
        while (g_table[i].ptr != 0) {
            if (g_table[i].ptr == (uintptr_t)ptr) {
                g_in_use -= g_table[i].bytes;
                g_table[i].ptr = PT_TOMBSTONE;
                found = 1;
                break;
            }
            i = (i + 1) & (g_cap - 1);
        }
    }
    pthread_mutex_unlock(&g_lock);
    assert(found && "pt_backend_free of a pointer not from pt_backend_alloc");
    (void)found;
    be->free(ptr);
}

void pt_backend_account(long long bytes)
{
    pthread_mutex_lock(&g_lock);
    if (bytes < 0 && (size_t)(-bytes) > g_in_use)
        g_in_use = 0;
    else
        g_in_use += (size_t)bytes; /* wraps to the right value for a negative count */
    if (g_in_use > g_peak)
        g_peak = g_in_use;
    pthread_mutex_unlock(&g_lock);
}

size_t pt_backend_bytes_in_use(void)
{
    pthread_mutex_lock(&g_lock);
    size_t v = g_in_use;
    pthread_mutex_unlock(&g_lock);
    return v;
}

size_t pt_backend_bytes_peak(void)
{
    pthread_mutex_lock(&g_lock);
    size_t v = g_peak;
    pthread_mutex_unlock(&g_lock);
    return v;
}

void pt_backend_reset_peak(void)
{
    pthread_mutex_lock(&g_lock);
    g_peak = g_in_use;
    pthread_mutex_unlock(&g_lock);
}

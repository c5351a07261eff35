/* kernels/backend.c — backend lookup and the process-wide byte account of pt_backend_alloc, in
 * all and per kind of memory (pipetrain/memkind.h).
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
    int kind;      /* pt_mem_kind */
} pt_alloc_entry;

#define PT_TOMBSTONE ((uintptr_t)1)

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pt_alloc_entry *g_table;  /* capacity g_cap (a power of two), or NULL before the first alloc */
static size_t g_cap, g_used;     /* g_used counts live entries and tombstones */
static size_t g_in_use, g_peak;
static size_t g_kind_in_use[PT_MEM_KINDS], g_kind_peak[PT_MEM_KINDS];
static size_t g_peak_kinds[PT_MEM_KINDS]; /* the split of g_peak when it was reached */

static int pt_kind_ok(int kind) { return kind >= 0 && kind < PT_MEM_KINDS ? kind : PT_MEM_OTHER; }

/* Caller holds g_lock. Adds `add` bytes to `kind` (add > 0) or takes `sub` off it (clamped at 0
 * for account callers that take off more than they added), then updates the peaks. */
static void pt_acct_change(int kind, size_t add, size_t sub)
{
    if (sub > g_kind_in_use[kind])
        sub = g_kind_in_use[kind];
    g_kind_in_use[kind] += add;
    g_kind_in_use[kind] -= sub;
    g_in_use = g_in_use + add - sub;
    if (g_kind_in_use[kind] > g_kind_peak[kind])
        g_kind_peak[kind] = g_kind_in_use[kind];
    if (g_in_use > g_peak) {
        g_peak = g_in_use;
        memcpy(g_peak_kinds, g_kind_in_use, sizeof g_peak_kinds);
    }
}

static size_t pt_alloc_hash(uintptr_t p, size_t cap)
{
    uint64_t h = (uint64_t)p * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing; blocks are 256-aligned */
    return (size_t)(h >> 17) & (cap - 1);
}

/* Inserts into `table`, reusing the first empty or deleted slot on the probe path (a live pointer
 * is never in the table twice, so this cannot shadow an entry). Caller made room. */
static void pt_alloc_insert(pt_alloc_entry *table, size_t cap, uintptr_t p, size_t bytes, int kind)
{
    size_t i = pt_alloc_hash(p, cap);
    while (table[i].ptr != 0 && table[i].ptr != PT_TOMBSTONE)
        i = (i + 1) & (cap - 1);
    table[i].ptr = p;
    table[i].bytes = bytes;
    table[i].kind = kind;
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
            pt_alloc_insert(t, cap, g_table[i].ptr, g_table[i].bytes, g_table[i].kind);
    free(g_table);
    g_table = t;
    g_cap = cap;
    g_used = live;
    return 0;
}

pt_status pt_backend_alloc_kind(const pt_backend *be, void **ptr, size_t bytes, pt_mem_kind kind)
{
    *ptr = NULL;
    void *p = NULL;
    const int k = pt_kind_ok((int)kind);
    PT_CHECK(be->alloc(&p, bytes));
    pthread_mutex_lock(&g_lock);
    if (pt_alloc_reserve() != 0) {
        pthread_mutex_unlock(&g_lock);
        be->free(p);
        return pt_fail(PT_ENOMEM, "out of host memory for the allocation table (allocating %zu bytes of %s on %s)",
                       bytes, pt_mem_kind_name(k), be->name);
    }
    pt_alloc_insert(g_table, g_cap, (uintptr_t)p, bytes, k);
    g_used++;
    pt_acct_change(k, bytes, 0);
    pthread_mutex_unlock(&g_lock);
    *ptr = p;
    return PT_OK;
}

pt_status pt_backend_alloc(const pt_backend *be, void **ptr, size_t bytes)
{
    return pt_backend_alloc_kind(be, ptr, bytes, PT_MEM_OTHER);
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
                pt_acct_change(g_table[i].kind, 0, g_table[i].bytes);
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

void pt_backend_account_kind(long long bytes, pt_mem_kind kind)
{
    const int k = pt_kind_ok((int)kind);
    pthread_mutex_lock(&g_lock);
    if (bytes >= 0)
        pt_acct_change(k, (size_t)bytes, 0);
    else
        pt_acct_change(k, 0, (size_t)(-(bytes + 1)) + 1); /* -(LLONG_MIN) safely */
    pthread_mutex_unlock(&g_lock);
}

void pt_backend_account(long long bytes) { pt_backend_account_kind(bytes, PT_MEM_OTHER); }

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
    memcpy(g_kind_peak, g_kind_in_use, sizeof g_kind_peak);
    memcpy(g_peak_kinds, g_kind_in_use, sizeof g_peak_kinds);
    pthread_mutex_unlock(&g_lock);
}

void pt_backend_mem_stats(pt_mem_stats *out)
{
    pthread_mutex_lock(&g_lock);
    out->in_use = g_in_use;
    out->peak = g_peak;
    memcpy(out->kind_in_use, g_kind_in_use, sizeof out->kind_in_use);
    memcpy(out->kind_peak, g_kind_peak, sizeof out->kind_peak);
    memcpy(out->peak_kinds, g_peak_kinds, sizeof out->peak_kinds);
    pthread_mutex_unlock(&g_lock);
}

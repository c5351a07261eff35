/* Internal helpers shared by the files of schedule/ (not installed, not public). */
#ifndef PT_SCHED_INTERNAL_H
#define PT_SCHED_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "pipetrain/schedule.h"

/* Size limits: big enough for any real pipeline, small enough that P*V*M products and
 * per-rank action counts fit in an int with room to spare. */
#define PT_SCHED_MAX_RANKS 4096
#define PT_SCHED_MAX_CHUNKS 64
#define PT_SCHED_MAX_VSTAGES 65536
#define PT_SCHED_MAX_MICROBATCHES 65536
/* P*V*M (one forward per (micro-batch, chunk) per rank, summed over ranks) */
#define PT_SCHED_MAX_WORK (1 << 24)

/* Text-form token prefix of each kind ("F", "SA", "STEP"). */
extern const char *const pt_sched_kind_tokens[PT_ACT_KIND_COUNT];

/* A growable string (sbuf.c). On allocation failure `oom` is set and later appends do nothing. */
typedef struct pt_sbuf {
    char *p;
    size_t len, cap;
    int oom;
} pt_sbuf;

void pt_sbuf_printf(pt_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pt_sbuf_puts(pt_sbuf *b, const char *s);
/* Hands the string to the caller (*out malloc'd) or, after an allocation failure, frees it and
 * returns PT_ENOMEM naming `what`. */
pt_status pt_sbuf_finish(pt_sbuf *b, const char *what, char **out);

/* Appends a compute, AR or STEP action (no peer) to rank r's list: pt_sched_append's statuses. */
static inline pt_status pt_sched_add(pt_schedule *s, int r, pt_action_kind k, int mb, int chunk)
{
    return pt_sched_append(s, r, (pt_action){ k, mb, chunk, -1 });
}

/* Index of (microbatch, chunk) pairs: mb * V + chunk. */
static inline int pt_sched_pair(const pt_schedule *s, int mb, int chunk)
{
    return mb * s->n_chunks + chunk;
}

#endif

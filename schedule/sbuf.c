/* The growable string of schedule/ (sched_internal.h: pt_sbuf): what the text and CSV writers,
 * the file reader and the validator's messages build their output in. It sits beside the IR
 * and uses nothing of the module, so every file of schedule/ may use it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_internal.h"

static void sbuf_reserve(pt_sbuf *b, size_t extra)
{
    if (b->oom || b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void pt_sbuf_printf(pt_sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    sbuf_reserve(b, (size_t)n);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pt_sbuf_puts(pt_sbuf *b, const char *s)
{
    size_t n = strlen(s);
    sbuf_reserve(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

pt_status pt_sbuf_finish(pt_sbuf *b, const char *what, char **out)
{
    *out = NULL;
    sbuf_reserve(b, 0);
    if (b->oom) {
        free(b->p);
        b->p = NULL;
        return pt_fail(PT_ENOMEM, "%s: out of memory", what);
    }
    b->p[b->len] = '\0';
    *out = b->p;
    b->p = NULL;
    return PT_OK;
}

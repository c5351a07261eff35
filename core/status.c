#include "pipetrain/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char pt_err_msg[2048];

static const char *const pt_status_names[] = {
    [PT_OK] = "ok",
    [PT_EINVAL] = "invalid argument",
    [PT_ENOMEM] = "out of memory",
    [PT_EIO] = "i/o error",
    [PT_EFORMAT] = "bad format",
    [PT_ETIMEDOUT] = "timed out",
    [PT_ECOMM] = "communication error",
    [PT_EBACKEND] = "backend error",
    [PT_ENOTSUP] = "not supported",
    [PT_ENUMERIC] = "numeric error",
    [PT_EINTERNAL] = "internal error",
};
_Static_assert(sizeof pt_status_names / sizeof pt_status_names[0] == PT_STATUS_COUNT,
               "pt_status_names must list every pt_status");

pt_status pt_fail(pt_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pt_err_msg, sizeof pt_err_msg, fmt, ap);
    va_end(ap);
    return code;
}

pt_status pt_fail_wrap(pt_status code, const char *fmt, ...)
{
    char old[sizeof pt_err_msg];
    memcpy(old, pt_err_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pt_err_msg, sizeof pt_err_msg, fmt, ap);
    va_end(ap);
    /* prefix, then ": ", then the earlier message, cut to fit the buffer */
    size_t used = n < 0 ? 0 : (size_t)n < sizeof pt_err_msg ? (size_t)n : sizeof pt_err_msg - 1;
    const char *rest = old[0] ? old : pt_status_name(code);
    if (used + 2 < sizeof pt_err_msg) {
        memcpy(pt_err_msg + used, ": ", 3);
        used += 2;
        size_t room = sizeof pt_err_msg - 1 - used, len = strlen(rest);
        memcpy(pt_err_msg + used, rest, len < room ? len : room);
        pt_err_msg[used + (len < room ? len : room)] = '\0';
    }
    return code;
}

const char *pt_last_error(void) { return pt_err_msg; }

void pt_clear_error(void) { pt_err_msg[0] = '\0'; }

const char *pt_status_name(pt_status s)
{
    if ((unsigned)s >= PT_STATUS_COUNT)
        return "unknown status";
    return pt_status_names[s];
}

int pt_status_exit_code(pt_status s)
{
    if (s == PT_OK)
        return 0;
    return s == PT_EINVAL ? 2 : 1;
}

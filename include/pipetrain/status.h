/* pipetrain/status.h — errors as a status code plus one sentence that says what to do.
 *
 * Every function that can fail returns pt_status. Where the failure happens, pt_fail()
 * records the message (thread-local) and returns the code; callers pass it on with
 * PT_CHECK(expr), or PT_TRY(expr, label) when there is cleanup to do. main() turns a
 * status into an exit code and prints pt_last_error() as one line.
 *
 *     if (m.version > PT_CKPT_VERSION)
 *         return pt_fail(PT_EFORMAT, "%s: format %d is newer than this build (%d); upgrade pipetrain",
 *                        path, m.version, PT_CKPT_VERSION);
 *
 * Library code never prints and never calls exit().
 */
#ifndef PIPETRAIN_STATUS_H
#define PIPETRAIN_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pt_status {
    PT_OK = 0,
    PT_EINVAL,     /* bad argument, config or user input */
    PT_ENOMEM,     /* an allocation failed, or a plan does not fit the memory limit */
    PT_EIO,        /* file system or OS error */
    PT_EFORMAT,    /* a file is corrupt, truncated, or of an unknown version */
    PT_ETIMEDOUT,  /* a wait ran past its deadline */
    PT_ECOMM,      /* transport or peer failure */
    PT_EBACKEND,   /* kernel backend (CUDA, cuBLAS, BLAS) failure */
    PT_ENOTSUP,    /* not supported by this build or machine */
    PT_ENUMERIC,   /* NaN or Inf where a finite number is required */
    PT_EINTERNAL,  /* a bug in pipetrain: please report it */
    PT_STATUS_COUNT
} pt_status;

/* Records a printf-style message for the calling thread and returns `code`.
 * The message replaces any earlier one. Thread-safe (thread-local storage). */
pt_status pt_fail(pt_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like pt_fail, but puts "<prefix>: " before the message already recorded on this thread
 * (adds context on the way up). Returns `code`. */
pt_status pt_fail_wrap(pt_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message recorded by the last pt_fail on this thread ("" if none). Never NULL. */
const char *pt_last_error(void);

/* Clears this thread's message. */
void pt_clear_error(void);

/* Stable short name of a status ("ok", "invalid argument", ...). Never NULL. */
const char *pt_status_name(pt_status s);

/* Process exit code for a status: 0 for PT_OK, 2 for PT_EINVAL (usage), 1 otherwise. */
int pt_status_exit_code(pt_status s);

#define PT_CHECK(expr)                      \
    do {                                    \
        pt_status pt_check_s_ = (expr);     \
        if (pt_check_s_ != PT_OK)           \
            return pt_check_s_;             \
    } while (0)

/* Requires a local `pt_status st` in scope; jumps to `label` on failure. */
#define PT_TRY(expr, label)                 \
    do {                                    \
        st = (expr);                        \
        if (st != PT_OK)                    \
            goto label;                     \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif

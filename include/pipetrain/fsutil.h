/* pipetrain/fsutil.h — file-system helpers every module shares (pt_core). */
#ifndef PIPETRAIN_FSUTIL_H
#define PIPETRAIN_FSUTIL_H

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates directory `path` and the missing directories above it (mkdir -p, mode 0777 before the
 * umask). PT_OK when it exists as a directory afterwards; PT_EINVAL for an empty or too long path
 * or a path that exists and is not a directory; PT_EIO naming the directory that could not be
 * created and why. */
pt_status pt_mkdirs(const char *path);

#ifdef __cplusplus
}
#endif
#endif

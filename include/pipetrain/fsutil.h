/* pipetrain/fsutil.h — file-system helpers every module shares (pt_core). */
#ifndef PIPETRAIN_FSUTIL_H
#define PIPETRAIN_FSUTIL_H

#include <stddef.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates directory `path` and the missing directories above it (mkdir -p, mode 0777 before the
 * umask). PT_OK when it exists as a directory afterwards; PT_EINVAL for an empty or too long path
 * or a path that exists and is not a directory; PT_EIO naming the directory that could not be
 * created and why. */
pt_status pt_mkdirs(const char *path);

/* Replaces file `path` with the `len` bytes of buf, atomically: they are written to
 * path.tmp.<pid> in the same directory, fsynced, and renamed over path, so a reader sees the old
 * file or the new one, never a part. (The directory entry itself is durable only once the caller
 * fsyncs the directory, as a checkpoint commit does.) On error the temporary file is removed and
 * path is untouched; PT_EIO names the file and the failed call. */
pt_status pt_write_file_atomic(const char *path, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif

/* File-system helpers (fsutil.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/fsutil.h"

pt_status pt_mkdirs(const char *path)
{
    char buf[4096];
    size_t len = path ? strlen(path) : 0;
    if (len == 0 || len >= sizeof buf)
        return pt_fail(PT_EINVAL, "directory path '%s' is empty or too long", path ? path : "");
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return pt_fail(PT_EIO, "cannot create directory %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return pt_fail(PT_EINVAL, "%s exists and is not a directory; choose another path", path);
    return PT_OK;
}

pt_status pt_write_file_atomic(const char *path, const void *buf, size_t len)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return pt_fail(PT_EINVAL, "file path is too long: %.80s...", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return pt_fail(PT_EIO, "%s: cannot create (%s); check that its folder exists and is writable", tmp,
                       strerror(errno));
    const char *p = buf;
    size_t off = 0;
    const char *failed = NULL;
    while (off < len && !failed) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            failed = "write";
        else
            off += (size_t)w;
    }
    if (!failed && fsync(fd) != 0)
        failed = "fsync";
    int e = errno;
    if (close(fd) != 0 && !failed) {
        failed = "close";
        e = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = "rename";
        e = errno;
    }
    if (failed) {
        unlink(tmp);
        return pt_fail(PT_EIO, "%s: %s failed (%s); check the disk", failed[0] == 'r' ? path : tmp, failed,
                       strerror(e ? e : EIO));
    }
    return PT_OK;
}

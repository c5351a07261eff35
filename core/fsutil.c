/* File-system helpers (fsutil.h). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

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

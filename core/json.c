#include "pipetrain/json.h"
#include "pipetrain/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pt_status pt_json_parse(const char *text, size_t len, const char *what, cJSON **out)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - text) : 0;
        return pt_fail(PT_EFORMAT, "%s: not valid JSON near byte %zu; fix the file or regenerate it", what, off);
    }
    *out = root;
    return PT_OK;
}

pt_status pt_json_read_file(const char *path, cJSON **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(PT_EIO, "%s: cannot open (%s)", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return pt_fail(PT_EIO, "%s: cannot seek (%s)", path, strerror(errno));
    }
    long n = ftell(f);
    rewind(f);
    if (n < 0 || n > (1L << 30)) {
        fclose(f);
        return pt_fail(PT_EFORMAT, "%s: size %ld is not a plausible JSON file", path, n);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return pt_fail(PT_ENOMEM, "%s: cannot allocate %ld bytes", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return pt_fail(PT_EIO, "%s: short read (%zu of %ld bytes)", path, got, n);
    }
    buf[n] = '\0';
    pt_status st = pt_json_parse(buf, (size_t)n, path, out);
    free(buf);
    return st;
}

pt_status pt_json_get_int(const cJSON *obj, const char *what, const char *key, long long lo, long long hi,
                          long long *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it)
        return pt_fail(PT_EINVAL, "%s: missing field \"%s\"", what, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble != floor(it->valuedouble))
        return pt_fail(PT_EINVAL, "%s: field \"%s\" must be an integer", what, key);
    double v = it->valuedouble;
    if (v < (double)lo || v > (double)hi)
        return pt_fail(PT_EINVAL, "%s: field \"%s\" is %.0f; it must be between %lld and %lld", what, key, v, lo,
                       hi);
    *out = (long long)v;
    return PT_OK;
}

pt_status pt_json_get_double(const cJSON *obj, const char *what, const char *key, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it)
        return pt_fail(PT_EINVAL, "%s: missing field \"%s\"", what, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return pt_fail(PT_EINVAL, "%s: field \"%s\" must be a finite number", what, key);
    *out = it->valuedouble;
    return PT_OK;
}

pt_status pt_json_get_string(const cJSON *obj, const char *what, const char *key, const char **out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it)
        return pt_fail(PT_EINVAL, "%s: missing field \"%s\"", what, key);
    if (!cJSON_IsString(it))
        return pt_fail(PT_EINVAL, "%s: field \"%s\" must be a string", what, key);
    *out = it->valuestring;
    return PT_OK;
}

pt_status pt_json_check_keys(const cJSON *obj, const char *what, const char *const *allowed)
{
    if (!cJSON_IsObject(obj))
        return pt_fail(PT_EINVAL, "%s: expected a JSON object", what);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (it->string && strcmp(it->string, *a) == 0) {
                ok = 1;
                break;
            }
        if (!ok) {
            char list[512] = "";
            for (const char *const *a = allowed; *a; a++) {
                if (list[0])
                    strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, *a, sizeof list - strlen(list) - 1);
            }
            return pt_fail(PT_EINVAL, "%s: unknown field \"%s\"; known fields are: %s", what,
                           it->string ? it->string : "?", list);
        }
    }
    return PT_OK;
}

pt_status pt_json_write_file(const char *path, const cJSON *obj, int compact)
{
    char *text = compact ? cJSON_PrintUnformatted(obj) : cJSON_Print(obj);
    size_t len = text ? strlen(text) : 0;
    char *line = text ? realloc(text, len + 2) : NULL;
    if (!line) {
        free(text);
        return pt_fail(PT_ENOMEM, "%s: cannot format JSON", path);
    }
    line[len] = '\n';
    line[len + 1] = 0;
    pt_status st = pt_write_file_atomic(path, line, len + 1);
    free(line);
    return st;
}

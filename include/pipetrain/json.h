/* pipetrain/json.h — the one way pipetrain reads and writes JSON (configs, cost files,
 * manifests, summaries): cJSON (Debian's libcjson) plus helpers that turn type errors
 * and unknown keys into one-line messages naming the file and field.
 *
 *     cJSON *root;
 *     PT_CHECK(pt_json_read_file(path, &root));
 *     int n_layer;
 *     pt_status st = pt_json_get_int(root, path, "n_layer", 1, 1024, &n_layer);
 *     cJSON_Delete(root);
 */
#ifndef PIPETRAIN_JSON_H
#define PIPETRAIN_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "pipetrain/status.h"

/* Parses a whole file. Returns PT_EIO (cannot read), PT_EFORMAT (not JSON, with the
 * byte offset of the error) or PT_OK; *out is owned by the caller (cJSON_Delete). */
pt_status pt_json_read_file(const char *path, cJSON **out);

/* Parses a string; `what` names it in errors. */
pt_status pt_json_parse(const char *text, size_t len, const char *what, cJSON **out);

/* Reads an integer field `key` of object `obj` within [lo, hi]. `what` names the file
 * or object in the error. Missing field: PT_EINVAL. */
pt_status pt_json_get_int(const cJSON *obj, const char *what, const char *key, long long lo, long long hi,
                          long long *out);
pt_status pt_json_get_double(const cJSON *obj, const char *what, const char *key, double *out);
/* Borrowed pointer into `obj`; valid while obj lives. */
pt_status pt_json_get_string(const cJSON *obj, const char *what, const char *key, const char **out);

/* Refuses keys of `obj` not in the NULL-terminated list `allowed`, naming the first one. */
pt_status pt_json_check_keys(const cJSON *obj, const char *what, const char *const *allowed);

/* Prints `obj` (unformatted when compact != 0) and writes it to `path` through a temporary
 * file, fsync and rename, so readers never see half a file. */
pt_status pt_json_write_file(const char *path, const cJSON *obj, int compact);

#endif

/* Tests of the shared core: status messages, JSON helpers, deadlines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/status.h"
#include "pipetrain/timeutil.h"

static int failures;
#define EXPECT(cond)                                                                                     \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond, pt_last_error()); \
            failures++;                                                                                  \
        }                                                                                                \
    } while (0)

/* The whole contents of path (at most cap - 1 bytes), or "" when it cannot be read. */
static const char *slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n = fread(buf, 1, cap - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    return buf;
}

/* pt_write_file_atomic: creates, replaces, leaves no temporary file, and on a failure keeps the old
 * file and says which file and call failed. */
static void test_write_file_atomic(void)
{
    char buf[64], tmp[64];
    unlink("atomic.txt");
    EXPECT(pt_write_file_atomic("atomic.txt", "one\n", 4) == PT_OK);
    EXPECT(strcmp(slurp("atomic.txt", buf, sizeof buf), "one\n") == 0);
    EXPECT(pt_write_file_atomic("atomic.txt", "second", 6) == PT_OK);
    EXPECT(strcmp(slurp("atomic.txt", buf, sizeof buf), "second") == 0);
    snprintf(tmp, sizeof tmp, "atomic.txt.tmp.%d", (int)getpid());
    EXPECT(access(tmp, F_OK) != 0);
    EXPECT(pt_write_file_atomic("no-such-dir/atomic.txt", "x", 1) == PT_EIO);
    EXPECT(strstr(pt_last_error(), "no-such-dir/atomic.txt.tmp.") != NULL);
    /* a directory in the way: the rename fails, the temporary file goes, the directory stays */
    EXPECT(pt_mkdirs("atomic-dir/inside") == PT_OK);
    EXPECT(pt_write_file_atomic("atomic-dir", "x", 1) == PT_EIO);
    EXPECT(strstr(pt_last_error(), "atomic-dir: rename failed") != NULL);
    snprintf(tmp, sizeof tmp, "atomic-dir.tmp.%d", (int)getpid());
    EXPECT(access(tmp, F_OK) != 0);
    EXPECT(access("atomic-dir/inside", F_OK) == 0);
    EXPECT(pt_write_file_atomic("atomic.txt", "", 0) == PT_OK);
    EXPECT(strcmp(slurp("atomic.txt", buf, sizeof buf), "") == 0);
}

static pt_status fails_inner(void) { return pt_fail(PT_EIO, "disk gone"); }
static pt_status fails_outer(void)
{
    pt_status st = fails_inner();
    return st == PT_OK ? st : pt_fail_wrap(st, "loading %s", "x.bin");
}

int main(void)
{
    test_write_file_atomic();
    EXPECT(fails_outer() == PT_EIO);
    EXPECT(strcmp(pt_last_error(), "loading x.bin: disk gone") == 0);
    EXPECT(pt_status_exit_code(PT_OK) == 0 && pt_status_exit_code(PT_EINVAL) == 2 &&
           pt_status_exit_code(PT_EIO) == 1);
    EXPECT(strcmp(pt_status_name(PT_ETIMEDOUT), "timed out") == 0);
    EXPECT(strcmp(pt_status_name((pt_status)999), "unknown status") == 0);

    cJSON *j = NULL;
    const char *good = "{\"n_layer\": 4, \"name\": \"x\", \"lr\": 0.5}";
    EXPECT(pt_json_parse(good, strlen(good), "cfg", &j) == PT_OK);
    long long v = 0;
    EXPECT(pt_json_get_int(j, "cfg", "n_layer", 1, 10, &v) == PT_OK && v == 4);
    EXPECT(pt_json_get_int(j, "cfg", "n_layer", 5, 10, &v) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "between 5 and 10") != NULL);
    EXPECT(pt_json_get_int(j, "cfg", "lr", 0, 10, &v) == PT_EINVAL);
    EXPECT(pt_json_get_int(j, "cfg", "missing", 0, 10, &v) == PT_EINVAL);
    const char *allowed[] = { "n_layer", "name", NULL };
    EXPECT(pt_json_check_keys(j, "cfg", allowed) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "\"lr\"") != NULL);
    EXPECT(pt_json_write_file("out.json", j, 0) == PT_OK);
    cJSON_Delete(j);
    j = NULL;
    EXPECT(pt_json_read_file("out.json", &j) == PT_OK);
    const char *s = NULL;
    EXPECT(j && pt_json_get_string(j, "out.json", "name", &s) == PT_OK && strcmp(s, "x") == 0);
    cJSON_Delete(j);
    const char *bad = "{\"a\": [1, 2,";
    EXPECT(pt_json_parse(bad, strlen(bad), "bad.json", &j) == PT_EFORMAT);
    EXPECT(pt_json_read_file("does-not-exist.json", &j) == PT_EIO);

    int64_t d = pt_deadline_after_ms(-1);
    EXPECT(!pt_deadline_passed(d));
    EXPECT(pt_deadline_passed(pt_deadline_after_ms(0) - 1));
    EXPECT(pt_now_ns() > 0);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("core: all checks passed\n");
    return 0;
}

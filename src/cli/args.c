#include "args.h"
#include "pipetrain/partition.h"
#include "pipetrain/train.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pt_status pt_args_parse_bytes(const char *text, size_t *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno != 0 || !(v >= 0) || !isfinite(v))
        return pt_fail(PT_EINVAL, "'%s' is not a size; write bytes like 4096, 512M or 24G", text);
    double mul = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mul = 1024.0; break;
        case 'm': case 'M': mul = 1024.0 * 1024; break;
        case 'g': case 'G': mul = 1024.0 * 1024 * 1024; break;
        case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
        default: return pt_fail(PT_EINVAL, "'%s' is not a size; write bytes like 4096, 512M or 24G", text);
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end)
            return pt_fail(PT_EINVAL, "'%s' is not a size; write bytes like 4096, 512M or 24G", text);
    }
    double bytes = v * mul;
    if (bytes > (double)SIZE_MAX / 2)
        return pt_fail(PT_EINVAL, "'%s' is too large a size", text);
    *out = (size_t)bytes;
    return PT_OK;
}

static void print_default(const pt_opt *o)
{
    if (o->default_text) {
        printf(" (default: %s)", o->default_text);
        return;
    }
    switch (o->type) {
    case PT_OPT_FLAG: break;
    case PT_OPT_INT: printf(" (default %d)", *(int *)o->dst); break;
    case PT_OPT_INT64: printf(" (default %lld)", *(long long *)o->dst); break;
    case PT_OPT_DOUBLE: printf(" (default %g)", *(double *)o->dst); break;
    case PT_OPT_STRING:
        if (*(const char **)o->dst)
            printf(" (default %s)", *(const char **)o->dst);
        break;
    case PT_OPT_BYTES:
        if (*(size_t *)o->dst)
            printf(" (default %zu bytes)", *(size_t *)o->dst);
        break;
    }
}

void pt_args_print_help(const pt_cmd_spec *spec)
{
    printf("usage: %s\n\n%s\n", spec->usage, spec->summary);
    if (spec->n_opts > 0)
        printf("\noptions:\n");
    for (int i = 0; i < spec->n_opts; i++) {
        const pt_opt *o = &spec->opts[i];
        char left[96];
        if (o->metavar)
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar);
        else
            snprintf(left, sizeof left, "--%s", o->name);
        printf("  %-28s %s", left, o->help ? o->help : "");
        print_default(o);
        printf("\n");
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
    if (spec->epilog)
        printf("\n%s\n", spec->epilog);
}

static pt_status set_value(pt_opt *o, const char *val)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case PT_OPT_FLAG: *(int *)o->dst = 1; return PT_OK;
    case PT_OPT_INT: {
        long v = strtol(val, &end, 10);
        if (end == val || *end || errno || v < INT_MIN || v > INT_MAX)
            return pt_fail(PT_EINVAL, "--%s expects an integer %s, got '%s'", o->name, o->metavar ? o->metavar : "",
                           val);
        *(int *)o->dst = (int)v;
        return PT_OK;
    }
    case PT_OPT_INT64: {
        long long v = strtoll(val, &end, 10);
        if (end == val || *end || errno)
            return pt_fail(PT_EINVAL, "--%s expects an integer, got '%s'", o->name, val);
        *(long long *)o->dst = v;
        return PT_OK;
    }
    case PT_OPT_DOUBLE: {
        double v = strtod(val, &end);
        if (end == val || *end || errno || !isfinite(v))
            return pt_fail(PT_EINVAL, "--%s expects a number, got '%s'", o->name, val);
        *(double *)o->dst = v;
        return PT_OK;
    }
    case PT_OPT_STRING: *(const char **)o->dst = val; return PT_OK;
    case PT_OPT_BYTES: {
        pt_status st = pt_args_parse_bytes(val, (size_t *)o->dst);
        if (st != PT_OK)
            return pt_fail_wrap(st, "--%s", o->name);
        return PT_OK;
    }
    }
    return pt_fail(PT_EINTERNAL, "--%s: unknown option type", o->name);
}

pt_status pt_args_parse_n(pt_cmd_spec *spec, int argc, char **argv, char **pos, int n, const char *what, int *done)
{
    char *all[16];
    int n_pos = 0;
    PT_CHECK(pt_args_parse(spec, argc, argv, all, 16, &n_pos, done));
    if (!*done && n_pos != n)
        return pt_fail(PT_EINVAL, "%s needs %s (usage: %s)", argv[0], what, spec->usage);
    for (int i = 0; i < n_pos; i++)
        pos[i] = all[i];
    return PT_OK;
}

pt_status pt_args_parse(pt_cmd_spec *spec, int argc, char **argv, char **pos, int max_pos, int *n_pos, int *done)
{
    int np = 0;
    *done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            pt_args_print_help(spec);
            *done = 1;
            return PT_OK;
        }
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (np >= max_pos)
                    return pt_fail(PT_EINVAL, "too many arguments after --; see '%s --help'", argv[0]);
                pos[np++] = argv[i];
            }
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (np >= max_pos)
                return pt_fail(PT_EINVAL, "unexpected argument '%s'; see '%s --help'", a, argv[0]);
            pos[np++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        pt_opt *o = NULL;
        int by_alias = 0;
        for (int k = 0; k < spec->n_opts && !o; k++)
            if (strlen(spec->opts[k].name) == len && strncmp(spec->opts[k].name, name, len) == 0)
                o = &spec->opts[k];
        for (int k = 0; k < spec->n_opts && !o; k++) {
            const char *al = spec->opts[k].alias;
            if (al && strlen(al) == len && strncmp(al, name, len) == 0) {
                o = &spec->opts[k];
                by_alias = 1;
            }
        }
        if (o && by_alias && !o->seen) /* one line, once: the old spelling works for one more release */
            fprintf(stderr, "pipetrain: --%s is deprecated; use --%s (the old name goes in the next release)\n",
                    o->alias, o->name);
        if (!o)
            return pt_fail(PT_EINVAL, "unknown option '%.*s'; see '%s --help'", (int)(len + 2), a, argv[0]);
        const char *val = NULL;
        if (o->type == PT_OPT_FLAG) {
            if (eq)
                return pt_fail(PT_EINVAL, "--%s takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return pt_fail(PT_EINVAL, "--%s needs a value (%s)", o->name, o->metavar ? o->metavar : "value");
            val = argv[++i];
        }
        PT_CHECK(set_value(o, val));
        o->seen = 1;
    }
    if (n_pos)
        *n_pos = np;
    return PT_OK;
}

pt_status pt_args_enum(const char *opt, const char *val, const char *const *names, const char *extra, int *idx)
{
    int n = 0;
    for (; names[n]; n++)
        if (val && strcmp(val, names[n]) == 0) {
            if (idx)
                *idx = n;
            return PT_OK;
        }
    char list[512];
    size_t off = 0;
    list[0] = '\0';
    for (int k = 0; k < n && off + 2 < sizeof list; k++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", k ? ", " : "", names[k]);
    return pt_fail(PT_EINVAL, "--%s '%s' is not one of: %s%s%s", opt, val ? val : "", list, extra ? ", " : "",
                   extra ? extra : "");
}

int pt_cli_finish(pt_status st)
{
    if (st == PT_OK)
        return 0;
    const char *msg = pt_last_error();
    fprintf(stderr, "pipetrain: %s\n", msg[0] ? msg : pt_status_name(st));
    return pt_status_exit_code(st);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double pt_cli_median(double *x, size_t n)
{
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

pt_status pt_args_head_chunk(const char *text, int *rows)
{
    *rows = 0;
    if (!text || !text[0] || strcmp(text, "auto") == 0)
        return PT_OK;
    if (strcmp(text, "off") == 0) {
        *rows = PT_HEAD_CHUNK_OFF;
        return PT_OK;
    }
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (*end != '\0' || v < 1 || v > (1L << 24))
        return pt_fail(PT_EINVAL, "--head-chunk: '%s' is neither a count of token rows (1 to %ld) nor auto or off; use "
                                  "e.g. --head-chunk 2048",
                       text, 1L << 24);
    *rows = (int)v;
    return PT_OK;
}

pt_status pt_args_head_split(const char *text, int *k)
{
    *k = 0;
    if (!text || !text[0])
        return PT_OK;
    if (strcmp(text, "auto") == 0) {
        *k = PT_HEAD_SPLIT_AUTO;
        return PT_OK;
    }
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (*end != '\0' || v < 1 || v > INT_MAX) /* the model config checks the upper bound */
        return pt_fail(PT_EINVAL, "--head-split: '%s' is neither a count of LM-head layers nor auto; use e.g. "
                                  "--head-split 4 or --head-split auto",
                       text);
    *k = (int)v;
    return PT_OK;
}

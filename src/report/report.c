/* src/report/report.c — `pipetrain report`: one self-contained HTML page for a run directory
 * (include/pipetrain/report.h, docs/report.md).
 *
 * The page is built in memory (open_memstream) from three sources — metrics.jsonl, config.json
 * and the profile folder — and then written through tmp + fsync + rename. Charts are inline SVG
 * drawn here; the profile's timeline.svg is embedded as it is. No script, no external resource.
 */
#include "pipetrain/report.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"

/* Files the report reads are the run's own; these caps only keep a wrong path (a disk image
 * named metrics.jsonl) from exhausting memory. */
#define RPT_METRICS_MAX_BYTES ((size_t)4 << 30)
#define RPT_SVG_MAX_BYTES ((size_t)64 << 20)
#define RPT_MAX_NOTES 24
#define RPT_NOTE_LEN 400
/* the header's tokens/s and step time: the mean of the last this many steps (step 1 left out) */
#define RPT_RECENT_STEPS 20

/* ---- small helpers ---- */

typedef struct series {
    double *x, *y;
    long long n, cap;
} series;

static pt_status series_push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        long long cap = s->cap ? 2 * s->cap : 256;
        double *nx = realloc(s->x, (size_t)cap * sizeof *nx);
        if (!nx)
            return pt_fail(PT_ENOMEM, "out of memory reading the metrics (%lld points)", cap);
        s->x = nx;
        double *ny = realloc(s->y, (size_t)cap * sizeof *ny);
        if (!ny)
            return pt_fail(PT_ENOMEM, "out of memory reading the metrics (%lld points)", cap);
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return PT_OK;
}

/* Drops the points at step >= step (a resumed run redoes them). */
static void series_cut(series *s, double step)
{
    while (s->n > 0 && s->x[s->n - 1] >= step)
        s->n--;
}

static void series_free(series *s)
{
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Reads a whole file into a NUL-terminated buffer (owned by the caller). */
static pt_status read_all(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pt_fail(PT_EIO, "%s: cannot open (%s)", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return pt_fail(PT_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                free(buf);
                fclose(f);
                return pt_fail(PT_EFORMAT, "%s: larger than %zu MiB; is this the right file?", path, max_bytes >> 20);
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return pt_fail(PT_ENOMEM, "%s: out of memory (%zu bytes)", path, cap);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return pt_fail(PT_EIO, "%s: read failed", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return PT_OK;
}

/* One row of the predicted-vs-measured table: label, then the plan's prediction, the profile's
 * measurement and the metrics' recent mean, each printed with fmt where it is known, else "-". */
static void pred_row(FILE *f, const char *label, const char *fmt, int has_pred, double pred, int has_prof,
                     double prof, int has_metrics, double metrics)
{
    char cell[3][64];
    const int has[3] = { has_pred, has_prof, has_metrics };
    const double v[3] = { pred, prof, metrics };
    for (int i = 0; i < 3; i++) {
        if (has[i])
            snprintf(cell[i], sizeof cell[i], fmt, v[i]);
        else
            snprintf(cell[i], sizeof cell[i], "-");
    }
    fprintf(f, "<tr><td class=\"l\">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", label, cell[0], cell[1],
            cell[2]);
}

/* Writes s with &, <, >, " escaped. */
static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A number field: 1 with *out set when `key` is a number, 0 otherwise (absent, null, text). */
static int jnum(const cJSON *o, const char *key, double *out)
{
    const cJSON *it = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    if (!cJSON_IsNumber(it))
        return 0;
    *out = it->valuedouble;
    return 1;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *it = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* ---- what the report knows about the run ---- */

typedef struct run_info {
    const pt_report_opts *o;
    char metrics_path[PATH_MAX], config_path[PATH_MAX], profile_dir[PATH_MAX], output_path[PATH_MAX];
    /* metrics.jsonl */
    series steps, loss, lr, tps, gnorm, step_ms, fwd_ms, bwd_ms, optim_ms; /* steps: one point per step line */
    series eval_loss, eval_acc;
    char eval_metric[64];
    double last_eval_correct, last_eval_total;
    int has_last_eval_counts;
    long long n_step_lines, n_eval_lines, n_other_lines, n_null_values;
    long long last_step, n_resumes, first_resume_step;
    double eval_ms_total;
    /* config.json, profile/summary.json (NULL when absent or unreadable) */
    cJSON *config, *summary;
    char *timeline_svg; /* the profile's timeline, ready to embed (prolog removed) */
    int has_trace;
    char notes[RPT_MAX_NOTES][RPT_NOTE_LEN];
    int n_notes, n_notes_dropped;
} run_info;

static void note(run_info *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(run_info *r, const char *fmt, ...)
{
    if (r->n_notes == RPT_MAX_NOTES) {
        r->n_notes_dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->n_notes++], RPT_NOTE_LEN, fmt, ap);
    va_end(ap);
}

static void run_info_free(run_info *r)
{
    series *all[] = { &r->steps, &r->loss, &r->lr, &r->tps, &r->gnorm, &r->step_ms, &r->fwd_ms, &r->bwd_ms, &r->optim_ms,
                      &r->eval_loss, &r->eval_acc };
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        series_free(all[k]);
    cJSON_Delete(r->config);
    cJSON_Delete(r->summary);
    free(r->timeline_svg);
}

/* Appends field `key` of a step record to s; a null (NaN/Inf written by cJSON) is counted. */
static pt_status push_field(run_info *r, series *s, const cJSON *o, const char *key, double step)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it)
        return PT_OK;
    if (cJSON_IsNull(it)) {
        r->n_null_values++;
        return PT_OK;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return PT_OK;
    return series_push(s, step, it->valuedouble);
}

static pt_status take_step_line(run_info *r, const cJSON *o, double step)
{
    series *steps[] = { &r->loss, &r->lr, &r->tps, &r->gnorm, &r->step_ms, &r->fwd_ms, &r->bwd_ms, &r->optim_ms };
    if (r->n_step_lines > 0 && step <= (double)r->last_step) {
        /* a resumed run appends from its checkpoint's step: its lines replace the ones it redoes */
        if (r->n_resumes++ == 0)
            r->first_resume_step = (long long)step;
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++)
            series_cut(steps[k], step);
        series_cut(&r->steps, step);
        series_cut(&r->eval_loss, step);
        series_cut(&r->eval_acc, step);
    }
    static const char *const keys[] = { "loss", "lr", "tokens_per_s", "grad_norm", "step_ms", "fwd_ms", "bwd_ms",
                                        "optim_ms" };
    _Static_assert(sizeof keys / sizeof keys[0] == sizeof steps / sizeof steps[0], "one key per step series");
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++)
        PT_CHECK(push_field(r, steps[k], o, keys[k], step));
    PT_CHECK(series_push(&r->steps, step, 0));
    r->n_step_lines++;
    r->last_step = (long long)step;
    return PT_OK;
}

static pt_status take_eval_line(run_info *r, const cJSON *o, double step)
{
    series_cut(&r->eval_loss, step); /* an eval redone at the same step replaces the first */
    series_cut(&r->eval_acc, step);
    PT_CHECK(push_field(r, &r->eval_loss, o, "eval_loss", step));
    PT_CHECK(push_field(r, &r->eval_acc, o, "eval_accuracy", step));
    const char *metric = jstr(o, "eval_metric");
    if (metric)
        snprintf(r->eval_metric, sizeof r->eval_metric, "%s", metric);
    double c, t, ms;
    r->has_last_eval_counts = jnum(o, "eval_correct", &c) && jnum(o, "eval_total", &t);
    if (r->has_last_eval_counts) {
        r->last_eval_correct = c;
        r->last_eval_total = t;
    }
    if (jnum(o, "eval_ms", &ms))
        r->eval_ms_total += ms;
    r->n_eval_lines++;
    return PT_OK;
}

static pt_status read_metrics(run_info *r)
{
    char *buf;
    size_t len;
    PT_CHECK(read_all(r->metrics_path, RPT_METRICS_MAX_BYTES, &buf, &len));
    pt_status st = PT_OK;
    long long line_no = 0;
    size_t pos = 0;
    while (pos < len) {
        line_no++;
        char *line = buf + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        size_t k = 0;
        while (k < n && isspace((unsigned char)line[k]))
            k++;
        if (k == n)
            continue; /* blank line */
        cJSON *o = cJSON_ParseWithLength(line, n);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            if (!nl) { /* the run is writing this line right now */
                note(r, "%s: line %lld is incomplete (a run still writing?); it is left out", r->metrics_path, line_no);
                break;
            }
            st = pt_fail(PT_EFORMAT, "%s:%lld: not a JSON object (\"%.*s%s\"); fix or delete that line",
                         r->metrics_path, line_no, (int)(n > 40 ? 40 : n), line, n > 40 ? "..." : "");
            break;
        }
        double step;
        if (!jnum(o, "step", &step) || !isfinite(step) || step < 0 || step > 1e15) {
            cJSON_Delete(o);
            st = pt_fail(PT_EFORMAT, "%s:%lld: no numeric \"step\" (train writes one on every line); fix or "
                                     "delete that line",
                         r->metrics_path, line_no);
            break;
        }
        if (cJSON_GetObjectItemCaseSensitive(o, "eval_loss"))
            st = take_eval_line(r, o, step);
        else if (cJSON_GetObjectItemCaseSensitive(o, "loss"))
            st = take_step_line(r, o, step);
        else
            r->n_other_lines++; /* a kind of line this report does not draw */
        cJSON_Delete(o);
        if (st != PT_OK)
            break;
    }
    free(buf);
    PT_CHECK(st);
    if (r->n_step_lines == 0)
        note(r, "%s has no training steps yet; the curves fill in as the run goes", r->metrics_path);
    if (r->n_eval_lines == 0 && r->n_step_lines > 0)
        note(r, "no eval lines: the run has not evaluated yet (train --eval-every N evaluates every N steps)");
    if (r->n_resumes > 0)
        note(r, "the run was resumed %lld time%s (first at step %lld): the resumed lines replace the steps they "
                "redid",
             r->n_resumes, r->n_resumes == 1 ? "" : "s", r->first_resume_step);
    if (r->n_null_values > 0)
        note(r, "%lld value%s in the metrics %s null (NaN or Inf); left out of the curves", r->n_null_values,
             r->n_null_values == 1 ? "" : "s", r->n_null_values == 1 ? "is" : "are");
    return PT_OK;
}

static void read_config(run_info *r)
{
    if (!is_file(r->config_path)) {
        note(r, "no %s: the plan table is left out (train writes config.json when the run starts)", r->config_path);
        return;
    }
    if (pt_json_read_file(r->config_path, &r->config) != PT_OK) {
        note(r, "%s; the plan table is left out", pt_last_error());
        pt_clear_error();
        r->config = NULL;
    } else if (!cJSON_IsObject(r->config)) {
        note(r, "%s is not a JSON object; the plan table is left out", r->config_path);
        cJSON_Delete(r->config);
        r->config = NULL;
    }
}

/* Finds the profile folder: the one given, or <run_dir>/profile, <run_dir>/prof. */
static pt_status find_profile(run_info *r)
{
    const pt_report_opts *o = r->o;
    r->profile_dir[0] = '\0';
    if (o->profile_dir && !o->profile_dir[0])
        return PT_OK;
    if (o->profile_dir) {
        /* a run in progress writes its profile at the end: not there yet is a note */
        if (!is_dir(o->profile_dir))
            note(r, "no profile directory %s yet: the timeline and the measured bubble are left out (the profile is "
                    "written at the end of the run)",
                 o->profile_dir);
        else
            snprintf(r->profile_dir, sizeof r->profile_dir, "%s", o->profile_dir);
        return PT_OK;
    }
    static const char *const names[] = { "profile", "prof" };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char dir[PATH_MAX], a[PATH_MAX + 16], b[PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/%s", o->run_dir, names[k]);
        snprintf(a, sizeof a, "%s/summary.json", dir);
        snprintf(b, sizeof b, "%s/timeline.svg", dir);
        if (is_file(a) || is_file(b)) {
            snprintf(r->profile_dir, sizeof r->profile_dir, "%s", dir);
            return PT_OK;
        }
    }
    return PT_OK;
}

/* Makes the timeline ready to embed in HTML: no XML prolog, an <svg> root, no script. */
static char *prepare_svg(run_info *r, const char *path, char *text)
{
    char *p = text;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (strncmp(p, "<?", 2) == 0 || strncmp(p, "<!", 2) == 0) { /* <?xml ...?>, <!DOCTYPE>, <!-- --> */
            char *end = strchr(p, '>');
            if (!end)
                break;
            p = end + 1;
            continue;
        }
        break;
    }
    if (strncmp(p, "<svg", 4) != 0) {
        note(r, "%s does not start with <svg>; the timeline is left out", path);
        return NULL;
    }
    for (const char *q = p; (q = strchr(q, '<')) != NULL; q++)
        if (strncasecmp(q + 1, "script", 6) == 0 || strncasecmp(q + 1, "foreignObject", 13) == 0) {
            note(r, "%s holds a script or foreign object; the timeline is left out (a pipetrain timeline has none)",
                 path);
            return NULL;
        }
    memmove(text, p, strlen(p) + 1);
    return text;
}

static void read_profile(run_info *r)
{
    if (!r->profile_dir[0]) {
        if (!r->o->profile_dir)
            note(r, "no profile in %s/profile or %s/prof: the timeline and the measured bubble are left out "
                    "(train --profile DIR records one; report --profile DIR finds it elsewhere)",
                 r->o->run_dir, r->o->run_dir);
        return;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/summary.json", r->profile_dir);
    if (!is_file(path))
        note(r, "no %s: the measured bubble is left out (the profile is written at the end of the run)", path);
    else if (pt_json_read_file(path, &r->summary) != PT_OK) {
        note(r, "%s; the measured bubble is left out", pt_last_error());
        pt_clear_error();
        r->summary = NULL;
    } else if (!cJSON_IsObject(r->summary)) {
        note(r, "%s is not a JSON object; the measured bubble is left out", path);
        cJSON_Delete(r->summary);
        r->summary = NULL;
    }
    snprintf(path, sizeof path, "%s/timeline.svg", r->profile_dir);
    if (!is_file(path)) {
        note(r, "no %s: the measured timeline is left out", path);
    } else {
        char *text;
        size_t len;
        if (read_all(path, RPT_SVG_MAX_BYTES, &text, &len) != PT_OK) {
            note(r, "%s; the timeline is left out", pt_last_error());
            pt_clear_error();
        } else {
            r->timeline_svg = prepare_svg(r, path, text);
            if (!r->timeline_svg)
                free(text);
        }
    }
    snprintf(path, sizeof path, "%s/trace.json", r->profile_dir);
    r->has_trace = is_file(path);
}

/* ---- number formatting ---- */

/* Decimals that tell ticks `step` apart. */
static int tick_decimals(double step)
{
    if (!(step > 0))
        return 0;
    int d = (int)ceil(-log10(step) - 1e-9);
    return d < 0 ? 0 : d;
}

/* Tick labels short enough for an axis: 0.0025, 1.5, 25.2k, 200k, 1.5M, 3.0e-05. */
static void fmt_tick(char *buf, size_t cap, double v, double step)
{
    double av = fabs(v);
    int d = tick_decimals(step);
    if (fabs(v) < step * 1e-6)
        v = 0, av = 0;
    if (av >= 1e6 && step >= 1e4)
        snprintf(buf, cap, "%.*fM", tick_decimals(step / 1e6), v / 1e6);
    else if (av >= 1e4 && step >= 100)
        snprintf(buf, cap, "%.*fk", tick_decimals(step / 1e3), v / 1e3);
    else if (av >= 1e6 || d > 4)
        snprintf(buf, cap, "%.*e", step > 0 && av > 0 ? 1 : 0, v);
    else
        snprintf(buf, cap, "%.*f", d, v);
}

/* 858880 -> "858.9 K", 124439808 -> "124.4 M" */
static void fmt_count(char *buf, size_t cap, double v)
{
    if (v >= 1e9)
        snprintf(buf, cap, "%.2f B", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, cap, "%.1f M", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.1f K", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
}

static void fmt_bytes(char *buf, size_t cap, double v)
{
    if (v >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", v / (1024.0 * 1024 * 1024));
    else
        snprintf(buf, cap, "%.1f MiB", v / (1024.0 * 1024));
}

/* ---- SVG charts ---- */

enum { CH_W = 560, CH_H = 250, CH_ML = 68, CH_MR = 22, CH_MT = 24, CH_MB = 36 };
/* a dot on every point of a marked series up to this many points (beyond, the dots would merge) */
enum { CH_MAX_MARKERS = 60 };

typedef struct chart_series {
    const char *name;  /* legend; data-name */
    const series *s;
    double scale;      /* y shown = y * scale (fractions as %) */
    const char *color;
    int markers;       /* 1: a dot at every point (evals: few points) */
} chart_series;

/* A 1-2-5 step giving about `target` intervals over `range`. */
static double nice_step(double range, int target)
{
    double raw = range / target;
    double mag = pow(10.0, floor(log10(raw)));
    double m = raw / mag;
    return (m < 1.5 ? 1.0 : m < 3.0 ? 2.0 : m < 7.0 ? 5.0 : 10.0) * mag;
}

static void axis_range(double lo, double hi, int integer, double *alo, double *ahi, double *step)
{
    if (!(hi > lo)) {
        double pad = fabs(hi) > 0 ? fabs(hi) * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    double s = nice_step(hi - lo, 5);
    if (integer && s < 1)
        s = 1;
    *alo = floor(lo / s + 1e-9) * s;
    *ahi = ceil(hi / s - 1e-9) * s;
    if (*ahi <= *alo)
        *ahi = *alo + s;
    *step = s;
}

/* The indices of s drawn: all of them, or each bucket's minimum and maximum in step order. */
static long long pick_points(const series *s, int max_points, long long *idx)
{
    if (s->n <= max_points) {
        for (long long i = 0; i < s->n; i++)
            idx[i] = i;
        return s->n;
    }
    long long buckets = max_points / 2, n = 0;
    for (long long b = 0; b < buckets; b++) {
        long long i0 = s->n * b / buckets, i1 = s->n * (b + 1) / buckets;
        if (i1 <= i0)
            continue;
        long long lo = i0, hi = i0;
        for (long long i = i0; i < i1; i++) {
            if (s->y[i] < s->y[lo])
                lo = i;
            if (s->y[i] > s->y[hi])
                hi = i;
        }
        if (lo == hi) {
            idx[n++] = lo;
        } else {
            idx[n++] = lo < hi ? lo : hi;
            idx[n++] = lo < hi ? hi : lo;
        }
    }
    return n;
}

/* Draws one chart: a frame, ticks and grid, one polyline per non-empty series, a legend. Each
 * <polyline class="series"> carries data-name, data-n (points drawn) and data-total (points in
 * the metrics), which the tests and a curious reader use. */
static pt_status chart_svg(FILE *f, const char *id, const char *title, const char *y_label,
                           const chart_series *cs, int n_cs, int max_points)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    long long most = 0;
    for (int k = 0; k < n_cs; k++)
        for (long long i = 0; i < cs[k].s->n; i++) {
            double x = cs[k].s->x[i], y = cs[k].s->y[i] * cs[k].scale;
            xlo = x < xlo ? x : xlo;
            xhi = x > xhi ? x : xhi;
            ylo = y < ylo ? y : ylo;
            yhi = y > yhi ? y : yhi;
            most = cs[k].s->n > most ? cs[k].s->n : most;
        }
    if (most == 0)
        return PT_OK;
    long long *idx = malloc((size_t)(most < max_points ? most : max_points) * sizeof *idx);
    if (!idx)
        return pt_fail(PT_ENOMEM, "out of memory drawing chart %s", id);
    double ax0, ax1, axs, ay0, ay1, ays;
    axis_range(xlo < 0 ? xlo : 0, xhi, 1, &ax0, &ax1, &axs);
    axis_range(ylo, yhi, 0, &ay0, &ay1, &ays);
    const double pw = CH_W - CH_ML - CH_MR, ph = CH_H - CH_MT - CH_MB;
#define PX(x) (CH_ML + ((x) - ax0) / (ax1 - ax0) * pw)
#define PY(y) (CH_MT + ph - ((y) - ay0) / (ay1 - ay0) * ph)
    fprintf(f, "<figure><figcaption>");
    esc(f, title);
    fprintf(f, "</figcaption>\n<svg class=\"chart\" id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
            id, CH_W, CH_H, CH_W, CH_H);
    esc(f, title);
    fprintf(f, "\">\n<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fcfcfc\" stroke=\"#bbb\"/>\n",
            CH_ML, CH_MT, pw, ph);
    char lab[64];
    for (double v = ay0; v <= ay1 + ays * 1e-6; v += ays) {
        double y = PY(v);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", CH_ML, y, CH_ML + pw, y);
        fmt_tick(lab, sizeof lab, v, ays);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", CH_ML - 5, y + 4, lab);
    }
    for (double v = ax0; v <= ax1 + axs * 1e-6; v += axs) {
        double x = PX(v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#e4e4e4\"/>", x, CH_MT, x, CH_MT + ph);
        fmt_tick(lab, sizeof lab, v, axs);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", x, CH_MT + ph + 15, lab);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">step</text>\n", CH_ML + pw / 2,
            CH_H - 4);
    fprintf(f, "<text transform=\"translate(12,%.0f) rotate(-90)\" text-anchor=\"middle\" fill=\"#555\">", CH_MT + ph / 2);
    esc(f, y_label);
    fprintf(f, "</text>\n");
    double lx = CH_ML + 6;
    for (int k = 0; k < n_cs; k++) {
        const series *s = cs[k].s;
        if (s->n == 0)
            continue;
        long long n = pick_points(s, max_points, idx);
        fprintf(f, "<polyline class=\"series\" data-name=\"");
        esc(f, cs[k].name);
        fprintf(f, "\" data-n=\"%lld\" data-total=\"%lld\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" "
                   "stroke-linejoin=\"round\" points=\"",
                n, s->n, cs[k].color);
        for (long long i = 0; i < n; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX(s->x[idx[i]]), PY(s->y[idx[i]] * cs[k].scale));
        fprintf(f, "\"/>\n");
        if ((cs[k].markers && n <= CH_MAX_MARKERS) || n == 1)
            for (long long i = 0; i < n; i++)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\"><title>step %.0f: %.6g</title></circle>\n",
                        PX(s->x[idx[i]]), PY(s->y[idx[i]] * cs[k].scale), cs[k].color, s->x[idx[i]],
                        s->y[idx[i]] * cs[k].scale);
        /* legend entry, left to right in the top margin */
        fprintf(f, "<line x1=\"%.0f\" y1=\"12\" x2=\"%.0f\" y2=\"12\" stroke=\"%s\" stroke-width=\"2.5\"/>", lx, lx + 16,
                cs[k].color);
        fprintf(f, "<text x=\"%.0f\" y=\"16\">", lx + 20);
        esc(f, cs[k].name);
        fprintf(f, "</text>\n");
        lx += 20 + 7.0 * (double)strlen(cs[k].name) + 18;
    }
#undef PX
#undef PY
    fprintf(f, "</svg></figure>\n");
    free(idx);
    return PT_OK;
}

/* Grouped bars per rank: measured and predicted bubble (%). */
static void bubble_svg(FILE *f, const cJSON *meas, const cJSON *pred)
{
    int n = cJSON_GetArraySize(meas);
    double top = 0;
    for (int r = 0; r < n; r++) {
        const cJSON *m = cJSON_GetArrayItem(meas, r), *p = pred ? cJSON_GetArrayItem(pred, r) : NULL;
        if (cJSON_IsNumber(m) && m->valuedouble * 100 > top)
            top = m->valuedouble * 100;
        if (cJSON_IsNumber(p) && p->valuedouble * 100 > top)
            top = p->valuedouble * 100;
    }
    double y0, y1, ys;
    axis_range(0, top > 0 ? top : 1, 0, &y0, &y1, &ys);
    y0 = 0;
    const int W = CH_W, H = 220, ml = CH_ML, mr = CH_MR, mt = 24, mb = 34;
    const double pw = W - ml - mr, ph = H - mt - mb, gw = pw / (n > 0 ? n : 1), bw = gw * 0.32;
    fprintf(f, "<figure><figcaption>bubble per rank: measured vs predicted (%%)</figcaption>\n"
               "<svg class=\"chart\" id=\"chart-bubble\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"bubble per rank\">\n",
            W, H, W, H);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fcfcfc\" stroke=\"#bbb\"/>\n", ml, mt, pw, ph);
    char lab[64];
    for (double v = y0; v <= y1 + ys * 1e-6; v += ys) {
        double y = mt + ph - (v - y0) / (y1 - y0) * ph;
        fmt_tick(lab, sizeof lab, v, ys);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/><text x=\"%d\" y=\"%.1f\" "
                   "text-anchor=\"end\">%s</text>\n",
                ml, y, ml + pw, y, ml - 5, y + 4, lab);
    }
    for (int r = 0; r < n; r++) {
        const cJSON *m = cJSON_GetArrayItem(meas, r), *p = pred ? cJSON_GetArrayItem(pred, r) : NULL;
        double gx = ml + gw * r + gw / 2;
        const double vals[2] = { cJSON_IsNumber(m) ? m->valuedouble * 100 : NAN,
                                 cJSON_IsNumber(p) ? p->valuedouble * 100 : NAN };
        static const char *const colors[2] = { "#4e79a7", "#bab0ac" }, *const what[2] = { "measured", "predicted" };
        for (int k = 0; k < 2; k++) {
            if (!isfinite(vals[k]))
                continue;
            double h = (vals[k] - y0) / (y1 - y0) * ph, x = gx - bw + k * bw;
            fprintf(f, "<rect class=\"bar %s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                       "<title>rank %d %s %.1f%%</title></rect>\n",
                    what[k], x, mt + ph - h, bw - 1, h, colors[k], r, what[k], vals[k]);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">rank %d</text>\n", gx, mt + ph + 15, r);
    }
    fprintf(f, "<rect x=\"%d\" y=\"6\" width=\"12\" height=\"10\" fill=\"#4e79a7\"/><text x=\"%d\" y=\"15\">measured</text>"
               "<rect x=\"%d\" y=\"6\" width=\"12\" height=\"10\" fill=\"#bab0ac\"/><text x=\"%d\" y=\"15\">predicted "
               "(simulator on the measured costs)</text>\n</svg></figure>\n",
            ml + 6, ml + 22, ml + 100, ml + 116);
}

/* ---- page sections ---- */

static const char *const PAGE_CSS =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;font-size:14px;color:#222;max-width:1180px;"
    "margin:16px auto;padding:0 12px}\n"
    "h1{font-size:20px;margin:4px 0 10px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ddd}\n"
    "table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;border-bottom:1px solid #e6e6e6;"
    "text-align:right;vertical-align:top}th{background:#f4f4f4}td.l,th.l{text-align:left}\n"
    "table.kv td:first-child{text-align:left;color:#555}table.kv td{text-align:left}\n"
    ".notes{background:#fff8e1;border-left:4px solid #e0a800;padding:6px 12px;margin:10px 0}"
    ".notes li{margin:2px 0}\n"
    ".charts{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;border:1px solid #e2e2e2;padding:6px}"
    "figcaption{font-weight:bold;margin:0 0 4px 4px}\n"
    "svg.chart{font-size:11px;font-family:inherit;display:block}\n"
    ".timeline{overflow-x:auto;border:1px solid #e2e2e2;padding:4px}.timeline svg{max-width:100%;height:auto}\n"
    "code{background:#f3f3f3;padding:0 3px}.dim{color:#777}\n";

static double mean_recent(const series *s)
{
    if (s->n == 0)
        return NAN;
    long long first = s->n > 1 ? 1 : 0; /* step 1 warms caches */
    if (s->n - first > RPT_RECENT_STEPS)
        first = s->n - RPT_RECENT_STEPS;
    double sum = 0;
    for (long long i = first; i < s->n; i++)
        sum += s->y[i];
    return sum / (double)(s->n - first);
}

static double sum_series(const series *s)
{
    double t = 0;
    for (long long i = 0; i < s->n; i++)
        t += s->y[i];
    return t;
}

static void kv_row(FILE *f, const char *key, const char *val)
{
    fprintf(f, "<tr><td>");
    esc(f, key);
    fprintf(f, "</td><td>");
    esc(f, val);
    fprintf(f, "</td></tr>\n");
}

static const char *metric_name(const char *m)
{
    if (!m || !m[0])
        return "eval accuracy";
    if (strcmp(m, "exact_match") == 0)
        return "exact match";
    if (strcmp(m, "next_token_accuracy") == 0)
        return "next-token accuracy";
    return m;
}

static void write_header(FILE *f, const run_info *r)
{
    const cJSON *c = r->config, *model = c ? cJSON_GetObjectItemCaseSensitive(c, "model") : NULL;
    char v[512], a[64], b[64];
    fprintf(f, "<h1>");
    if (r->o->title)
        esc(f, r->o->title);
    else {
        fprintf(f, "pipetrain run ");
        esc(f, r->o->run_dir);
    }
    fprintf(f, "</h1>\n<table class=\"kv\" id=\"header\">\n");
    const char *mname = jstr(model, "name");
    double nl, ne, nh;
    if (mname || jnum(model, "n_layer", &nl)) {
        int n = snprintf(v, sizeof v, "%s", mname ? mname : "(unnamed)");
        if (jnum(model, "n_layer", &nl) && jnum(model, "n_embd", &ne) && jnum(model, "n_head", &nh))
            snprintf(v + n, sizeof v - (size_t)n, " (%g layers, %g wide, %g heads)", nl, ne, nh);
        kv_row(f, "model", v);
    }
    double np;
    if (jnum(c, "n_params", &np) || jnum(c, "params_total", &np)) {
        fmt_count(a, sizeof a, np);
        snprintf(v, sizeof v, "%s (%.0f)", a, np);
        kv_row(f, "parameters", v);
    }
    double total_steps;
    int has_total = jnum(c, "steps", &total_steps);
    if (has_total)
        snprintf(v, sizeof v, "%lld of %.0f%s", r->last_step, total_steps,
                 (double)r->last_step >= total_steps ? " (done)" : " (in progress, or stopped)");
    else
        snprintf(v, sizeof v, "%lld", r->last_step);
    kv_row(f, "steps done", v);
    if (r->loss.n > 0) {
        snprintf(v, sizeof v, "%.4f at step %.0f (first %.4f)", r->loss.y[r->loss.n - 1], r->loss.x[r->loss.n - 1],
                 r->loss.y[0]);
        kv_row(f, "final training loss", v);
    }
    if (r->eval_loss.n > 0) {
        int n = snprintf(v, sizeof v, "loss %.4f at step %.0f", r->eval_loss.y[r->eval_loss.n - 1],
                         r->eval_loss.x[r->eval_loss.n - 1]);
        if (r->eval_acc.n > 0) {
            n += snprintf(v + n, sizeof v - (size_t)n, ", %s %.1f%%", metric_name(r->eval_metric),
                          100 * r->eval_acc.y[r->eval_acc.n - 1]);
            if (r->has_last_eval_counts)
                snprintf(v + n, sizeof v - (size_t)n, " (%.0f/%.0f)", r->last_eval_correct, r->last_eval_total);
        }
        kv_row(f, "last eval", v);
    }
    if (r->tps.n > 0) {
        snprintf(v, sizeof v, "%.0f (mean of the last %lld steps)", mean_recent(&r->tps),
                 r->tps.n > RPT_RECENT_STEPS ? (long long)RPT_RECENT_STEPS : (r->tps.n > 1 ? r->tps.n - 1 : 1));
        kv_row(f, "tokens/s", v);
    }
    if (r->step_ms.n > 0) {
        snprintf(v, sizeof v, "%.1f ms (mean of the same steps); %.1f s training in all%s", mean_recent(&r->step_ms),
                 sum_series(&r->step_ms) / 1e3, "");
        if (r->eval_ms_total > 0) {
            size_t n = strlen(v);
            snprintf(v + n, sizeof v - n, ", %.1f s evaluating", r->eval_ms_total / 1e3);
        }
        kv_row(f, "step time", v);
    }
    double P, D, M, B, T;
    if (jnum(c, "stages", &P)) {
        const char *sched = jstr(c, "schedule_name") ? jstr(c, "schedule_name") : jstr(c, "schedule");
        int n = snprintf(v, sizeof v, "%s, %.0f stage%s", sched ? sched : "?", P, P == 1 ? "" : "s");
        if (jnum(c, "replicas", &D) && D > 1)
            n += snprintf(v + n, sizeof v - (size_t)n, " x %.0f replicas", D);
        double tp = 1;
        if (jnum(c, "n_tp", &tp) && tp > 1)
            n += snprintf(v + n, sizeof v - (size_t)n, " x %.0f tensor-parallel%s", tp,
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "sp")) ? " (sequence-parallel)" : "");
        if (jnum(c, "micro_batches", &M) && jnum(c, "micro_batch_size", &B) && jnum(c, "seq_len", &T))
            snprintf(v + n, sizeof v - (size_t)n, "; M x B x T = %.0f x %.0f x %.0f", M, B, T);
        kv_row(f, "pipeline", v);
    }
    const char *data = jstr(c, "data"), *tok = jstr(c, "data_tokenizer"), *be = jstr(c, "backend");
    const char *prec = jstr(c, "precision");
    if (data) {
        snprintf(v, sizeof v, "%s%s%s%s", data, tok ? " (tokenizer " : "", tok ? tok : "", tok ? ")" : "");
        kv_row(f, "data", v);
    }
    if (be) {
        double th;
        if (jnum(c, "threads", &th) && th == 0)
            snprintf(v, sizeof v, "%s, threads: all cores", be);
        else if (jnum(c, "threads", &th))
            snprintf(v, sizeof v, "%s, %.0f thread%s per rank", be, th, th == 1 ? "" : "s");
        else
            snprintf(v, sizeof v, "%s", be);
        if (prec && strcmp(prec, "bf16") == 0) {
            size_t n = strlen(v);
            snprintf(v + n, sizeof v - n, "; bf16 mixed precision (fp32 master weights)");
        }
        kv_row(f, "backend", v);
    }
    kv_row(f, "run directory", r->o->run_dir);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(a, sizeof a, "%Y-%m-%d %H:%M:%S UTC", &tm);
    snprintf(b, sizeof b, "%s", a);
    kv_row(f, "report written", b);
    fprintf(f, "</table>\n");
    if (r->n_notes > 0) {
        fprintf(f, "<ul class=\"notes\" id=\"notes\">\n");
        for (int k = 0; k < r->n_notes; k++) {
            fprintf(f, "<li>");
            esc(f, r->notes[k]);
            fprintf(f, "</li>\n");
        }
        if (r->n_notes_dropped)
            fprintf(f, "<li>(%d more notes left out)</li>\n", r->n_notes_dropped);
        fprintf(f, "</ul>\n");
    }
}

static int any_nonzero(const series *s)
{
    for (long long i = 0; i < s->n; i++)
        if (s->y[i] != 0)
            return 1;
    return 0;
}

static pt_status write_curves(FILE *f, const run_info *r, int max_points)
{
    fprintf(f, "<h2>Curves</h2>\n");
    if (r->n_step_lines == 0 && r->n_eval_lines == 0) {
        fprintf(f, "<p class=\"dim\">No steps yet.</p>\n");
        return PT_OK;
    }
    fprintf(f, "<div class=\"charts\">\n");
    chart_series loss[2] = { { "training loss", &r->loss, 1, "#4e79a7", 0 }, { "eval loss", &r->eval_loss, 1, "#e15759", 1 } };
    PT_CHECK(chart_svg(f, "chart-loss", "loss", "loss", loss, 2, max_points));
    if (r->eval_acc.n > 0) {
        char title[96];
        snprintf(title, sizeof title, "eval %s (%%)", metric_name(r->eval_metric));
        chart_series acc = { metric_name(r->eval_metric), &r->eval_acc, 100, "#f28e2b", 1 };
        PT_CHECK(chart_svg(f, "chart-eval-accuracy", title, "%", &acc, 1, max_points));
    }
    chart_series lr = { "learning rate", &r->lr, 1, "#59a14f", 0 };
    PT_CHECK(chart_svg(f, "chart-lr", "learning rate", "lr", &lr, 1, max_points));
    chart_series tps = { "tokens/s", &r->tps, 1, "#76b7b2", 0 };
    PT_CHECK(chart_svg(f, "chart-tokens-per-s", "tokens/s", "tokens/s", &tps, 1, max_points));
    chart_series gn = { "gradient norm (before clipping)", &r->gnorm, 1, "#b07aa1", 0 };
    PT_CHECK(chart_svg(f, "chart-grad-norm", "gradient norm", "grad norm", &gn, 1, max_points));
    chart_series times[4] = { { "step", &r->step_ms, 1, "#555555", 0 } };
    int n_times = 1;
    const series *phases[3] = { &r->fwd_ms, &r->bwd_ms, &r->optim_ms };
    static const char *const names[3] = { "forward", "backward", "optimizer" }, *const colors[3] = { "#4e79a7", "#e15759", "#59a14f" };
    for (int k = 0; k < 3; k++)
        if (any_nonzero(phases[k]))
            times[n_times++] = (chart_series){ names[k], phases[k], 1, colors[k], 0 };
    PT_CHECK(chart_svg(f, "chart-step-time", "time per step (ms)", "ms", times, n_times, max_points));
    fprintf(f, "</div>\n");
    if (r->n_step_lines > 0) {
        const char *missing[5];
        int n_missing = 0;
        if (r->lr.n == 0)
            missing[n_missing++] = "lr";
        if (r->tps.n == 0)
            missing[n_missing++] = "tokens_per_s";
        if (r->gnorm.n == 0)
            missing[n_missing++] = "grad_norm";
        if (r->step_ms.n == 0)
            missing[n_missing++] = "step_ms";
        if (n_missing) {
            fprintf(f, "<p class=\"dim\">The metrics carry no");
            for (int k = 0; k < n_missing; k++)
                fprintf(f, "%s <code>%s</code>", k ? (k + 1 == n_missing ? " or" : ",") : "", missing[k]);
            fprintf(f, ": %s left out.</p>\n", n_missing == 1 ? "its chart is" : "their charts are");
        }
    }
    return PT_OK;
}

/* "embedding + blocks 0-1", "blocks 2-3 + head" for layers [a, b] of a model with n_layer blocks
 * (layer 0 is the embedding, 1..n_layer the blocks, the rest the final norm and head shards). */
static void layer_words(char *buf, size_t cap, int a, int b, int n_layer)
{
    size_t n = 0;
    buf[0] = '\0';
    if (a == 0)
        n += (size_t)snprintf(buf + n, cap - n, "embedding");
    int ba = a < 1 ? 1 : a, bb = b > n_layer ? n_layer : b;
    if (bb >= ba && n < cap) {
        if (ba == bb)
            n += (size_t)snprintf(buf + n, cap - n, "%sblock %d", n ? " + " : "", ba - 1);
        else
            n += (size_t)snprintf(buf + n, cap - n, "%sblocks %d-%d", n ? " + " : "", ba - 1, bb - 1);
    }
    if (b > n_layer && n < cap)
        snprintf(buf + n, cap - n, "%shead%s", n ? " + " : "", b - (a > n_layer ? a : n_layer + 1) > 0 ? " shards" : "");
}

static void write_plan(FILE *f, const run_info *r)
{
    const cJSON *c = r->config, *s = r->summary;
    fprintf(f, "<h2>Plan</h2>\n");
    const cJSON *chunks = c ? cJSON_GetObjectItemCaseSensitive(c, "chunk_list") : NULL;
    if (!cJSON_IsArray(chunks)) {
        fprintf(f, "<p class=\"dim\">%s</p>\n",
                c ? "config.json holds no plan (no chunk_list): a one-process run of an older pipetrain?" : "No config.json.");
        return;
    }
    double P = 0, V = 0, D = 1, M = 0, B = 0, T = 0, hs = 1, nodes = 1, dpn = 1;
    jnum(c, "stages", &P);
    jnum(c, "chunks", &V);
    jnum(c, "replicas", &D);
    jnum(c, "micro_batches", &M);
    jnum(c, "micro_batch_size", &B);
    jnum(c, "seq_len", &T);
    jnum(c, "head_split", &hs);
    jnum(c, "nodes", &nodes);
    jnum(c, "devices_per_node", &dpn);
    const char *sched = jstr(c, "schedule_name") ? jstr(c, "schedule_name") : jstr(c, "schedule");
    fprintf(f, "<table class=\"kv\" id=\"plan-summary\">\n");
    char v[256];
    kv_row(f, "schedule", sched ? sched : "?");
    kv_row(f, "partition method", jstr(c, "method") ? jstr(c, "method") : "?");
    double tp = 1;
    jnum(c, "n_tp", &tp);
    int lay = snprintf(v, sizeof v, "P = %.0f stages x V = %.0f chunk%s per rank x D = %.0f replica%s", P, V,
                       V == 1 ? "" : "s", D, D == 1 ? "" : "s");
    if (tp > 1) /* world rank (d x P + p) x T + t (docs/parallelism.md) */
        snprintf(v + lay, sizeof v - (size_t)lay, " x T = %.0f tensor-parallel rank%s per stage%s", tp,
                 tp == 1 ? "" : "s", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "sp")) ? ", sequence-parallel" : "");
    kv_row(f, "layout", v);
    snprintf(v, sizeof v, "M x B x T = %.0f x %.0f x %.0f: %.0f sequences, %.0f tokens per step", M, B, T, M * B * D,
             M * B * T * D);
    kv_row(f, "batch", v);
    snprintf(v, sizeof v, "%s, %.0f node%s x %.0f device%s", jstr(c, "device") ? jstr(c, "device") : "?", nodes,
             nodes == 1 ? "" : "s", dpn, dpn == 1 ? "" : "s");
    kv_row(f, "devices", v);
    if (hs > 1) {
        snprintf(v, sizeof v, "%.0f layers", hs);
        kv_row(f, "LM head split", v);
    }
    fprintf(f, "</table>\n");

    /* predictions next to what was measured */
    double pst = 0, pb = 0, ptps = 0, pmfu = 0, mst = 0, mb = 0, mtps = 0, mmfu = 0;
    int has_pst = jnum(c, "pred_step_time_s", &pst), has_pb = jnum(c, "pred_bubble", &pb),
        has_ptps = jnum(c, "pred_tokens_per_s", &ptps), has_pmfu = jnum(c, "pred_mfu", &pmfu);
    int has_mst = jnum(s, "step_time_s", &mst), has_mb = jnum(s, "bubble_overall", &mb),
        has_mtps = jnum(s, "tokens_per_s", &mtps), has_mmfu = jnum(s, "mfu", &mmfu);
    fprintf(f, "<table id=\"plan-prediction\"><tr><th class=\"l\"></th><th>predicted (plan)</th><th>measured "
               "(profile)</th><th>measured (metrics, recent steps)</th></tr>\n");
    pred_row(f, "step time (ms)", "%.1f", has_pst, pst * 1e3, has_mst, mst * 1e3, r->step_ms.n > 0,
             r->step_ms.n ? mean_recent(&r->step_ms) : 0);
    pred_row(f, "bubble", "%.1f%%", has_pb, pb * 100, has_mb, mb * 100, 0, 0);
    pred_row(f, "tokens/s", "%.0f", has_ptps, ptps, has_mtps, mtps, r->tps.n > 0, r->tps.n ? mean_recent(&r->tps) : 0);
    pred_row(f, "MFU", "%.1f%%", has_pmfu, pmfu * 100, has_mmfu, mmfu * 100, 0, 0);
    fprintf(f, "</table>\n");

    /* one row per virtual stage (chunk) */
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(c, "model");
    double n_layer = -1;
    jnum(model, "n_layer", &n_layer);
    const cJSON *costs = s ? cJSON_GetObjectItemCaseSensitive(s, "measured_costs_s") : NULL;
    const cJSON *cf = costs ? cJSON_GetObjectItemCaseSensitive(costs, "f") : NULL;
    int n_chunks = cJSON_GetArraySize(chunks);
    int show_meas = cJSON_IsArray(cf) && cJSON_GetArraySize(cf) == n_chunks;
    fprintf(f, "<table id=\"plan-stages\"><tr><th>virtual stage</th><th>rank</th><th>chunk</th><th>layers</th>"
               "<th class=\"l\">holds</th><th>parameters</th><th>predicted F+B per micro-batch (ms)</th>%s"
               "<th>predicted memory</th><th>recompute</th><th class=\"l\">link after</th></tr>\n",
            show_meas ? "<th>measured F+B (ms)</th>" : "");
    for (int k = 0; k < n_chunks; k++) {
        const cJSON *ch = cJSON_GetArrayItem(chunks, k);
        double fl = -1, ll = -1, rank = -1, chunk = -1, params = 0, pt = NAN, pm = NAN, nl;
        jnum(ch, "first_layer", &fl);
        jnum(ch, "last_layer", &ll);
        jnum(ch, "rank", &rank);
        jnum(ch, "chunk", &chunk);
        jnum(ch, "params", &params);
        jnum(ch, "pred_time_s", &pt);
        jnum(ch, "pred_mem_bytes", &pm);
        if (!jnum(ch, "layers", &nl))
            nl = ll - fl + 1;
        char words[128] = "", pc[32], mem[32] = "-";
        if (n_layer > 0 && fl >= 0 && ll >= fl)
            layer_words(words, sizeof words, (int)fl, (int)ll, (int)n_layer);
        fmt_count(pc, sizeof pc, params);
        if (isfinite(pm))
            fmt_bytes(mem, sizeof mem, pm);
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(ch, "recompute");
        const char *link = jstr(ch, "link_after");
        fprintf(f, "<tr class=\"stage\"><td>%d</td><td>%.0f</td><td>%.0f</td><td>%.0f-%.0f (%.0f)</td><td class=\"l\">", k,
                rank, chunk, fl, ll, nl);
        esc(f, words);
        fprintf(f, "</td><td>%s</td><td>%.2f</td>", pc, pt * 1e3);
        if (show_meas) {
            double sum = 0;
            static const char *const parts[] = { "f", "b", "i", "w" };
            for (int p = 0; p < 4; p++) {
                const cJSON *arr = cJSON_GetObjectItemCaseSensitive(costs, parts[p]);
                const cJSON *it = cJSON_IsArray(arr) ? cJSON_GetArrayItem(arr, k) : NULL;
                if (cJSON_IsNumber(it))
                    sum += it->valuedouble;
            }
            fprintf(f, "<td>%.2f</td>", sum * 1e3);
        }
        fprintf(f, "<td>%s</td><td>%s</td><td class=\"l\">", mem, cJSON_IsTrue(rc) ? "yes" : "no");
        esc(f, link ? link : "");
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n");

    /* every setting of the run, folded */
    fprintf(f, "<details><summary>all settings (config.json)</summary><table class=\"kv\">\n");
    for (const cJSON *it = c->child; it; it = it->next) {
        char val[256];
        if (cJSON_IsString(it))
            snprintf(val, sizeof val, "%s", it->valuestring);
        else if (cJSON_IsNumber(it))
            snprintf(val, sizeof val, "%.10g", it->valuedouble);
        else if (cJSON_IsBool(it))
            snprintf(val, sizeof val, "%s", cJSON_IsTrue(it) ? "true" : "false");
        else
            continue;
        kv_row(f, it->string ? it->string : "?", val);
    }
    fprintf(f, "</table></details>\n");
}

static void write_profile(FILE *f, const run_info *r)
{
    fprintf(f, "<h2>Measured timeline</h2>\n");
    if (!r->profile_dir[0]) {
        fprintf(f, "<p class=\"dim\">No profile for this run (<code>pipetrain train --profile DIR</code> records "
                   "one).</p>\n");
        return;
    }
    fprintf(f, "<p class=\"dim\">From <code>");
    esc(f, r->profile_dir);
    fprintf(f, "</code>%s</p>\n",
            r->has_trace ? ": every profiled step is in its trace.json (open it in https://ui.perfetto.dev)" : "");
    const cJSON *s = r->summary;
    if (r->timeline_svg)
        fprintf(f, "<div class=\"timeline\" id=\"timeline\">\n%s\n</div>\n", r->timeline_svg);
    if (!s)
        return;
    double steps, win, pwin;
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(s, "predicted");
    const cJSON *bub = cJSON_GetObjectItemCaseSensitive(s, "bubble");
    const cJSON *pbub = pred ? cJSON_GetObjectItemCaseSensitive(pred, "bubble") : NULL;
    const cJSON *wait = cJSON_GetObjectItemCaseSensitive(s, "comm_wait_s");
    const cJSON *peak = cJSON_GetObjectItemCaseSensitive(s, "peak_bytes");
    const cJSON *pmem = r->config ? cJSON_GetObjectItemCaseSensitive(r->config, "pred_rank_mem_bytes") : NULL;
    if (jnum(s, "steps", &steps) && jnum(s, "pipeline_window_s", &win)) {
        fprintf(f, "<p>%.0f profiled steps; pipeline window %.1f ms measured", steps, win * 1e3);
        if (jnum(pred, "pipeline_window_s", &pwin))
            fprintf(f, ", %.1f ms predicted by the simulator on the measured costs", pwin * 1e3);
        fprintf(f, ".</p>\n");
    }
    if (!cJSON_IsArray(bub))
        return;
    int n = cJSON_GetArraySize(bub);
    int show_pmem = cJSON_IsArray(pmem) && cJSON_GetArraySize(pmem) == n;
    fprintf(f, "<div class=\"charts\">\n");
    bubble_svg(f, bub, cJSON_IsArray(pbub) ? pbub : NULL);
    fprintf(f, "</div>\n<table id=\"bubble\"><tr><th>rank</th><th>bubble measured</th><th>bubble predicted</th>"
               "<th>difference</th><th>comm wait (ms/step)</th><th>peak memory</th>%s</tr>\n",
            show_pmem ? "<th>predicted memory (plan)</th>" : "");
    for (int k = 0; k < n; k++) {
        const cJSON *m = cJSON_GetArrayItem(bub, k), *p = cJSON_IsArray(pbub) ? cJSON_GetArrayItem(pbub, k) : NULL;
        const cJSON *w = cJSON_IsArray(wait) ? cJSON_GetArrayItem(wait, k) : NULL;
        const cJSON *pk = cJSON_IsArray(peak) ? cJSON_GetArrayItem(peak, k) : NULL;
        char bm[32] = "-", bp[32] = "-", bd[32] = "-", cw[32] = "-", pb[32] = "-";
        if (cJSON_IsNumber(m))
            snprintf(bm, sizeof bm, "%.1f%%", m->valuedouble * 100);
        if (cJSON_IsNumber(p))
            snprintf(bp, sizeof bp, "%.1f%%", p->valuedouble * 100);
        if (cJSON_IsNumber(m) && cJSON_IsNumber(p))
            snprintf(bd, sizeof bd, "%+.1f points", (m->valuedouble - p->valuedouble) * 100);
        if (cJSON_IsNumber(w))
            snprintf(cw, sizeof cw, "%.2f", w->valuedouble * 1e3);
        if (cJSON_IsNumber(pk))
            fmt_bytes(pb, sizeof pb, pk->valuedouble);
        fprintf(f, "<tr class=\"rank\"><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>", k, bm, bp, bd,
                cw, pb);
        if (show_pmem) {
            char pm[32] = "-";
            const cJSON *it = cJSON_GetArrayItem(pmem, k);
            if (cJSON_IsNumber(it))
                fmt_bytes(pm, sizeof pm, it->valuedouble);
            fprintf(f, "<td>%s</td>", pm);
        }
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n<p class=\"dim\">The bubble is 1 - (time in F/B/I/W) / pipeline window, per rank "
               "(docs/profiling.md); predicted = the simulator on this schedule with the costs measured in this run.</p>\n");
}

/* ---- the entry point ---- */

pt_status pt_report_write(const pt_report_opts *o, pt_report_info *info)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!o || !o->run_dir || !o->run_dir[0])
        return pt_fail(PT_EINVAL, "report: no run directory given; name the folder `train --run-dir` wrote");
    if (o->max_points > 0 && o->max_points < 4)
        return pt_fail(PT_EINVAL, "report: max_points %d is too few to draw a curve; give 4 or more (or 0)",
                       o->max_points);
    if (!is_dir(o->run_dir))
        return pt_fail(PT_EINVAL, "%s: no such directory; give the folder `train --run-dir` wrote", o->run_dir);
    run_info *r = calloc(1, sizeof *r);
    if (!r)
        return pt_fail(PT_ENOMEM, "report: out of memory");
    r->o = o;
    pt_status st = PT_OK;
    int max_points = o->max_points > 0 ? o->max_points : PT_REPORT_MAX_POINTS_DEFAULT;
    if ((o->metrics_path && strlen(o->metrics_path) >= sizeof r->metrics_path) ||
        (o->config_path && strlen(o->config_path) >= sizeof r->config_path) ||
        (o->output_path && strlen(o->output_path) >= sizeof r->output_path) ||
        strlen(o->run_dir) + 32 >= sizeof r->metrics_path) {
        st = pt_fail(PT_EINVAL, "report: a path is longer than %d bytes; use a shorter one", PATH_MAX - 32);
        goto done;
    }
    snprintf(r->metrics_path, sizeof r->metrics_path, "%s", o->metrics_path ? o->metrics_path : "");
    if (!o->metrics_path)
        snprintf(r->metrics_path, sizeof r->metrics_path, "%s/metrics.jsonl", o->run_dir);
    snprintf(r->config_path, sizeof r->config_path, "%s", o->config_path ? o->config_path : "");
    if (!o->config_path)
        snprintf(r->config_path, sizeof r->config_path, "%s/config.json", o->run_dir);
    snprintf(r->output_path, sizeof r->output_path, "%s", o->output_path ? o->output_path : "");
    if (!o->output_path)
        snprintf(r->output_path, sizeof r->output_path, "%s/report.html", o->run_dir);
    if (!is_file(r->metrics_path)) {
        st = pt_fail(PT_EINVAL, "%s: not found; is this a run directory? train writes metrics.jsonl there",
                     r->metrics_path);
        goto done;
    }
    PT_TRY(find_profile(r), done);
    PT_TRY(read_metrics(r), done);
    read_config(r);
    read_profile(r);

    char *page = NULL;
    size_t page_len = 0;
    FILE *f = open_memstream(&page, &page_len);
    if (!f) {
        st = pt_fail(PT_ENOMEM, "report: cannot open a memory stream (%s)", strerror(errno));
        goto done;
    }
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<meta name=\"generator\" content=\"pipetrain %s report\">\n<title>",
            PT_VERSION_STRING);
    if (o->title)
        esc(f, o->title);
    else {
        fprintf(f, "pipetrain run ");
        esc(f, o->run_dir);
    }
    fprintf(f, "</title>\n<style>\n%s</style></head><body>\n", PAGE_CSS);
    write_header(f, r);
    st = write_curves(f, r, max_points);
    if (st == PT_OK) {
        write_plan(f, r);
        write_profile(f, r);
        fprintf(f, "<p class=\"dim\">Written by <code>pipetrain report</code> from <code>");
        esc(f, r->metrics_path);
        fprintf(f, "</code> (%lld step lines, %lld eval lines). Refresh: <code>pipetrain report ", r->n_step_lines,
                r->n_eval_lines);
        esc(f, o->run_dir);
        fprintf(f, "</code>.</p>\n</body></html>\n");
    }
    if (fclose(f) != 0 && st == PT_OK)
        st = pt_fail(PT_ENOMEM, "report: out of memory building the page");
    if (st == PT_OK)
        st = pt_write_file_atomic(r->output_path, page, page_len);
    free(page);
    if (st == PT_OK && info) {
        snprintf(info->output_path, sizeof info->output_path, "%s", r->output_path);
        info->n_step_lines = r->steps.n;
        info->last_step = r->last_step;
        info->n_evals = (int)r->eval_loss.n;
        info->has_plan = r->config && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r->config, "chunk_list"));
        info->has_profile = r->summary != NULL || r->timeline_svg != NULL;
        info->n_notes = r->n_notes + r->n_notes_dropped;
    }
done:
    run_info_free(r);
    free(r);
    return st;
}

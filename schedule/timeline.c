/* Timeline pictures: an SVG drawing (one row per rank) and Chrome trace JSON. Shared by the
 * simulator (predicted events) and the runtime's profiler (measured events). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/json.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeline.h"

static const struct {
    const char *fill, *label;
} kind_style[PT_ACT_KIND_COUNT] = {
    [PT_ACT_FORWARD] = { "#4e79a7", "forward (F)" },
    [PT_ACT_BACKWARD] = { "#f28e2b", "backward (B)" },
    [PT_ACT_BACKWARD_INPUT] = { "#e15759", "backward input (I)" },
    [PT_ACT_BACKWARD_WEIGHT] = { "#59a14f", "backward weight (W)" },
    [PT_ACT_SEND_ACT] = { "#9d9d9d", "send" },
    [PT_ACT_RECV_ACT] = { "#d3d3d3", "receive wait" },
    [PT_ACT_SEND_GRAD] = { "#9d9d9d", "send" },
    [PT_ACT_RECV_GRAD] = { "#d3d3d3", "receive wait" },
    [PT_ACT_REDUCE_GRADS] = { "#b07aa1", "gradient reduce (AR)" },
    [PT_ACT_OPTIMIZER_STEP] = { "#9c755f", "optimizer step" },
};

static pt_status check_events(const pt_timeline_event *ev, int n, const pt_timeline_opts *o, double *t0, double *t1)
{
    if (!o || o->n_ranks < 1)
        return pt_fail(PT_EINVAL, "timeline: n_ranks must be >= 1");
    if (n < 0 || (n > 0 && !ev))
        return pt_fail(PT_EINVAL, "timeline: bad event array (%d events)", n);
    *t0 = INFINITY;
    *t1 = -INFINITY;
    for (int k = 0; k < n; k++) {
        const pt_timeline_event *e = &ev[k];
        if (e->rank < 0 || e->rank >= o->n_ranks)
            return pt_fail(PT_EINVAL, "timeline: event %d has rank %d outside 0..%d", k, e->rank, o->n_ranks - 1);
        if (e->kind < 0 || e->kind >= PT_ACT_KIND_COUNT)
            return pt_fail(PT_EINVAL, "timeline: event %d has unknown kind %d", k, e->kind);
        if (!isfinite(e->start_s) || !isfinite(e->end_s) || e->end_s < e->start_s)
            return pt_fail(PT_EINVAL, "timeline: event %d has times [%g, %g]; need finite start <= end", k,
                           e->start_s, e->end_s);
        if (e->start_s < *t0)
            *t0 = e->start_s;
        if (e->end_s > *t1)
            *t1 = e->end_s;
    }
    if (n == 0)
        *t0 = *t1 = 0.0;
    return PT_OK;
}

/* A round tick step giving about `want` ticks over span. */
static double nice_step(double span, int want)
{
    double raw = span / want, p = pow(10.0, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

pt_status pt_timeline_svg(const pt_timeline_event *events, int n_events, const pt_timeline_opts *opts, FILE *f)
{
    double t0, t1;
    PT_CHECK(check_events(events, n_events, opts, &t0, &t1));
    int P = opts->n_ranks;
    int width = opts->width_px > 0 ? opts->width_px : 1200;
    const int left = 64, right = opts->bubble ? 120 : 24, top = opts->title ? 40 : 16, row_h = 30, box_h = 20;
    const int plot_w = width - left - right;
    if (plot_w < 100)
        return pt_fail(PT_EINVAL, "timeline: width %d px is too narrow; use at least %d", width, left + right + 100);
    double span = t1 > t0 ? t1 - t0 : 1.0;
    double scale = plot_w / span;
    int any_chunk = 0, used[PT_ACT_KIND_COUNT] = { 0 };
    for (int k = 0; k < n_events; k++) {
        any_chunk |= events[k].chunk > 0;
        int comm = events[k].kind >= PT_ACT_SEND_ACT && events[k].kind <= PT_ACT_RECV_GRAD;
        if (events[k].end_s > events[k].start_s && (!comm || opts->show_comm))
            used[events[k].kind] = 1;
    }
    int axis_y = top + P * row_h + 6;
    int legend_y = axis_y + 34;
    int height = legend_y + 30;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\">\n",
            width, height, width, height);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    if (opts->title) {
        fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">", left);
        xml_text(f, opts->title);
        fputs("</text>\n", f);
    }
    /* rows: a light band per rank, so idle time shows as empty band; odd chunks are drawn lighter */
    for (int r = 0; r < P; r++) {
        int y = top + r * row_h;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n", left, y + (row_h - box_h) / 2,
                plot_w, box_h, "#f4f4f4");
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">rank %d</text>\n", left - 8, y + row_h / 2 + 4, r);
        if (opts->bubble)
            fprintf(f, "<text x=\"%d\" y=\"%d\">bubble %.1f%%</text>\n", left + plot_w + 8, y + row_h / 2 + 4,
                    100.0 * opts->bubble[r]);
    }
    /* boxes */
    for (int k = 0; k < n_events; k++) {
        const pt_timeline_event *e = &events[k];
        int comm = e->kind >= PT_ACT_SEND_ACT && e->kind <= PT_ACT_RECV_GRAD;
        if ((comm && (!opts->show_comm || e->end_s <= e->start_s)) || e->track != 0)
            continue;
        double x = left + (e->start_s - t0) * scale, w = (e->end_s - e->start_s) * scale;
        int y = top + e->rank * row_h + (row_h - box_h) / 2;
        int h = box_h;
        if (comm) {
            y += box_h - 4;
            h = 4;
        }
        if (w < 0.5)
            w = 0.5;
        char tok[48];
        pt_action a = { (pt_action_kind)e->kind, e->microbatch, e->chunk, e->peer };
        pt_action_format(&a, tok, sizeof tok);
        fprintf(f, "<rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\" stroke=\"white\" "
                   "stroke-width=\"0.5\"%s><title>rank %d ",
                x, y, w, h, kind_style[e->kind].fill, (!comm && e->chunk % 2) ? " fill-opacity=\"0.72\"" : "",
                e->rank);
        xml_text(f, tok);
        fprintf(f, " [%.6g, %.6g] s</title></rect>\n", e->start_s - t0, e->end_s - t0);
        if (!comm && e->microbatch >= 0) {
            char label[32];
            if (any_chunk)
                snprintf(label, sizeof label, "%d.%d", e->microbatch, e->chunk);
            else
                snprintf(label, sizeof label, "%d", e->microbatch);
            if (w >= 5.8 * (double)strlen(label) + 2)
                fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\" fill=\"white\" font-size=\"10\">%s</text>\n",
                        x + w / 2, y + box_h / 2 + 4, label);
        }
    }
    /* time axis */
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\"/>\n", left, axis_y, left + plot_w, axis_y);
    double step = nice_step(span, 10);
    const char *unit = "s";
    double mul = 1.0;
    if (span < 1e-3) {
        unit = "us";
        mul = 1e6;
    } else if (span < 1.0 && t1 - t0 > 0) {
        unit = "ms";
        mul = 1e3;
    }
    for (double t = 0; t <= span * (1 + 1e-9); t += step) {
        double x = left + t * scale;
        fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#555\"/>\n", x, axis_y, x, axis_y + 4);
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\" fill=\"#333\">%.4g</text>\n", x, axis_y + 16,
                t * mul);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" fill=\"#333\">time (%s)</text>\n", left + plot_w,
            axis_y + 30, unit);
    /* legend */
    int lx = left;
    const char *drawn[PT_ACT_KIND_COUNT] = { 0 };
    int n_drawn = 0;
    for (int k = 0; k < PT_ACT_KIND_COUNT; k++) {
        if (!used[k])
            continue;
        int dup = 0;
        for (int d = 0; d < n_drawn; d++)
            dup |= strcmp(drawn[d], kind_style[k].label) == 0;
        if (dup)
            continue;
        drawn[n_drawn++] = kind_style[k].label;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", lx, legend_y, kind_style[k].fill);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", lx + 19, legend_y + 11, kind_style[k].label);
        lx += 30 + 7 * (int)strlen(kind_style[k].label);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"#f4f4f4\" stroke=\"#ccc\"/>\n", lx,
            legend_y);
    fprintf(f, "<text x=\"%d\" y=\"%d\">idle (bubble)</text>\n", lx + 19, legend_y + 11);
    fputs("</svg>\n", f);
    if (ferror(f))
        return pt_fail(PT_EIO, "timeline: writing the SVG failed; check free space");
    return PT_OK;
}

pt_status pt_timeline_trace(const pt_timeline_event *events, int n_events, const pt_timeline_opts *opts, FILE *f)
{
    double t0, t1;
    PT_CHECK(check_events(events, n_events, opts, &t0, &t1));
    pt_status st = PT_OK;
    char *text = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "traceEvents") : NULL;
    if (!arr)
        goto oom;
    if (!cJSON_AddStringToObject(root, "displayTimeUnit", "ms"))
        goto oom;
    int n_tracks = 1; /* 1 + the highest track used: rank, comm, tp */
    for (int k = 0; k < n_events; k++)
        if (events[k].track >= 0 && events[k].track < 3 && events[k].track + 1 > n_tracks)
            n_tracks = events[k].track + 1;
    for (int r = 0; r < opts->n_ranks * n_tracks; r++) {
        static const char *const fmt[3] = { "rank %d", "rank %d comm", "rank %d tp" };
        char name[32];
        snprintf(name, sizeof name, fmt[r / opts->n_ranks], r % opts->n_ranks);
        cJSON *m = cJSON_CreateObject();
        if (!m)
            goto oom;
        cJSON_AddItemToArray(arr, m);
        cJSON *args = cJSON_CreateObject();
        if (!cJSON_AddStringToObject(m, "name", "thread_name") || !cJSON_AddStringToObject(m, "ph", "M") ||
            !cJSON_AddNumberToObject(m, "pid", 0) || !cJSON_AddNumberToObject(m, "tid", r) || !args)
            goto oom_args;
        cJSON_AddItemToObject(m, "args", args);
        if (!cJSON_AddStringToObject(args, "name", name))
            goto oom;
        continue;
    oom_args:
        cJSON_Delete(args);
        goto oom;
    }
    if (opts->title) {
        cJSON *m = cJSON_CreateObject();
        if (!m)
            goto oom;
        cJSON_AddItemToArray(arr, m);
        cJSON *args = cJSON_AddObjectToObject(m, "args");
        if (!args || !cJSON_AddStringToObject(m, "name", "process_name") || !cJSON_AddStringToObject(m, "ph", "M") ||
            !cJSON_AddNumberToObject(m, "pid", 0) || !cJSON_AddStringToObject(args, "name", opts->title))
            goto oom;
    }
    for (int k = 0; k < n_events; k++) {
        const pt_timeline_event *e = &events[k];
        char tok[48];
        pt_action a = { (pt_action_kind)e->kind, e->microbatch, e->chunk, e->peer };
        pt_action_format(&a, tok, sizeof tok);
        cJSON *x = cJSON_CreateObject();
        if (!x)
            goto oom;
        cJSON_AddItemToArray(arr, x);
        cJSON *args = cJSON_AddObjectToObject(x, "args");
        if (!args || !cJSON_AddStringToObject(x, "name", tok) ||
            !cJSON_AddStringToObject(x, "cat", pt_action_kind_name((pt_action_kind)e->kind)) ||
            !cJSON_AddStringToObject(x, "ph", "X") || !cJSON_AddNumberToObject(x, "ts", (e->start_s - t0) * 1e6) ||
            !cJSON_AddNumberToObject(x, "dur", (e->end_s - e->start_s) * 1e6) ||
            !cJSON_AddNumberToObject(x, "pid", 0) ||
            !cJSON_AddNumberToObject(x, "tid", e->rank + (e->track > 0 && e->track < 3 ? e->track : 0) * opts->n_ranks) ||
            !cJSON_AddNumberToObject(args, "action", e->action) ||
            !cJSON_AddNumberToObject(args, "microbatch", e->microbatch) ||
            !cJSON_AddNumberToObject(args, "chunk", e->chunk) || !cJSON_AddNumberToObject(args, "peer", e->peer))
            goto oom;
    }
    text = cJSON_PrintUnformatted(root);
    if (!text)
        goto oom;
    if (fputs(text, f) < 0 || fputc('\n', f) == EOF || ferror(f))
        st = pt_fail(PT_EIO, "timeline: writing the trace failed; check free space");
    goto done;
oom:
    st = pt_fail(PT_ENOMEM, "timeline: out of memory building a trace of %d events", n_events);
done:
    if (text)
        cJSON_free(text);
    cJSON_Delete(root);
    return st;
}

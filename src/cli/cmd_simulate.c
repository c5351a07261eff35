/* `pipetrain simulate`: validate a schedule (generated or from a file), simulate it, and show
 * its timeline as ASCII, SVG or a Chrome trace; or compare several schedules side by side. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeline.h"

typedef struct sim_args {
    const char *schedule, *costs_path, *svg, *trace, *compare, *emit;
    int P, V, M, json, width;
    int v_seen, p_seen, m_seen;
} sim_args;

/* Default chunks per rank for a generator when --chunks is not given. */
static int default_chunks(const char *name)
{
    return (strcmp(name, "interleaved") == 0 || strcmp(name, "zbv") == 0) ? 2 : 1;
}

/* Makes schedule `name` (a generator, or a file when it is not one) and its costs. */
static pt_status make_schedule(const sim_args *a, const char *name, pt_schedule **s, pt_sim_costs **c)
{
    *s = NULL;
    *c = NULL;
    if (!pt_sched_is_generator(name)) {
        struct stat stt;
        if (stat(name, &stt) != 0)
            return pt_args_enum("schedule", name, pt_sched_generator_names(), "or a readable schedule file", NULL);
        PT_CHECK(pt_sched_load(name, s));
        if ((a->p_seen && a->P != (*s)->n_ranks) || (a->m_seen && a->M != (*s)->n_microbatches) ||
            (a->v_seen && a->V != (*s)->n_chunks)) {
            pt_status st = pt_fail(PT_EINVAL, "%s holds ranks=%d chunks=%d microbatches=%d, which --stages/--chunks/"
                                              "--micro-batches contradict; drop those options for a file",
                                   name, (*s)->n_ranks, (*s)->n_chunks, (*s)->n_microbatches);
            pt_sched_destroy(*s);
            *s = NULL;
            return st;
        }
    }
    int P = *s ? (*s)->n_ranks : a->P, V = *s ? (*s)->n_chunks : (a->v_seen ? a->V : default_chunks(name));
    pt_status st = PT_OK;
    if (a->costs_path)
        PT_TRY(pt_sim_costs_load(a->costs_path, P * V, c), fail);
    if (!*s) {
        PT_TRY(pt_sched_generate(name, a->P, V, a->M, *c, s), fail);
    }
    return PT_OK;
fail:
    pt_sim_costs_destroy(*c);
    *c = NULL;
    pt_sched_destroy(*s);
    *s = NULL;
    return st;
}

static int max_int(const int *v, int n)
{
    int m = 0;
    for (int k = 0; k < n; k++)
        m = v[k] > m ? v[k] : m;
    return m;
}

static char ascii_of(const pt_timeline_event *e)
{
    switch ((pt_action_kind)e->kind) {
    case PT_ACT_FORWARD: return e->chunk % 2 ? 'f' : 'F';
    case PT_ACT_BACKWARD: return e->chunk % 2 ? 'b' : 'B';
    case PT_ACT_BACKWARD_INPUT: return e->chunk % 2 ? 'i' : 'I';
    case PT_ACT_BACKWARD_WEIGHT: return e->chunk % 2 ? 'w' : 'W';
    case PT_ACT_REDUCE_GRADS: return 'R';
    case PT_ACT_OPTIMIZER_STEP: return 'S';
    default: return 0;
    }
}

static void print_ascii(const pt_schedule *s, const pt_sim_result *r, int width)
{
    if (r->step_time <= 0 || width < 10)
        return;
    double dt = r->step_time / width;
    char *row = malloc((size_t)width + 1);
    if (!row)
        return;
    printf("timeline (one column = %.4g s; F/B/I/W = chunk 0, 2, ..; f/b/i/w = chunk 1, 3, ..; R = AR, S = STEP;"
           " . = idle)\n",
           dt);
    for (int rank = 0; rank < s->n_ranks; rank++) {
        memset(row, '.', (size_t)width);
        row[width] = '\0';
        for (int k = 0; k < r->n_events; k++) {
            const pt_timeline_event *e = &r->events[k];
            char ch = ascii_of(e);
            if (e->rank != rank || !ch || e->end_s <= e->start_s)
                continue;
            for (int c = (int)(e->start_s / dt); c < width && (c + 0.5) * dt < e->end_s; c++)
                if ((c + 0.5) * dt >= e->start_s)
                    row[c] = ch;
        }
        printf("  rank%-3d |%s|\n", rank, row);
    }
    free(row);
}

static void print_table(const pt_schedule *s, const pt_sim_result *r)
{
    printf("step time %.6g s, bubble %.2f%% overall\n", r->step_time, 100.0 * r->bubble_overall);
    printf("  %-6s %8s %12s %10s %14s\n", "rank", "bubble", "busy (s)", "peak act", "peak bytes");
    for (int k = 0; k < s->n_ranks; k++)
        printf("  %-6d %7.2f%% %12.6g %10d %14.6g\n", k, 100.0 * r->bubble[k], r->busy_s[k], r->peak_inflight[k],
               r->peak_act_bytes[k]);
}

static pt_status print_json(const pt_schedule *s, const pt_sim_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *b = cJSON_CreateArray(), *p = cJSON_CreateArray(), *pb = cJSON_CreateArray();
    if (!o || !b || !p || !pb) {
        cJSON_Delete(o);
        cJSON_Delete(b);
        cJSON_Delete(p);
        cJSON_Delete(pb);
        return pt_fail(PT_ENOMEM, "simulate: out of memory");
    }
    cJSON_AddStringToObject(o, "schedule", s->name);
    cJSON_AddNumberToObject(o, "ranks", s->n_ranks);
    cJSON_AddNumberToObject(o, "chunks", s->n_chunks);
    cJSON_AddNumberToObject(o, "microbatches", s->n_microbatches);
    cJSON_AddNumberToObject(o, "step_time", r->step_time);
    cJSON_AddNumberToObject(o, "bubble_overall", r->bubble_overall);
    for (int k = 0; k < s->n_ranks; k++) {
        cJSON_AddItemToArray(b, cJSON_CreateNumber(r->bubble[k]));
        cJSON_AddItemToArray(p, cJSON_CreateNumber(r->peak_inflight[k]));
        cJSON_AddItemToArray(pb, cJSON_CreateNumber(r->peak_act_bytes[k]));
    }
    cJSON_AddItemToObject(o, "bubble", b);
    cJSON_AddItemToObject(o, "peak_activations", p);
    cJSON_AddItemToObject(o, "peak_act_bytes", pb);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text)
        return pt_fail(PT_ENOMEM, "simulate: out of memory");
    printf("%s\n", text);
    cJSON_free(text);
    return PT_OK;
}

static pt_status write_picture(const char *path, const pt_schedule *s, const pt_sim_result *r, int svg)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return pt_fail(PT_EIO, "%s: cannot create (%s); check the directory", path, strerror(errno));
    char title[128];
    snprintf(title, sizeof title, "%s  P=%d V=%d M=%d  step %.4g s  bubble %.1f%%", s->name, s->n_ranks, s->n_chunks,
             s->n_microbatches, r->step_time, 100.0 * r->bubble_overall);
    pt_timeline_opts o = { .title = title, .n_ranks = s->n_ranks, .bubble = r->bubble, .show_comm = 1 };
    pt_status st = svg ? pt_timeline_svg(r->events, r->n_events, &o, f) : pt_timeline_trace(r->events, r->n_events, &o, f);
    if (fclose(f) != 0 && st == PT_OK)
        st = pt_fail(PT_EIO, "%s: write failed (%s)", path, strerror(errno));
    if (st != PT_OK)
        return pt_fail_wrap(st, "%s", path);
    return PT_OK;
}

static pt_status run_compare(const sim_args *a)
{
    char *list = strdup(a->compare);
    if (!list)
        return pt_fail(PT_ENOMEM, "simulate: out of memory");
    pt_status st = PT_OK;
    if (!a->json)
        printf("%-14s %4s %3s %5s %12s %9s %9s\n", "schedule", "P", "V", "M", "step (s)", "bubble", "peak act");
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        pt_schedule *s = NULL;
        pt_sim_costs *c = NULL;
        pt_sim_result r;
        sim_args b = *a;
        if (b.v_seen && pt_sched_is_generator(name) && default_chunks(name) == 1 && strcmp(name, "looped-bfs") != 0)
            b.v_seen = 0; /* --chunks applies to the schedules that take chunks */
        st = make_schedule(&b, name, &s, &c);
        if (st == PT_OK)
            st = pt_sched_simulate(s, c, &r);
        if (st == PT_OK) {
            if (a->json)
                st = print_json(s, &r);
            else
                printf("%-14s %4d %3d %5d %12.6g %8.2f%% %9d\n", s->name, s->n_ranks, s->n_chunks, s->n_microbatches,
                       r.step_time, 100.0 * r.bubble_overall, max_int(r.peak_inflight, r.n_ranks));
            pt_sim_result_free(&r);
        }
        pt_sched_destroy(s);
        pt_sim_costs_destroy(c);
        if (st != PT_OK) {
            st = pt_fail_wrap(st, "%s", name);
            break;
        }
    }
    free(list);
    return st;
}

int pt_cmd_simulate(int argc, char **argv)
{
    sim_args a = { .P = 4, .V = 1, .M = 8, .width = 100 };
    pt_opt opts[] = {
        { "schedule", PT_OPT_STRING, &a.schedule, "NAME|FILE",
          "gpipe, 1f1b, interleaved, looped-bfs, zb-h1, zb-h2, zbv, or a schedule file (text, or .csv)", 0 },
        { "stages", PT_OPT_INT, &a.P, "P", "pipeline ranks (generators)", 0 },
        { "micro-batches", PT_OPT_INT, &a.M, "M", "micro-batches per step (generators)", 0 },
        { "chunks", PT_OPT_INT, &a.V, "V", "chunks per rank (interleaved, zbv: 2 when not given)", 0 },
        { "action-costs", PT_OPT_STRING, &a.costs_path, "FILE",
          "per-stage action costs (JSON; docs/schedules.md; not profile-layers' --layer-costs); default unit costs", 0,
          "costs" },
        { "svg", PT_OPT_STRING, &a.svg, "OUT", "write an SVG timeline", 0 },
        { "trace", PT_OPT_STRING, &a.trace, "OUT", "write a Chrome trace (opens in Perfetto)", 0 },
        { "compare", PT_OPT_STRING, &a.compare, "LIST", "comma-separated schedules: one row each", 0 },
        { "emit", PT_OPT_STRING, &a.emit, "FILE", "write the schedule in its text form (.csv: PyTorch's CSV)", 0 },
        { "json", PT_OPT_FLAG, &a.json, NULL, "print the results as one JSON object (per schedule)", 0 },
        { "width", PT_OPT_INT, &a.width, "COLS", "ASCII timeline width (0: none)", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain simulate --schedule NAME|FILE --stages P --micro-batches M [--chunks V] [--action-costs FILE] "
        "[--svg OUT] [--trace OUT] [--emit FILE] [--json]\n       pipetrain simulate --compare LIST --stages P "
        "--micro-batches M",
        "Validate a pipeline schedule, predict its step time, bubble and activation memory per rank, and draw\n"
        "its timeline. An invalid schedule exits non-zero with the validator's message.",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "examples:\n"
        "  pipetrain simulate --schedule 1f1b --stages 4 --micro-batches 8 --svg 1f1b.svg\n"
        "  pipetrain simulate --compare gpipe,1f1b,interleaved,zb-h1,zbv --stages 4 --micro-batches 8\n"
        "  pipetrain simulate --schedule zbv --stages 4 --micro-batches 8 --emit my.sched   # edit, then:\n"
        "  pipetrain simulate --schedule my.sched --trace trace.json",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    a.p_seen = opts[1].seen;
    a.m_seen = opts[2].seen;
    a.v_seen = opts[3].seen;
    if (a.compare)
        return pt_cli_finish(run_compare(&a));
    if (!a.schedule)
        return pt_cli_finish(pt_fail(PT_EINVAL, "simulate: give --schedule NAME|FILE (or --compare LIST); see --help"));
    pt_schedule *s = NULL;
    pt_sim_costs *c = NULL;
    pt_sim_result r = { 0 };
    PT_TRY(make_schedule(&a, a.schedule, &s, &c), out);
    if (a.emit)
        PT_TRY(pt_sched_save(s, a.emit), out);
    PT_TRY(pt_sched_simulate(s, c, &r), out);
    if (a.json) {
        PT_TRY(print_json(s, &r), out);
    } else {
        printf("schedule %s: P=%d V=%d M=%d, valid\n", s->name, s->n_ranks, s->n_chunks, s->n_microbatches);
        print_ascii(s, &r, a.width);
        print_table(s, &r);
    }
    if (a.svg)
        PT_TRY(write_picture(a.svg, s, &r, 1), out);
    if (a.trace)
        PT_TRY(write_picture(a.trace, s, &r, 0), out);
out:
    pt_sim_result_free(&r);
    pt_sim_costs_destroy(c);
    pt_sched_destroy(s);
    return pt_cli_finish(st);
}

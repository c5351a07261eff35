/* `pipetrain bench schedule [--json]`: what each schedule buys, and what schedules cost to make.
 *
 *  quality: for every generator and (P, M) in a small grid, the simulated bubble (overall, and
 *           idle seconds per rank) and the peak in-flight activations (max over ranks), with unit
 *           costs F=1, B=2, I=W=1 (chunked schedules: per chunk) and instant links
 *  speed:   wall time to generate, validate and simulate a large schedule (P=64, V=4, M=512 for
 *           the chunked interleaved and looped-bfs; P=64, M=512 for the V=1 ones), best of
 *           --reps runs
 * With --json every result is one JSON object per line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeutil.h"

static int json_out;

static void emit(cJSON *o)
{
    char *t = cJSON_PrintUnformatted(o);
    if (t)
        printf("%s\n", t);
    cJSON_free(t);
    cJSON_Delete(o);
}

static int takes(const char *g, int V)
{
    if (!strcmp(g, "interleaved"))
        return V >= 2;
    if (!strcmp(g, "looped-bfs"))
        return V == 2; /* one chunked row per (P, M) keeps the table short */
    if (!strcmp(g, "zbv"))
        return V == 2;
    return V == 1;
}

static pt_status quality(void)
{
    static const int Ps[] = { 2, 4, 8 };
    static const int Ms_per_p[] = { 1, 2, 4 };
    if (!json_out)
        printf("%-12s %3s %2s %4s %10s %10s %9s\n", "schedule", "P", "V", "M", "bubble", "idle/rank", "peak act");
    for (size_t pi = 0; pi < sizeof Ps / sizeof Ps[0]; pi++)
        for (size_t mi = 0; mi < sizeof Ms_per_p / sizeof Ms_per_p[0]; mi++)
            for (const char *const *g = pt_sched_generator_names(); *g; g++)
                for (int V = 1; V <= 2; V++) {
                    int P = Ps[pi], M = Ms_per_p[mi] * P;
                    if (!takes(*g, V))
                        continue;
                    pt_schedule *s;
                    pt_sim_result r;
                    PT_CHECK(pt_sched_generate(*g, P, V, M, NULL, &s));
                    pt_status st = pt_sched_simulate(s, NULL, &r);
                    pt_sched_destroy(s);
                    PT_CHECK(st);
                    int peak = 0;
                    double idle = 0;
                    for (int k = 0; k < P; k++) {
                        peak = r.peak_inflight[k] > peak ? r.peak_inflight[k] : peak;
                        idle += (r.step_time - r.busy_s[k]) / P;
                    }
                    if (json_out) {
                        cJSON *o = cJSON_CreateObject();
                        cJSON_AddStringToObject(o, "bench", "schedule");
                        cJSON_AddStringToObject(o, "schedule", *g);
                        cJSON_AddNumberToObject(o, "ranks", P);
                        cJSON_AddNumberToObject(o, "chunks", V);
                        cJSON_AddNumberToObject(o, "microbatches", M);
                        cJSON_AddNumberToObject(o, "step_time", r.step_time);
                        cJSON_AddNumberToObject(o, "bubble", r.bubble_overall);
                        cJSON_AddNumberToObject(o, "idle_per_rank", idle);
                        cJSON_AddNumberToObject(o, "peak_activations", peak);
                        emit(o);
                    } else {
                        printf("%-12s %3d %2d %4d %9.2f%% %10.3g %9d\n", *g, P, V, M, 100 * r.bubble_overall, idle,
                               peak);
                    }
                    pt_sim_result_free(&r);
                }
    return PT_OK;
}

static pt_status speed(const char *name, int P, int V, int M, int repeat)
{
    double best_gen = 1e30, best_val = 1e30, best_sim = 1e30;
    long long n_actions = 0;
    for (int k = 0; k < repeat; k++) {
        pt_schedule *s;
        pt_sim_result r;
        int64_t t0 = pt_now_ns();
        PT_CHECK(pt_sched_generate(name, P, V, M, NULL, &s));
        int64_t t1 = pt_now_ns();
        pt_status st = pt_sched_validate(s);
        int64_t t2 = pt_now_ns();
        if (st == PT_OK)
            st = pt_sched_simulate(s, NULL, &r); /* validates again inside */
        int64_t t3 = pt_now_ns();
        n_actions = 0;
        for (int q = 0; q < s->n_ranks; q++)
            n_actions += s->n_actions[q];
        pt_sched_destroy(s);
        PT_CHECK(st);
        pt_sim_result_free(&r);
        double g = pt_seconds_between(t0, t1), v = pt_seconds_between(t1, t2), m = pt_seconds_between(t2, t3);
        best_gen = g < best_gen ? g : best_gen;
        best_val = v < best_val ? v : best_val;
        best_sim = m < best_sim ? m : best_sim;
    }
    if (json_out) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "bench", "schedule_speed");
        cJSON_AddStringToObject(o, "schedule", name);
        cJSON_AddNumberToObject(o, "ranks", P);
        cJSON_AddNumberToObject(o, "chunks", V);
        cJSON_AddNumberToObject(o, "microbatches", M);
        cJSON_AddNumberToObject(o, "actions", (double)n_actions);
        cJSON_AddNumberToObject(o, "generate_s", best_gen);
        cJSON_AddNumberToObject(o, "validate_s", best_val);
        cJSON_AddNumberToObject(o, "generate_validate_s", best_gen + best_val);
        cJSON_AddNumberToObject(o, "simulate_s", best_sim);
        emit(o);
    } else {
        printf("%-12s P=%d V=%d M=%d: %lld actions, generate %.3f s + validate %.3f s = %.3f s, simulate %.3f s\n",
               name, P, V, M, n_actions, best_gen, best_val, best_gen + best_val, best_sim);
    }
    return PT_OK;
}

int pt_bench_schedule(int argc, char **argv)
{
    int repeat = 3, P = 64, V = 4, M = 512, skip_quality = 0;
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json_out, NULL, "one JSON object per line", 0 },
        { "reps", PT_OPT_INT, &repeat, "N", "timing runs per schedule (the best is reported)", 0, "repeat" },
        { "stages", PT_OPT_INT, &P, "P", "ranks of the speed test", 0 },
        { "chunks", PT_OPT_INT, &V, "V", "chunks per rank of the speed test (interleaved, looped-bfs)", 0 },
        { "micro-batches", PT_OPT_INT, &M, "M", "micro-batches of the speed test", 0 },
        { "speed-only", PT_OPT_FLAG, &skip_quality, NULL, "skip the bubble/memory table", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench schedule [--json] [options]",
                         "Simulated bubble and peak activation memory per schedule and (P, M) with unit costs, and\n"
                         "the time to generate, validate and simulate a large schedule.",
                         opts, (int)(sizeof opts / sizeof opts[0]), NULL };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (repeat < 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--reps must be >= 1"));
    if (!skip_quality)
        PT_TRY(quality(), out);
    for (const char *const *g = pt_sched_generator_names(); *g; g++) {
        int chunked = !strcmp(*g, "interleaved") || !strcmp(*g, "looped-bfs");
        int v = chunked ? V : !strcmp(*g, "zbv") ? 2 : 1;
        if (!strcmp(*g, "interleaved") && v < 2)
            continue;
        PT_TRY(speed(*g, P, v, M, repeat), out);
    }
out:
    return pt_cli_finish(st);
}

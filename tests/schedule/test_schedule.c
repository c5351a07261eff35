/* Tests of schedule/: generators, validator, text and CSV forms, simulator, timeline writers.
 *
 *   test_schedule generators             every generator for P 1..8, V {1,2,4}, M 1..4P validates,
 *                                        round-trips, and meets its bubble / memory formula
 *   test_schedule bad DIR                every DIR/NAME.txt fails to load or validate with the reason
 *                                        its "# expect: ..." line names
 *   test_schedule golden DIR             generated schedules equal DIR/<name>.txt byte for byte
 *   test_schedule parse_errors           malformed text gives "line L:C" errors
 *   test_schedule simulate               latency/bandwidth timing, cost files
 *   test_schedule timeline               SVG and Chrome trace writers
 *
 * A failure prints what and where, and the exit status is 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include <cjson/cJSON.h>

#include "pipetrain/schedule.h"
#include "pipetrain/timeline.h"

static int n_fail;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
            if (++n_fail > 20) {                                          \
                fprintf(stderr, "too many failures\n");                   \
                exit(1);                                                  \
            }                                                             \
        }                                                                 \
    } while (0)

static int takes_v(const char *g, int V)
{
    if (!strcmp(g, "interleaved"))
        return V >= 2;
    if (!strcmp(g, "looped-bfs"))
        return 1;
    if (!strcmp(g, "zbv"))
        return V == 2;
    return V == 1;
}

static int max_peak(const pt_sim_result *r)
{
    int m = 0;
    for (int k = 0; k < r->n_ranks; k++)
        m = r->peak_inflight[k] > m ? r->peak_inflight[k] : m;
    return m;
}

static double idle_time(const pt_sim_result *r)
{
    double t = 0;
    for (int k = 0; k < r->n_ranks; k++)
        t += r->step_time - r->busy_s[k];
    return t / r->n_ranks;
}

/* text and CSV round trips of one schedule */
static void check_roundtrip(const pt_schedule *s, const char *what)
{
    char *text = NULL, *text2 = NULL, *csv = NULL, *csv2 = NULL;
    pt_schedule *b = NULL, *c = NULL;
    if (pt_sched_format(s, &text) != PT_OK || pt_sched_parse(text, &b) != PT_OK) {
        CHECK(0, "%s: text round trip failed: %s", what, pt_last_error());
        goto done;
    }
    CHECK(pt_sched_equal(s, b), "%s: print then parse changed the schedule", what);
    CHECK(pt_sched_format(b, &text2) == PT_OK && strcmp(text, text2) == 0, "%s: parse then print changed the text",
          what);
    if (pt_sched_to_csv(s, &csv) != PT_OK || pt_sched_from_csv(csv, s->name, &c) != PT_OK) {
        CHECK(0, "%s: CSV round trip failed: %s", what, pt_last_error());
        goto done;
    }
    CHECK(pt_sched_equal(s, c), "%s: CSV export then import changed the schedule", what);
    CHECK(pt_sched_to_csv(c, &csv2) == PT_OK && strcmp(csv, csv2) == 0, "%s: CSV import then export changed the CSV",
          what);
done:
    free(text);
    free(text2);
    free(csv);
    free(csv2);
    pt_sched_destroy(b);
    pt_sched_destroy(c);
}

static int test_generators(void)
{
    const char *const *names = pt_sched_generator_names();
    int n_checked = 0;
    for (int P = 1; P <= 8; P++)
        for (int V = 1; V <= 4; V *= 2)
            for (int M = 1; M <= 4 * P; M++)
                for (int g = 0; names[g]; g++) {
                    const char *name = names[g];
                    char what[96];
                    snprintf(what, sizeof what, "%s P=%d V=%d M=%d", name, P, V, M);
                    pt_schedule *s = NULL;
                    pt_status st = pt_sched_generate(name, P, V, M, NULL, &s);
                    if (!takes_v(name, V)) {
                        CHECK(st == PT_EINVAL, "%s: should refuse V=%d", what, V);
                        pt_sched_destroy(s);
                        continue;
                    }
                    if (st != PT_OK) {
                        CHECK(0, "%s: generate failed: %s", what, pt_last_error());
                        continue;
                    }
                    n_checked++;
                    CHECK(pt_sched_validate(s) == PT_OK, "%s: does not validate: %s", what, pt_last_error());
                    pt_sim_result r;
                    if (pt_sched_simulate(s, NULL, &r) != PT_OK) {
                        CHECK(0, "%s: simulate failed: %s", what, pt_last_error());
                        pt_sched_destroy(s);
                        continue;
                    }
                    for (int k = 0; k < P; k++)
                        CHECK(r.peak_inflight[k] == pt_sched_peak_inflight(s, k),
                              "%s: rank %d peak %d (simulated) != %d (from the order)", what, k, r.peak_inflight[k],
                              pt_sched_peak_inflight(s, k));
                    double want = (double)(P - 1) / (M + P - 1);
                    if (!strcmp(name, "gpipe") || !strcmp(name, "1f1b")) {
                        CHECK(fabs(r.bubble_overall - want) < 1e-12, "%s: bubble %.6f, want (P-1)/(M+P-1) = %.6f", what,
                              r.bubble_overall, want);
                        for (int k = 0; k < P; k++) {
                            CHECK(fabs(r.bubble[k] - want) < 1e-12, "%s: rank %d bubble %.6f, want %.6f", what, k,
                                  r.bubble[k], want);
                            if (!strcmp(name, "gpipe"))
                                CHECK(r.peak_inflight[k] == M, "%s: rank %d peak %d, want M = %d", what, k,
                                      r.peak_inflight[k], M);
                            else
                                CHECK(r.peak_inflight[k] <= P - k, "%s: rank %d peak %d, want <= P-s = %d", what, k,
                                      r.peak_inflight[k], P - k);
                        }
                    }
                    if (!strcmp(name, "interleaved") && M % P == 0) {
                        double mega = (double)(P - 1) / ((double)V * M + P - 1);
                        CHECK(fabs(r.bubble_overall - mega) < 1e-12, "%s: bubble %.6f, want Megatron's (P-1)/(VM+P-1) = %.6f",
                              what, r.bubble_overall, mega);
                    }
                    if (!strcmp(name, "zb-h1") && M >= P) {
                        /* the reference: 1F1B with B = I + W, at the same unit costs. The bubble compared
                         * is idle time, as in the zero-bubble paper ((P-1)(F+I-W) vs (P-1)(F+B)); as a
                         * fraction of a step that is shorter too, zb-h1's is a bit above a third. With
                         * M < P no schedule reaches a third: the pipeline never fills. */
                        pt_schedule *o = NULL;
                        pt_sim_result ro;
                        if (pt_sched_generate("1f1b", P, 1, M, NULL, &o) == PT_OK &&
                            pt_sched_simulate(o, NULL, &ro) == PT_OK) {
                            CHECK(idle_time(&r) <= idle_time(&ro) / 3 + 1e-9,
                                  "%s: idle time %.3f is more than a third of 1f1b's %.3f", what, idle_time(&r),
                                  idle_time(&ro));
                            CHECK(max_peak(&r) <= max_peak(&ro), "%s: peak activations %d, 1f1b needs %d", what,
                                  max_peak(&r), max_peak(&ro));
                            pt_sim_result_free(&ro);
                        } else {
                            CHECK(0, "%s: 1f1b reference failed: %s", what, pt_last_error());
                        }
                        pt_sched_destroy(o);
                    }
                    if (!strcmp(name, "zb-h2") || !strcmp(name, "zbv")) {
                        pt_schedule *o = NULL;
                        pt_sim_result ro;
                        if (pt_sched_generate("1f1b", P, 1, M, NULL, &o) == PT_OK &&
                            pt_sched_simulate(o, NULL, &ro) == PT_OK) {
                            /* per chunk the costs are per stage, so compare idle fractions */
                            CHECK(r.bubble_overall <= ro.bubble_overall + 1e-9, "%s: bubble %.4f worse than 1f1b %.4f",
                                  what, r.bubble_overall, ro.bubble_overall);
                            pt_sim_result_free(&ro);
                        }
                        pt_sched_destroy(o);
                    }
                    pt_sim_result_free(&r);
                    if (P <= 4 || M == 4 * P)
                        check_roundtrip(s, what);
                    pt_sched_destroy(s);
                }
    printf("generators: %d schedules checked\n", n_checked);
    CHECK(pt_sched_generate("nope", 2, 1, 2, NULL, &(pt_schedule *){ NULL }) == PT_EINVAL, "unknown name accepted");
    CHECK(pt_sched_generate("1f1b", 0, 1, 2, NULL, &(pt_schedule *){ NULL }) == PT_EINVAL, "P=0 accepted");
    return n_fail;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    return b;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of DIR/<*suffix>; returns count. */
static int list_dir(const char *dir, const char *suffix, char ***out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char **v = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), ls = strlen(suffix);
        if (l <= ls || strcmp(e->d_name + l - ls, suffix) != 0)
            continue;
        v = realloc(v, (size_t)(n + 1) * sizeof *v);
        v[n] = malloc(strlen(dir) + l + 2);
        sprintf(v[n], "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static int test_bad(const char *dir)
{
    char **files;
    int n = list_dir(dir, ".txt", &files);
    CHECK(n > 0, "no bad schedules in %s", dir);
    for (int k = 0; k < n; k++) {
        char *text = read_file(files[k]);
        CHECK(text, "%s: cannot read", files[k]);
        const char *ex = text ? strstr(text, "# expect: ") : NULL;
        CHECK(ex, "%s: no \"# expect: \" line", files[k]);
        if (text && ex) {
            char expect[256];
            ex += strlen("# expect: ");
            size_t l = strcspn(ex, "\n");
            snprintf(expect, sizeof expect, "%.*s", (int)l, ex);
            pt_schedule *s = NULL;
            pt_status st = pt_sched_load(files[k], &s);
            if (st == PT_OK)
                st = pt_sched_validate(s);
            CHECK(st != PT_OK, "%s: accepted, want an error containing \"%s\"", files[k], expect);
            if (st != PT_OK) {
                CHECK(strstr(pt_last_error(), expect), "%s: error\n%s\ndoes not contain \"%s\"", files[k],
                      pt_last_error(), expect);
                printf("%s: %.*s\n", strrchr(files[k], '/') + 1, (int)strcspn(pt_last_error(), "\n"), pt_last_error());
            }
            pt_sched_destroy(s);
        }
        free(text);
        free(files[k]);
    }
    free(files);
    return n_fail;
}

static int test_golden(const char *dir)
{
    char **files;
    int n = list_dir(dir, ".txt", &files);
    CHECK(n > 0, "no golden schedules in %s", dir);
    for (int k = 0; k < n; k++) {
        pt_schedule *want = NULL, *got = NULL;
        char *text = NULL, *file = read_file(files[k]);
        if (pt_sched_load(files[k], &want) != PT_OK) {
            CHECK(0, "%s: %s", files[k], pt_last_error());
        } else if (pt_sched_generate(want->name, want->n_ranks, want->n_chunks, want->n_microbatches, NULL, &got) !=
                   PT_OK) {
            CHECK(0, "%s: generate failed: %s", files[k], pt_last_error());
        } else {
            CHECK(pt_sched_validate(want) == PT_OK, "%s: %s", files[k], pt_last_error());
            CHECK(pt_sched_format(got, &text) == PT_OK && file && strcmp(text, file) == 0,
                  "%s: generator output differs from the golden file:\n%s", files[k], text ? text : "");
        }
        char csv_path[512];
        snprintf(csv_path, sizeof csv_path, "%.*s.csv", (int)(strlen(files[k]) - 4), files[k]);
        char *csv_file = read_file(csv_path);
        if (csv_file && got) {
            char *csv = NULL;
            CHECK(pt_sched_to_csv(got, &csv) == PT_OK && strcmp(csv, csv_file) == 0, "%s: CSV export differs:\n%s",
                  csv_path, csv ? csv : "");
            pt_schedule *back = NULL;
            CHECK(pt_sched_load(csv_path, &back) == PT_OK, "%s: %s", csv_path, pt_last_error());
            if (back) {
                snprintf(back->name, sizeof back->name, "%s", got->name);
                CHECK(pt_sched_equal(back, got), "%s: CSV import differs from the schedule", csv_path);
            }
            pt_sched_destroy(back);
            free(csv);
        }
        free(csv_file);
        free(file);
        free(text);
        pt_sched_destroy(want);
        pt_sched_destroy(got);
        free(files[k]);
    }
    free(files);
    return n_fail;
}

static int test_parse_errors(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        { "rank0: F0.0\n", "line 1:1: expected the header" },
        { "# pipetrain-schedule v2 name=x ranks=1 chunks=1 microbatches=1\n", "line 1:22: unknown format version" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1\n", "line 1:1: the header needs" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=1 color=red\n", "line 1:64: unknown header key" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=1\nrank0: F0.0 X3\n",
          "line 2:13: unknown token \"X3\"" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=1\nrank0: F0.0 B0.\n",
          "line 2:16: expected a number (chunk)" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=2\nrank0: F2.0\n",
          "line 2:9: micro-batch 2 is out of range" },
        { "# pipetrain-schedule v1 name=x ranks=2 chunks=1 microbatches=1\nrank0: F0.0 SA0.0>5\n",
          "line 2:19: peer rank 5 is out of range" },
        { "# pipetrain-schedule v1 name=x ranks=2 chunks=1 microbatches=1\nrank0: F0.0\n",
          "line 3:1: found 1 rank lines; ranks=2" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=1\nrank0: F0.0\nrank1: B0.0\n",
          "line 3:1: more rank lines than ranks=1" },
        { "# pipetrain-schedule v1 name=x ranks=2 chunks=1 microbatches=1\nrank1: F0.0\n",
          "line 2:1: expected rank0 here, found rank1" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=1\nrank0: F0.0 F99999999999.0\n",
          "line 2:14: micro-batch is too large" },
        { "# pipetrain-schedule v1 name=x ranks=1 chunks=1 microbatches=1\nrank0: SA0.0<1\n",
          "line 2:13: expected '>'" },
        { "# pipetrain-schedule v1 name=x ranks=2 chunks=1 microbatches=1 stages=0,0\nrank0:\nrank1:\n",
          "stage map entry 1 (rank 1 chunk 0) = 0 is a repeat" },
        { "# pipetrain-schedule v1 name=x ranks=2 chunks=1 microbatches=1 stages=0\n", "stages= has 1 entries" },
        { "", "no \"# pipetrain-schedule\" header" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pt_schedule *s = NULL;
        pt_status st = pt_sched_parse(cases[k].text, &s);
        CHECK(st == PT_EFORMAT || (st == PT_EINVAL && strstr(cases[k].want, "stage map")), "case %zu: status %d", k,
              (int)st);
        CHECK(strstr(pt_last_error(), cases[k].want), "case %zu: error \"%s\" lacks \"%s\"", k, pt_last_error(),
              cases[k].want);
        pt_sched_destroy(s);
    }
    /* CSV errors name row and cell */
    pt_schedule *s = NULL;
    CHECK(pt_sched_from_csv("0F0,0X0\n", NULL, &s) == PT_EFORMAT && strstr(pt_last_error(), "row 1, cell 2"),
          "CSV error: %s", pt_last_error());
    CHECK(pt_sched_from_csv("0F0\n0F1,1F0\n", NULL, &s) == PT_EFORMAT && strstr(pt_last_error(), "row 2, cell 1"),
          "CSV error: %s", pt_last_error());
    /* PyTorch's compute-only CSV is lowered */
    CHECK(pt_sched_from_csv("0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n", "torch", &s) == PT_OK, "compute-only CSV: %s",
          pt_last_error());
    if (s) {
        CHECK(pt_sched_validate(s) == PT_OK, "lowered CSV: %s", pt_last_error());
        CHECK(s->n_ranks == 2 && s->n_chunks == 1 && s->n_microbatches == 2, "CSV sizes");
        CHECK(s->actions[0][1].kind == PT_ACT_SEND_ACT && s->actions[0][1].peer == 1, "lowering put no send after F0");
    }
    pt_sched_destroy(s);
    return n_fail;
}

static int test_simulate(const char *tmpdir)
{
    /* 1f1b, P=2, M=1: F, link, F, B, link, B */
    pt_schedule *s = NULL;
    pt_sim_costs *c = NULL;
    pt_sim_result r;
    CHECK(pt_sched_generate("1f1b", 2, 1, 1, NULL, &s) == PT_OK, "gen");
    CHECK(pt_sim_costs_uniform(2, &c) == PT_OK, "costs");
    c->link_latency_s = 0.5;
    c->link_bandwidth_Bps = 100;
    c->boundary_bytes[0] = 100; /* +1 s per transfer */
    CHECK(pt_sched_simulate(s, c, &r) == PT_OK, "simulate: %s", pt_last_error());
    CHECK(fabs(r.step_time - 9.0) < 1e-12, "step %.3f, want 1+1.5+1+2+1.5+2 = 9", r.step_time);
    CHECK(fabs(r.bubble[0] - (1 - 3.0 / 9)) < 1e-12, "rank 0 bubble %.4f", r.bubble[0]);
    CHECK(r.n_events == s->n_actions[0] + s->n_actions[1], "one event per action");
    /* the receive on rank 1 waits from 0 until the data arrives at 2.5 */
    for (int k = 0; k < r.n_events; k++)
        if (r.events[k].rank == 1 && r.events[k].kind == PT_ACT_RECV_ACT)
            CHECK(fabs(r.events[k].end_s - 2.5) < 1e-12, "RA ends at %.3f, want 2.5", r.events[k].end_s);
    pt_sim_result_free(&r);
    pt_sim_result_free(&r); /* twice is fine */
    c->n_vstages = 3;
    CHECK(pt_sched_simulate(s, c, &r) == PT_EINVAL, "stage-count mismatch accepted");
    c->n_vstages = 2;
    pt_sim_costs_destroy(c);
    c = NULL;

    /* cost files */
    char path[512];
    snprintf(path, sizeof path, "%s/costs_ok.json", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("{\"f\": [1, 2], \"i\": 1.5, \"w\": 0.5, \"act_bytes\": [10, 20], \"link_latency_s\": 0.25}\n", f);
    fclose(f);
    CHECK(pt_sim_costs_load(path, 2, &c) == PT_OK, "cost file: %s", pt_last_error());
    if (c) {
        CHECK(c->f[1] == 2 && c->b[0] == 2.0 && c->i[1] == 1.5 && c->w[0] == 0.5 && c->act_bytes[1] == 20 &&
                  c->link_latency_s == 0.25 && c->link_bandwidth_Bps == 0,
              "cost file values");
        CHECK(pt_sched_simulate(s, c, &r) == PT_OK, "simulate with file costs");
        CHECK(fabs(r.step_time - (1 + 0.25 + 2 + 2 + 0.25 + 2)) < 1e-12, "step %.3f", r.step_time);
        CHECK(r.peak_act_bytes[0] == 10 && r.peak_act_bytes[1] == 20, "peak bytes %.1f %.1f", r.peak_act_bytes[0],
              r.peak_act_bytes[1]);
        pt_sim_result_free(&r);
    }
    pt_sim_costs_destroy(c);
    c = NULL;
    static const struct {
        const char *json, *want;
    } bad[] = {
        { "{\"f\": [1]}", "has 1 entries" },
        { "{\"f\": -1}", "finite and >= 0" },
        { "{\"speed\": 1}", "speed" },
        { "[1]", "JSON object" },
        { "{\"link_latency_s\": \"x\"}", "link_latency_s" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(path, sizeof path, "%s/costs_bad%zu.json", tmpdir, k);
        f = fopen(path, "w");
        fputs(bad[k].json, f);
        fclose(f);
        CHECK(pt_sim_costs_load(path, 2, &c) != PT_OK && strstr(pt_last_error(), bad[k].want),
              "bad cost file %zu: \"%s\" lacks \"%s\"", k, pt_last_error(), bad[k].want);
        pt_sim_costs_destroy(c);
        c = NULL;
    }
    pt_sched_destroy(s);

    /* zero-bubble generators follow the costs: a slow last stage changes the order */
    pt_sim_costs *slow = NULL;
    pt_schedule *a = NULL, *b = NULL;
    CHECK(pt_sim_costs_uniform(4, &slow) == PT_OK, "costs");
    slow->f[3] = 3;
    slow->i[3] = 3;
    CHECK(pt_sched_generate("zb-h1", 4, 1, 8, slow, &a) == PT_OK && pt_sched_validate(a) == PT_OK, "zb-h1 costs: %s",
          pt_last_error());
    CHECK(pt_sched_generate("zb-h1", 4, 1, 8, NULL, &b) == PT_OK, "zb-h1");
    CHECK(a && b && !pt_sched_equal(a, b), "zb-h1 ignored its costs");
    pt_sched_destroy(a);
    pt_sched_destroy(b);
    pt_sim_costs_destroy(slow);
    return n_fail;
}

static int test_timeline(const char *tmpdir)
{
    pt_schedule *s = NULL;
    pt_sim_result r;
    CHECK(pt_sched_generate("interleaved", 2, 2, 3, NULL, &s) == PT_OK, "gen");
    CHECK(pt_sched_simulate(s, NULL, &r) == PT_OK, "sim");
    char path[512];
    snprintf(path, sizeof path, "%s/t.svg", tmpdir);
    FILE *f = fopen(path, "w");
    pt_timeline_opts o = { .title = "interleaved <P=2>", .n_ranks = 2, .bubble = r.bubble, .show_comm = 1 };
    CHECK(pt_timeline_svg(r.events, r.n_events, &o, f) == PT_OK, "svg: %s", pt_last_error());
    fclose(f);
    char *svg = read_file(path);
    CHECK(svg && strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, "rank 1") && strstr(svg, "bubble ") &&
              strstr(svg, "&lt;P=2&gt;") && strstr(svg, ">1.1</text>"),
          "svg content");
    free(svg);
    snprintf(path, sizeof path, "%s/t.json", tmpdir);
    f = fopen(path, "w");
    CHECK(pt_timeline_trace(r.events, r.n_events, &o, f) == PT_OK, "trace: %s", pt_last_error());
    fclose(f);
    char *js = read_file(path);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    CHECK(root, "trace is not JSON");
    if (root) {
        const cJSON *ev = cJSON_GetObjectItem(root, "traceEvents"), *e;
        int n_x = 0, found = 0;
        cJSON_ArrayForEach(e, ev)
        {
            const cJSON *ph = cJSON_GetObjectItem(e, "ph"), *name = cJSON_GetObjectItem(e, "name");
            if (ph && !strcmp(ph->valuestring, "X")) {
                n_x++;
                found |= !strcmp(name->valuestring, "F0.1");
            }
        }
        CHECK(n_x == r.n_events, "trace has %d X events, want %d", n_x, r.n_events);
        CHECK(found, "trace lacks F0.1");
        cJSON_Delete(root);
    }
    free(js);
    /* bad events are refused */
    pt_timeline_event bad = { .rank = 5, .kind = 0, .start_s = 0, .end_s = 1 };
    f = fopen(path, "w");
    CHECK(pt_timeline_svg(&bad, 1, &o, f) == PT_EINVAL, "rank out of range accepted");
    bad.rank = 0;
    bad.end_s = -1;
    CHECK(pt_timeline_trace(&bad, 1, &o, f) == PT_EINVAL, "end before start accepted");
    fclose(f);
    pt_sim_result_free(&r);
    pt_sched_destroy(s);
    return n_fail;
}

/* pt_sched_forward_only on the placements of 1f1b, interleaved and zbv: every (micro-batch, chunk)
 * forward exactly once, no backward/AR/STEP, each forward after its input, and a run with
 * buffered sends and blocking receives finishes (no deadlock) with every message matched. */
static int test_forward_only(void)
{
    int before = n_fail;
    const char *gens[] = { "1f1b", "interleaved", "zbv" };
    for (int g = 0; g < 3; g++)
        for (int P = 1; P <= 4; P++)
            for (int M = 1; M <= 5; M++) {
                int V = !strcmp(gens[g], "1f1b") ? 1 : 2;
                if (!strcmp(gens[g], "zbv") && P < 2)
                    continue;
                pt_schedule *train = NULL, *e = NULL;
                if (pt_sched_generate(gens[g], P, V, P, NULL, &train) != PT_OK) {
                    CHECK(0, "%s P=%d: %s", gens[g], P, pt_last_error());
                    continue;
                }
                CHECK(pt_sched_forward_only(train, M, &e) == PT_OK, "%s P=%d M=%d: %s", gens[g], P, M, pt_last_error());
                if (!e) {
                    pt_sched_destroy(train);
                    continue;
                }
                int S = P * V;
                /* done[r][m*V+c], messages in flight per (src, dst): FIFO of (m, vstage) */
                int *done = calloc((size_t)P * M * V, sizeof(int)), *pos = calloc((size_t)P, sizeof(int));
                int *q = malloc((size_t)P * P * M * S * 2 * sizeof(int)), *qh = calloc((size_t)P * P, sizeof(int)),
                    *qt = calloc((size_t)P * P, sizeof(int));
                int n_f = 0;
                for (int r = 0; r < P; r++)
                    for (int i = 0; i < e->n_actions[r]; i++) {
                        pt_action_kind k = e->actions[r][i].kind;
                        CHECK(k == PT_ACT_FORWARD || k == PT_ACT_SEND_ACT || k == PT_ACT_RECV_ACT,
                              "%s P=%d M=%d: rank %d action %d is %s", gens[g], P, M, r, i, pt_action_kind_name(k));
                        n_f += k == PT_ACT_FORWARD;
                    }
                CHECK(n_f == M * S, "%s P=%d M=%d: %d forwards, want %d", gens[g], P, M, n_f, M * S);
                for (int progress = 1; progress;) {
                    progress = 0;
                    for (int r = 0; r < P; r++) {
                        while (pos[r] < e->n_actions[r]) {
                            const pt_action *a = &e->actions[r][pos[r]];
                            int v = pt_sched_vstage(e, r, a->chunk), m = a->microbatch;
                            if (a->kind == PT_ACT_RECV_ACT) {
                                int l = a->peer * P + r, base = l * M * S * 2;
                                if (qh[l] == qt[l])
                                    break; /* blocked */
                                CHECK(q[base + 2 * qh[l]] == m && q[base + 2 * qh[l] + 1] == v - 1,
                                      "%s P=%d M=%d: rank %d receives mb %d stage %d, the link carries mb %d stage %d",
                                      gens[g], P, M, r, m, v - 1, q[base + 2 * qh[l]], q[base + 2 * qh[l] + 1]);
                                qh[l]++;
                                done[(r * M + m) * V + a->chunk] |= 2; /* input here */
                            } else if (a->kind == PT_ACT_SEND_ACT) {
                                int l = r * P + a->peer, base = l * M * S * 2;
                                CHECK(done[(r * M + m) * V + a->chunk] & 1, "send before forward");
                                q[base + 2 * qt[l]] = m;
                                q[base + 2 * qt[l] + 1] = v;
                                qt[l]++;
                            } else {
                                int pr = 0, pc = 0, have = v == 0;
                                if (v > 0 && pt_sched_owner(e, v - 1, &pr, &pc) == PT_OK)
                                    have = pr == r ? done[(r * M + m) * V + pc] & 1 : done[(r * M + m) * V + a->chunk] & 2;
                                CHECK(have, "%s P=%d M=%d: rank %d forward mb %d chunk %d before its input", gens[g], P,
                                      M, r, m, a->chunk);
                                CHECK(!(done[(r * M + m) * V + a->chunk] & 1), "forward twice");
                                done[(r * M + m) * V + a->chunk] |= 1;
                            }
                            pos[r]++;
                            progress = 1;
                        }
                    }
                }
                for (int r = 0; r < P; r++)
                    CHECK(pos[r] == e->n_actions[r], "%s P=%d M=%d: rank %d stuck at action %d of %d", gens[g], P, M, r,
                          pos[r], e->n_actions[r]);
                for (int l = 0; l < P * P; l++)
                    CHECK(qh[l] == qt[l], "%s P=%d M=%d: %d messages never received", gens[g], P, M, qt[l] - qh[l]);
                free(done);
                free(pos);
                free(q);
                free(qh);
                free(qt);
                pt_sched_destroy(e);
                pt_sched_destroy(train);
            }
    return n_fail - before;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_schedule generators|bad DIR|golden DIR|parse_errors|simulate TMP|timeline TMP|forward_only\n");
        return 2;
    }
    const char *t = argv[1], *arg = argc > 2 ? argv[2] : ".";
    int fails;
    if (!strcmp(t, "generators"))
        fails = test_generators();
    else if (!strcmp(t, "bad"))
        fails = test_bad(arg);
    else if (!strcmp(t, "golden"))
        fails = test_golden(arg);
    else if (!strcmp(t, "parse_errors"))
        fails = test_parse_errors();
    else if (!strcmp(t, "simulate"))
        fails = test_simulate(arg);
    else if (!strcmp(t, "timeline"))
        fails = test_timeline(arg);
    else if (!strcmp(t, "forward_only"))
        fails = test_forward_only();
    else {
        fprintf(stderr, "unknown test %s\n", t);
        return 2;
    }
    if (fails)
        fprintf(stderr, "%d failure(s)\n", fails);
    return fails ? 1 : 0;
}

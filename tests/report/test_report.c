/* tests/report: `pipetrain report` (src/report/report.c) on small run directories this test writes
 * itself, shaped like what `pipetrain train --run-dir D --profile D/prof` leaves (2 stages, 1f1b).
 *
 *   test_report unit              the page's charts, tables and notes; bad input refused
 *   test_report render            the page rendered by headless Chromium (exit 77: no chromium)
 *   test_report fixture DIR       writes the full fixture run directory DIR (for cli_report.sh)
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/report.h"

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* ---- fixture run directories ---- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void pathf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

static void fresh_dir(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0 || pt_mkdirs(dir) != PT_OK) {
        fprintf(stderr, "cannot make %s: %s\n", dir, pt_last_error());
        exit(1);
    }
}

/* One step line as train writes it (trainer.c step_json). */
static void step_line(FILE *f, int step, int n_steps)
{
    double loss = 1.5 + 4.0 * exp(-step / 6.0) + 0.01 * (step % 3);
    double lr = step <= 4 ? 3e-3 * step / 4 : 3e-4 + 2.7e-3 * 0.5 * (1 + cos(M_PI * (step - 4) / (n_steps - 4)));
    fprintf(f,
            "{\"step\":%d,\"loss\":%.17g,\"lr\":%.17g,\"step_ms\":%.6f,\"tokens_per_s\":%.6f,\"grad_norm\":%.6f,"
            "\"clip_scale\":1,\"tokens\":2048,\"fwd_ms\":0,\"bwd_ms\":%.6f,\"optim_ms\":0}\n",
            step, loss, lr, 80.0 + step % 5, 2048 / ((80.0 + step % 5) / 1e3), 5.0 / (1 + step), 70.0 + step % 5);
}

static void eval_line(FILE *f, int step)
{
    fprintf(f,
            "{\"step\":%d,\"eval_loss\":%.17g,\"eval_accuracy\":%.17g,\"eval_metric\":\"exact_match\","
            "\"eval_correct\":%d,\"eval_total\":974,\"eval_ms\":195.0}\n",
            step, 1.6 + 3.0 * exp(-step / 6.0), step / 974.0, step);
}

static const char *CONFIG_JSON =
    "{\"format\":\"pipetrain-plan\",\"version\":1,\"method\":\"time\",\"schedule\":\"1f1b\",\"stages\":2,\"chunks\":1,"
    "\"replicas\":1,\"micro_batch_size\":2,\"micro_batches\":8,\"seq_len\":128,\"device\":\"cpu\",\"nodes\":1,"
    "\"devices_per_node\":2,\"params_total\":858880,\"head_split\":1,\"chunk_list\":["
    "{\"first_layer\":0,\"last_layer\":2,\"layers\":3,\"rank\":0,\"chunk\":0,\"recompute\":false,\"params\":462080,"
    "\"pred_time_s\":0.00818,\"pred_mem_bytes\":18307072,\"link_after\":\"intra-node\"},"
    "{\"first_layer\":3,\"last_layer\":5,\"layers\":3,\"rank\":1,\"chunk\":0,\"recompute\":false,\"params\":396800,"
    "\"pred_time_s\":0.00879,\"pred_mem_bytes\":13987840}],"
    "\"pred_rank_mem_bytes\":[18307072,13987840],\"pred_step_time_s\":0.0790,\"pred_bubble\":0.1355,"
    "\"pred_tokens_per_s\":25899.3,\"pred_mfu\":0.2734,\"pred_dp_comm_s\":0,\"pred_optim_s\":0.00064,"
    "\"model\":{\"name\":\"%s\",\"n_layer\":4,\"n_head\":4,\"n_embd\":128,\"vocab_size\":256,\"vocab_padded\":256,"
    "\"max_seq_len\":256},\"schedule_name\":\"1f1b\",\"data_tokenizer\":\"byte\",\"data_vocab\":256,\"seed\":1337,"
    "\"steps\":%d,\"threads\":1,\"lr\":0.003,\"lr_min\":0.0003,\"warmup\":4,\"weight_decay\":0.1,\"grad_clip\":1,"
    "\"beta1\":0.9,\"beta2\":0.95,\"eps\":1e-08,\"n_params\":858880,\"backend\":\"cpu\",\"data\":\"builtin:sort\"}\n";

static const char *SUMMARY_JSON =
    "{\"model\":\"gpt2-tiny\",\"schedule\":\"1f1b\",\"stages\":2,\"chunks\":1,\"replicas\":1,\"microbatches\":8,"
    "\"micro_batch_size\":2,\"seq_len\":128,\"steps\":29,\"step_time_s\":0.1117,\"pipeline_window_s\":0.1099,"
    "\"tokens_per_s\":18330.5,\"flops_per_s\":104513999853.6,\"mfu\":0.1935,\"bubble_overall\":0.1631,"
    "\"bubble\":[0.1806,0.1456],\"comm_wait_s\":[0.01995,0.01601],\"peak_bytes\":[18700288,14118912],"
    "\"measured_costs_s\":{\"f\":[0.00432,0.00431],\"b\":[0.00694,0.00743],\"i\":[0,0],\"w\":[0,0]},"
    "\"predicted\":{\"pipeline_window_s\":0.1052,\"bubble_overall\":0.1255,\"bubble\":[0.1439,0.1072]}}\n";

/* A small timeline in the profiler's own form (pt_timeline_svg), with the prolog a file may have. */
static const char *TIMELINE_SVG =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"110\" viewBox=\"0 0 1200 110\" "
    "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
    "<rect x=\"0\" y=\"0\" width=\"1200\" height=\"110\" fill=\"white\"/>\n"
    "<text x=\"64\" y=\"24\" font-size=\"15\" font-weight=\"bold\">gpt2-tiny 1f1b P=2 V=1 D=1 M=8 (measured)</text>\n"
    "<text x=\"56\" y=\"59\" text-anchor=\"end\">rank 0</text><text x=\"56\" y=\"89\" text-anchor=\"end\">rank 1</text>\n"
    "<rect class=\"fx-box\" x=\"69\" y=\"45\" width=\"300\" height=\"20\" fill=\"#4e79a7\"><title>rank 0 F0.0</title></rect>\n"
    "<rect class=\"fx-box\" x=\"380\" y=\"45\" width=\"500\" height=\"20\" fill=\"#e15759\"><title>rank 0 B0.0</title></rect>\n"
    "<rect class=\"fx-box\" x=\"200\" y=\"75\" width=\"300\" height=\"20\" fill=\"#4e79a7\"><title>rank 1 F0.0</title></rect>\n"
    "<rect class=\"fx-box\" x=\"520\" y=\"75\" width=\"500\" height=\"20\" fill=\"#e15759\"><title>rank 1 B0.0</title></rect>\n"
    "</svg>\n";

typedef struct fixture {
    int n_steps;          /* step lines 1..n_steps */
    int eval_every;       /* 0: no eval lines */
    int profile;          /* write prof/summary.json + prof/timeline.svg */
    int config;           /* write config.json */
    const char *model;    /* model name in config.json */
    const char *tail;     /* appended to metrics.jsonl as it is (a partial or bad line) */
} fixture;

static void write_fixture(const char *dir, const fixture *fx)
{
    char p[1024];
    fresh_dir(dir);
    pathf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        exit(1);
    for (int s = 1; s <= fx->n_steps; s++) {
        step_line(f, s, fx->n_steps);
        if (fx->eval_every && s % fx->eval_every == 0)
            eval_line(f, s);
    }
    if (fx->tail)
        fputs(fx->tail, f);
    fclose(f);
    if (fx->config) {
        char cfg[8192];
        snprintf(cfg, sizeof cfg, CONFIG_JSON, fx->model ? fx->model : "gpt2-tiny", fx->n_steps);
        pathf(p, sizeof p, "%s/config.json", dir);
        write_text(p, cfg);
    }
    if (fx->profile) {
        pathf(p, sizeof p, "%s/prof", dir);
        pt_mkdirs(p);
        pathf(p, sizeof p, "%s/prof/summary.json", dir);
        write_text(p, SUMMARY_JSON);
        pathf(p, sizeof p, "%s/prof/timeline.svg", dir);
        write_text(p, TIMELINE_SVG);
        pathf(p, sizeof p, "%s/prof/trace.json", dir);
        write_text(p, "{\"traceEvents\":[]}\n");
    }
}

static const fixture FULL = { .n_steps = 30, .eval_every = 10, .profile = 1, .config = 1 };

/* ---- reading the page ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* The <svg ...>...</svg> of chart `id` (a pointer into page; *len its length), or NULL. */
static const char *chart(const char *page, const char *id, size_t *len)
{
    char key[128];
    snprintf(key, sizeof key, "<svg class=\"chart\" id=\"%s\"", id);
    const char *a = strstr(page, key);
    if (!a)
        return NULL;
    const char *b = strstr(a, "</svg>");
    *len = b ? (size_t)(b - a) : strlen(a);
    return a;
}

/* In chart `id`, the polyline of series `name`: its data-n and the number of x,y pairs in its
 * points attribute (-1 when there is no such polyline). */
static int series_points(const char *page, const char *id, const char *name, int *data_n, int *data_total)
{
    size_t len;
    const char *c = chart(page, id, &len);
    *data_n = *data_total = -1;
    if (!c)
        return -1;
    char key[160];
    snprintf(key, sizeof key, "<polyline class=\"series\" data-name=\"%s\"", name);
    const char *p = strstr(c, key);
    if (!p || (size_t)(p - c) > len)
        return -1;
    sscanf(strstr(p, "data-n=\"") + 8, "%d", data_n);
    sscanf(strstr(p, "data-total=\"") + 12, "%d", data_total);
    const char *pts = strstr(p, "points=\"") + 8, *end = strchr(pts, '"');
    int n = 0;
    for (const char *q = pts; q < end; q++)
        n += *q == ',';
    return n;
}

static pt_status run_report(const char *dir, const char *out, int max_points, pt_report_info *info)
{
    pt_report_opts o = { .run_dir = dir, .output_path = out, .max_points = max_points };
    return pt_report_write(&o, info);
}

static char *report_page(const char *dir, pt_report_info *info)
{
    pt_status st = run_report(dir, NULL, 0, info);
    CHECK(st == PT_OK, "%s: %s", dir, pt_last_error());
    char p[1024];
    pathf(p, sizeof p, "%s/report.html", dir);
    char *page = slurp(p);
    CHECK(page != NULL, "%s not written", p);
    return page;
}

static int no_tmp_left(const char *dir)
{
    DIR *d = opendir(dir);
    int ok = 1;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (strstr(e->d_name, ".tmp"))
            ok = 0;
    if (d)
        closedir(d);
    return ok;
}

/* ---- unit tests ---- */

static void test_full(const char *base)
{
    char dir[1024];
    pathf(dir, sizeof dir, "%s/full", base);
    write_fixture(dir, &FULL);
    pt_report_info info;
    char *page = report_page(dir, &info);
    if (!page)
        return;
    CHECK(info.last_step == 30 && info.n_step_lines == 30 && info.n_evals == 3, "info %lld %lld %d", info.last_step,
          info.n_step_lines, info.n_evals);
    CHECK(info.has_plan && info.has_profile && info.n_notes == 0, "plan %d profile %d notes %d", info.has_plan,
          info.has_profile, info.n_notes);
    struct { const char *id, *name; int n; } want[] = {
        { "chart-loss", "training loss", 30 },  { "chart-loss", "eval loss", 3 },
        { "chart-eval-accuracy", "exact match", 3 }, { "chart-lr", "learning rate", 30 },
        { "chart-tokens-per-s", "tokens/s", 30 }, { "chart-grad-norm", "gradient norm (before clipping)", 30 },
        { "chart-step-time", "step", 30 },      { "chart-step-time", "backward", 30 },
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        int dn, dt, n = series_points(page, want[k].id, want[k].name, &dn, &dt);
        CHECK(n == want[k].n && dn == want[k].n && dt == want[k].n, "%s / %s: %d points (data-n %d, data-total %d), want %d",
              want[k].id, want[k].name, n, dn, dt, want[k].n);
    }
    /* fwd_ms and optim_ms are all 0 in the fixture (as pipelined runs write them today): not drawn */
    int dn, dt;
    CHECK(series_points(page, "chart-step-time", "forward", &dn, &dt) == -1, "a forward series of zeros was drawn");
    CHECK(count(page, "<svg class=\"chart\"") == 7, "%d charts, want 7 (6 curves + bubble)", count(page, "<svg class=\"chart\""));
    /* plan: one row per stage, with what it holds, and the predictions next to the measurements */
    CHECK(count(page, "<tr class=\"stage\">") == 2, "%d stage rows", count(page, "<tr class=\"stage\">"));
    CHECK(strstr(page, "embedding + blocks 0-1") && strstr(page, "blocks 2-3 + head"), "stage contents missing");
    CHECK(strstr(page, "M x B x T = 8 x 2 x 128: 16 sequences, 2048 tokens per step") != NULL, "batch row missing");
    CHECK(strstr(page, "<td>79.0</td><td>111.7</td>") != NULL, "step time predicted vs measured missing");
    CHECK(strstr(page, "<td>11.26</td>") != NULL, "measured F+B of stage 0 (4.32 + 6.94 ms) missing");
    /* profile: the timeline is embedded without its prolog; the bubble per rank measured vs predicted */
    CHECK(strstr(page, "<div class=\"timeline\" id=\"timeline\">\n<svg xmlns") != NULL, "timeline not embedded");
    CHECK(count(page, "class=\"fx-box\"") == 4 && !strstr(page, "<?xml"), "timeline content");
    CHECK(count(page, "<tr class=\"rank\">") == 2, "%d bubble rows", count(page, "<tr class=\"rank\">"));
    CHECK(strstr(page, "<td>0</td><td>18.1%</td><td>14.4%</td><td>+3.7 points</td>") != NULL, "rank 0 bubble row");
    CHECK(count(page, "<rect class=\"bar measured\"") == 2 && count(page, "<rect class=\"bar predicted\"") == 2,
          "bubble bars");
    /* header */
    CHECK(strstr(page, "30 of 30 (done)") && strstr(page, "858.9 K (858880)"), "header steps/params");
    CHECK(strstr(page, "exact match 3.1% (30/974)") != NULL, "header last eval");
    /* self-contained: no script, nothing fetched */
    CHECK(!strstr(page, "<script") && !strstr(page, " src=") && !strstr(page, "<link") && !strstr(page, "url(") &&
              !strstr(page, "@import"),
          "the page refers to something outside itself");
    CHECK(!strstr(page, "id=\"notes\""), "notes on a complete run");
    CHECK(no_tmp_left(dir), "a temporary file was left in %s", dir);
    free(page);

    /* --output elsewhere; the run directory gains no report.html of its own */
    char out[1100], own[1100];
    pathf(out, sizeof out, "%s/elsewhere.html", base);
    pathf(own, sizeof own, "%s/report.html", dir);
    unlink(own);
    CHECK(run_report(dir, out, 0, NULL) == PT_OK, "%s", pt_last_error());
    CHECK(access(out, R_OK) == 0 && access(own, F_OK) != 0, "--output went to the wrong place");
}

static void test_missing_pieces(const char *base)
{
    char dir[1024];
    pathf(dir, sizeof dir, "%s/bare", base);
    fixture fx = { .n_steps = 12, .eval_every = 0, .profile = 0, .config = 0 };
    write_fixture(dir, &fx);
    pt_report_info info;
    char *page = report_page(dir, &info);
    if (!page)
        return;
    int dn, dt;
    CHECK(series_points(page, "chart-loss", "training loss", &dn, &dt) == 12, "12 training points");
    CHECK(series_points(page, "chart-loss", "eval loss", &dn, &dt) == -1, "an eval series without evals");
    CHECK(!strstr(page, "id=\"chart-eval-accuracy\"") && !strstr(page, "id=\"chart-bubble\"") &&
              !strstr(page, "id=\"timeline\""),
          "charts without their data");
    CHECK(strstr(page, "no eval lines") && strstr(page, "no profile in") && strstr(page, "config.json: the plan table is left out"),
          "the notes for eval, profile and config are missing");
    CHECK(info.n_notes == 3 && !info.has_plan && !info.has_profile, "%d notes", info.n_notes);
    free(page);

    /* a run in progress: its last line is half written */
    pathf(dir, sizeof dir, "%s/partial", base);
    fx = (fixture){ .n_steps = 20, .eval_every = 10, .profile = 0, .config = 1,
                    .tail = "{\"step\":21,\"loss\":1.61,\"lr\":0.0012,\"step_" };
    write_fixture(dir, &fx);
    page = report_page(dir, &info);
    if (!page)
        return;
    CHECK(series_points(page, "chart-loss", "training loss", &dn, &dt) == 20, "20 points before the partial line");
    CHECK(strstr(page, "line 23 is incomplete") != NULL, "no note naming the partial line 23");
    CHECK(info.last_step == 20, "last step %lld", info.last_step);
    free(page);

    /* only a header line written so far: an empty metrics file */
    pathf(dir, sizeof dir, "%s/empty", base);
    fx = (fixture){ .n_steps = 0, .config = 1 };
    write_fixture(dir, &fx);
    page = report_page(dir, &info);
    if (!page)
        return;
    CHECK(strstr(page, "No steps yet") && strstr(page, "no training steps yet"), "empty run");
    CHECK(count(page, "<svg class=\"chart\"") == 0, "charts of nothing");
    free(page);
}

static void test_bad_input(const char *base)
{
    char dir[1024], p[1100];
    pt_report_info info;
    /* a malformed line in the middle: refused with its line number, no page written */
    pathf(dir, sizeof dir, "%s/bad", base);
    fixture fx = { .n_steps = 5, .config = 1, .tail = "{\"step\":6,\"loss\":oops}\n" };
    write_fixture(dir, &fx);
    char mp[1100];
    pathf(mp, sizeof mp, "%s/metrics.jsonl", dir);
    FILE *f = fopen(mp, "a");
    step_line(f, 7, 7);
    fclose(f);
    pt_status st = run_report(dir, NULL, 0, &info);
    char want[1200];
    pathf(want, sizeof want, "%s/metrics.jsonl:6: not a JSON object", dir);
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), want), "got %d: %s", st, pt_last_error());
    CHECK(!strchr(pt_last_error(), '\n') && strstr(pt_last_error(), "(\"{\"step\":6,\"loss\":oops}\")"),
          "the error is not one line quoting the bad line: %s", pt_last_error());
    pathf(p, sizeof p, "%s/report.html", dir);
    CHECK(access(p, F_OK) != 0 && no_tmp_left(dir), "a page was written for a bad file");

    /* a JSON object without its step */
    pathf(dir, sizeof dir, "%s/nostep", base);
    fx = (fixture){ .n_steps = 3, .tail = "{\"loss\":1.0}\n" };
    write_fixture(dir, &fx);
    st = run_report(dir, NULL, 0, &info);
    pathf(want, sizeof want, "%s/metrics.jsonl:4: no numeric \"step\"", dir);
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), want), "got %d: %s", st, pt_last_error());

    /* no such directory; a directory that is not a run */
    pathf(dir, sizeof dir, "%s/does-not-exist", base);
    st = run_report(dir, NULL, 0, &info);
    CHECK(st == PT_EINVAL && strstr(pt_last_error(), "no such directory"), "got %d: %s", st, pt_last_error());
    pathf(dir, sizeof dir, "%s/notarun", base);
    fresh_dir(dir);
    st = run_report(dir, NULL, 0, &info);
    CHECK(st == PT_EINVAL && strstr(pt_last_error(), "is this a run directory? train writes metrics.jsonl there"),
          "got %d: %s", st, pt_last_error());
    /* an explicit profile folder that is not there (yet: train writes it at the end): a note */
    pathf(dir, sizeof dir, "%s/full", base);
    pt_report_opts o = { .run_dir = dir, .profile_dir = "/nonexistent/prof" };
    st = pt_report_write(&o, &info);
    CHECK(st == PT_OK && !info.has_profile && info.n_notes == 1, "got %d (%s), profile %d, %d notes", st,
          pt_last_error(), info.has_profile, info.n_notes);
    char *page = slurp(info.output_path);
    CHECK(page && strstr(page, "no profile directory /nonexistent/prof yet") && !strstr(page, "id=\"timeline\""),
          "no note for the missing profile directory");
    free(page);
    /* "": no profile section even though prof/ is there */
    o = (pt_report_opts){ .run_dir = dir, .profile_dir = "" };
    st = pt_report_write(&o, &info);
    CHECK(st == PT_OK && !info.has_profile && info.n_notes == 0, "profile \"\": %d, %d notes", info.has_profile,
          info.n_notes);
    o = (pt_report_opts){ .run_dir = dir, .max_points = 2 };
    CHECK(pt_report_write(&o, &info) == PT_EINVAL, "max_points 2 accepted");
}

static void test_odd_files(const char *base)
{
    char dir[1024], p[1100];
    pt_report_info info;
    /* config.json that is not JSON, a timeline with a script, a model name with markup */
    pathf(dir, sizeof dir, "%s/odd", base);
    fixture fx = FULL;
    fx.model = "<b>tiny</b> & \\\"co\\\"";
    write_fixture(dir, &fx);
    char *page = report_page(dir, &info);
    if (page) {
        CHECK(strstr(page, "&lt;b&gt;tiny&lt;/b&gt; &amp; &quot;co&quot;") && !strstr(page, "<b>tiny"),
              "the model name is not escaped");
        free(page);
    }
    pathf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\"stages\": 2,");
    pathf(p, sizeof p, "%s/prof/timeline.svg", dir);
    write_text(p, "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>\n");
    page = report_page(dir, &info);
    if (page) {
        CHECK(strstr(page, "config.json: not valid JSON") && strstr(page, "the plan table is left out"),
              "no note for a broken config.json");
        CHECK(!strstr(page, "<script") && strstr(page, "holds a script"), "a timeline with a script was embedded");
        CHECK(!info.has_plan && info.has_profile, "plan %d profile %d", info.has_plan, info.has_profile);
        free(page);
    }

    /* a resumed run: steps 11..25 appended after 1..20 replace 11..20; evals after 10 go too */
    pathf(dir, sizeof dir, "%s/resumed", base);
    fx = (fixture){ .n_steps = 20, .eval_every = 10, .config = 1 };
    write_fixture(dir, &fx);
    pathf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "a");
    for (int s = 11; s <= 25; s++)
        step_line(f, s, 25);
    fputs("{\"step\":15,\"loss\":null,\"lr\":0.001,\"tokens_per_s\":1000,\"grad_norm\":1,\"step_ms\":80}\n", f);
    fclose(f);
    page = report_page(dir, &info);
    if (page) {
        int dn, dt;
        /* 25 steps, then a second resume at 15 with a null loss: 14 losses, 15 of everything else */
        CHECK(series_points(page, "chart-loss", "training loss", &dn, &dt) == 14, "loss points %d", dn);
        CHECK(series_points(page, "chart-lr", "learning rate", &dn, &dt) == 15, "lr points %d", dn);
        CHECK(series_points(page, "chart-loss", "eval loss", &dn, &dt) == 1, "eval points %d", dn);
        CHECK(strstr(page, "resumed 2 times (first at step 11)") && strstr(page, "1 value in the metrics is null"),
              "notes for the resume and the null");
        CHECK(info.last_step == 15 && info.n_step_lines == 15, "last %lld lines %lld", info.last_step, info.n_step_lines);
        free(page);
    }

    /* a long run: curves keep each bucket's minimum and maximum */
    pathf(dir, sizeof dir, "%s/long", base);
    fx = (fixture){ .n_steps = 5000, .eval_every = 1000, .config = 1 };
    write_fixture(dir, &fx);
    pathf(p, sizeof p, "%s/long.html", base);
    CHECK(run_report(dir, p, 100, &info) == PT_OK, "%s", pt_last_error());
    page = slurp(p);
    if (page) {
        int dn, dt, n = series_points(page, "chart-loss", "training loss", &dn, &dt);
        CHECK(n == dn && dn <= 100 && dn >= 50 && dt == 5000, "downsampled: %d points, data-n %d, total %d", n, dn, dt);
        CHECK(series_points(page, "chart-loss", "eval loss", &dn, &dt) == 5, "5 evals");
        free(page);
    }
}

static int unit(const char *base)
{
    test_full(base);
    test_missing_pieces(base);
    test_bad_input(base);
    test_odd_files(base);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("report unit tests passed\n");
    return 0;
}

/* ---- render test: headless Chromium ---- */

static int find_on_path(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path)
        return 0;
    char *copy = strdup(path), *save = NULL;
    int found = 0;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, name);
        found = access(out, X_OK) == 0;
    }
    free(copy);
    return found;
}

/* The probe: the page plus a script that measures, after layout, every chart and every curve. */
static const char *PROBE_JS =
    "<script>addEventListener('load',function(){var o=[];"
    "document.querySelectorAll('svg.chart').forEach(function(s){var r=s.getBoundingClientRect(),"
    "c=0,p=s.querySelectorAll('polyline.series');"
    "p.forEach(function(l){var b=l.getBBox();if(l.getTotalLength()>0&&b.width>0)c++;});"
    "o.push(s.id+' '+Math.round(r.width)+' '+Math.round(r.height)+' '+p.length+' '+c);});"
    "var t=document.querySelector('#timeline svg');"
    "if(t){var r=t.getBoundingClientRect();o.push('timeline '+Math.round(r.width)+' '+Math.round(r.height)+' 0 0');}"
    "var e=document.createElement('pre');e.id='probe';e.textContent='\\n'+o.join('\\n')+'\\n';"
    "document.body.appendChild(e);});</script>";

static int render(const char *base)
{
    char chromium[1024];
    if (!find_on_path("chromium", chromium, sizeof chromium) &&
        !find_on_path("chromium-browser", chromium, sizeof chromium)) {
        printf("SKIP: no chromium on PATH (Debian: apt-get install chromium)\n");
        return 77;
    }
    char dir[1024], abs_base[1024];
    if (!realpath(base, abs_base)) {
        fprintf(stderr, "realpath %s: %s\n", base, strerror(errno));
        return 1;
    }
    pathf(dir, sizeof dir, "%s/render", abs_base);
    write_fixture(dir, &FULL);
    pt_report_info info;
    char *page = report_page(dir, &info);
    if (!page)
        return 1;
    /* probe copy: the same page with the measuring script before </body> */
    char probe[1100], dom[1100], shot[1100], blank[1100], shot_blank[1100], prof[1100], cmd[8192];
    pathf(probe, sizeof probe, "%s/probe.html", dir);
    char *end = strstr(page, "</body>");
    CHECK(end != NULL, "no </body>");
    if (!end)
        return 1;
    FILE *f = fopen(probe, "w");
    fwrite(page, 1, (size_t)(end - page), f);
    fputs(PROBE_JS, f);
    fputs(end, f);
    fclose(f);
    pathf(dom, sizeof dom, "%s/dom.html", dir);
    pathf(prof, sizeof prof, "%s/chromium-profile", dir);
    const char *flags = "--headless --disable-gpu --no-sandbox --no-first-run --disable-extensions "
                        "--hide-scrollbars --window-size=1280,2600";
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' %s --user-data-dir='%s' --dump-dom 'file://%s' > '%s' 2>'%s/chromium.log'",
             chromium, flags, prof, probe, dom, dir);
    int rc = system(cmd);
    CHECK(rc == 0, "chromium --dump-dom exited %d (see %s/chromium.log)", rc, dir);
    char *d = slurp(dom);
    CHECK(d && strstr(d, "<pre id=\"probe\">"), "no probe output in %s", dom);
    if (d && strstr(d, "<pre id=\"probe\">")) {
        const char *ids[] = { "chart-loss", "chart-eval-accuracy", "chart-lr", "chart-tokens-per-s", "chart-grad-norm",
                              "chart-step-time", "chart-bubble", "timeline" };
        const int n_series[] = { 2, 1, 1, 1, 1, 2, 0, 0 };
        for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
            char key[64];
            snprintf(key, sizeof key, "\n%s ", ids[k]);
            const char *l = strstr(d, key);
            int w = 0, h = 0, np = -1, drawn = -1;
            if (l)
                sscanf(l + strlen(key), "%d %d %d %d", &w, &h, &np, &drawn);
            CHECK(l && w > 100 && h > 50, "%s: not laid out (%d x %d)", ids[k], w, h);
            CHECK(!l || (np == n_series[k] && drawn == n_series[k]), "%s: %d curves, %d drawn with a length, want %d",
                  ids[k], np, drawn, n_series[k]);
        }
        CHECK(count(d, "<svg class=\"chart\"") == 7, "%d chart svgs in the DOM", count(d, "<svg class=\"chart\""));
    }
    free(d);
    /* a screenshot of the page itself (no script) next to one of a blank page of the same size:
     * the charts make the picture many times larger than a blank PNG */
    pathf(blank, sizeof blank, "%s/blank.html", dir);
    write_text(blank, "<!DOCTYPE html><html><body></body></html>\n");
    pathf(shot, sizeof shot, "%s/report.png", dir);
    pathf(shot_blank, sizeof shot_blank, "%s/blank.png", dir);
    char page_path[1100];
    pathf(page_path, sizeof page_path, "%s/report.html", dir);
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "timeout 120 '%s' %s --user-data-dir='%s' --screenshot='%s' 'file://%s' >>'%s/chromium.log' 2>&1",
                 chromium, flags, prof, k ? shot_blank : shot, k ? blank : page_path, dir);
        rc = system(cmd);
        CHECK(rc == 0, "chromium --screenshot exited %d (see %s/chromium.log)", rc, dir);
    }
    struct stat a, b;
    int ok = stat(shot, &a) == 0 && stat(shot_blank, &b) == 0;
    CHECK(ok && a.st_size > 8 * b.st_size && a.st_size > 20000, "screenshot %lld bytes vs blank %lld: blank page?",
          ok ? (long long)a.st_size : -1LL, ok ? (long long)b.st_size : -1LL);
    free(page);
    if (failures) {
        fprintf(stderr, "%d check(s) failed; the files are in %s\n", failures, dir);
        return 1;
    }
    printf("report rendered by %s: 7 charts and the timeline laid out; screenshot %s (%lld bytes, blank %lld)\n",
           chromium, shot, (long long)a.st_size, (long long)b.st_size);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "fixture") == 0) {
        write_fixture(argv[2], &FULL);
        return 0;
    }
    if (argc < 2 || (strcmp(argv[1], "unit") != 0 && strcmp(argv[1], "render") != 0)) {
        fprintf(stderr, "usage: test_report unit|render [WORK_DIR] | fixture DIR\n");
        return 2;
    }
    const char *base = argc > 2 ? argv[2] : (argv[1][0] == 'u' ? "report_unit" : "report_render");
    if (pt_mkdirs(base) != PT_OK) {
        fprintf(stderr, "%s\n", pt_last_error());
        return 1;
    }
    return strcmp(argv[1], "unit") == 0 ? unit(base) : render(base);
}

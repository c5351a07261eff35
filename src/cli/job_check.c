/* src/cli/job_check.c — a training job checked whole in the process that would start it
 * (cli.h: pt_job_check, pt_job_resume_apply), so that a job that cannot run is one line and exit
 * status 2 before any rank is forked, not the same error from every rank after they start.
 *
 * Nothing is re-implemented: the job, data, plan and schedule phases of the runtime
 * (pt_train_job_open ... pt_train_job_schedule with check_only, runtime.h) run here as they will in
 * the ranks — model config, pt_train_cfg_check, pt_dataset_open and its tokenizer, the planner,
 * the generator or schedule file and pt_sched_validate, the first sequence — then the machine (cores, RAM from sysconf)
 * and, with --resume, the checkpoint's manifest (pt_ckpt_resolve, pt_ckpt_check_data,
 * pt_ckpt_run_model_config). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/json.h"
#include "pipetrain/partition.h"
#include "pipetrain/runtime.h"
#include "pipetrain/schedule.h"

/* More threads than this many times the cores is refused without --force: past it the ranks only
 * slow each other down (and every rank polls its transport), and the machine stops answering. */
#define JC_OVERSUBSCRIBE 4

pt_status pt_cli_as_usage(pt_status st)
{
    if (st == PT_OK || st == PT_EINVAL || st == PT_EINTERNAL)
        return st;
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", pt_last_error());
    return pt_fail(PT_EINVAL, "%s", msg);
}

static void describe_model(const pt_model_config *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s %d layers, width %d, %d heads, vocab %d, context %d", c->name[0] ? c->name : "",
             c->name[0] ? " (" : "(", pt_model_arch_name(c->arch), c->n_layer, c->n_embd, c->n_head, c->vocab_padded,
             c->max_seq_len);
    size_t n = strlen(buf);
    if (n + 1 < cap)
        snprintf(buf + n, cap - n, ")");
}

/* 1 when a checkpoint of config `a` holds the tensors (names and shapes) a model of config `b`
 * needs; the head split is free (the same parameters either way). */
static int same_shapes(const pt_model_config *a, const pt_model_config *b)
{
    return a->arch == b->arch && a->n_layer == b->n_layer && a->n_embd == b->n_embd && a->n_head == b->n_head &&
           a->vocab_padded == b->vocab_padded && pt_model_kv_heads(a) == pt_model_kv_heads(b) &&
           a->intermediate_size == b->intermediate_size && pt_model_tied(a) == pt_model_tied(b) &&
           (a->arch != PT_ARCH_GPT2 || a->max_seq_len == b->max_seq_len);
}

/* --resume from step `step` (step_dir, resolved from root) when root holds a usable checkpoint of a
 * later step: the run would save over it (its `latest` was pointed back, e.g. by an import), so it
 * is refused. A damaged newer step that resolve passed over is no loss and does not count. */
static pt_status check_no_newer(const char *root, const char *step_dir, int64_t step)
{
    if (strcmp(root, step_dir) == 0) /* --ckpt-dir names a step directory itself */
        return PT_OK;
    int64_t *steps = NULL;
    int n = 0;
    if (pt_ckpt_list(root, &steps, &n) != PT_OK) {
        pt_clear_error();
        return PT_OK;
    }
    pt_status st = PT_OK;
    for (int i = n - 1; i >= 0 && steps[i] > step; i--) {
        char name[64], path[4096];
        pt_ckpt_step_name(steps[i], name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", root, name);
        if (pt_ckpt_check_step(path) != PT_OK) {
            pt_clear_error();
            continue;
        }
        st = pt_fail(PT_EINVAL, "--resume: %s/latest names step %lld but %s is newer and usable; resuming would save "
                                "over it: point latest at it (echo %s > %s/latest), or use another --ckpt-dir",
                     root, (long long)step, path, name, root);
        break;
    }
    free(steps);
    return st;
}

/* --resume: the checkpoint is there, its data were made with this job's tokenizer, and its model
 * has the shapes of the model this job trains. */
static pt_status check_resume(const pt_train_job *j, const char *ckpt_dir)
{
    char step_dir[4096];
    pt_status st = pt_ckpt_resolve(ckpt_dir, step_dir, sizeof step_dir, NULL, 0);
    if (st != PT_OK && j->a->train.snapshot_every > 0) { /* the ranks may resume from their snapshots */
        pt_clear_error();
        return PT_OK;
    }
    if (st != PT_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", pt_last_error());
        return pt_fail(PT_EINVAL, "--resume: %s", msg);
    }
    PT_CHECK(pt_cli_as_usage(pt_ckpt_check_data(ckpt_dir, j->data)));
    pt_ckpt_manifest *m = NULL;
    PT_CHECK(pt_cli_as_usage(pt_ckpt_manifest_read(step_dir, &m)));
    st = check_no_newer(ckpt_dir, step_dir, m->step);
    if (st != PT_OK) {
        pt_ckpt_manifest_destroy(m);
        return st;
    }
    pt_model_config saved;
    st = pt_ckpt_run_model_config(m->run_json, NULL, &saved);
    pt_ckpt_manifest_destroy(m);
    if (st != PT_OK) { /* an older checkpoint that records no model: loading checks each tensor */
        pt_clear_error();
        return PT_OK;
    }
    if (same_shapes(&saved, &j->cfg))
        return PT_OK;
    char have[256], want[256];
    describe_model(&saved, have, sizeof have);
    describe_model(&j->cfg, want, sizeof want);
    return pt_fail(PT_EINVAL, "--resume: %s holds %s but this run trains %s; leave --model out to train the "
                              "checkpoint's model, or start without --resume",
                   step_dir, have, want);
}

/* A layout that cannot work, refused before anything is read: more pipeline chunks than the model
 * has layers (counting the LM-head layers --head-split may make), a --seq-len past the context. A
 * schedule file says its own stage count: the job phase reads it. */
static pt_status check_layers(const pt_runtime_train_args *ra)
{
    const pt_train_cfg *cfg = &ra->train;
    if (ra->schedule && !pt_sched_is_generator(ra->schedule))
        return PT_OK;
    pt_model_config mc;
    if (ra->model_config)
        mc = *ra->model_config;
    else
        PT_CHECK(pt_model_config_load(cfg->model, &mc));
    if (cfg->seq_len > mc.max_seq_len)
        return pt_fail(PT_EINVAL, "--seq-len %d is longer than %s's context (max_seq_len %d); use --seq-len %d or less",
                       cfg->seq_len, cfg->model, mc.max_seq_len, mc.max_seq_len);
    int head = cfg->head_split == PT_HEAD_SPLIT_AUTO ? PT_HEAD_SPLIT_AUTO_MAX
               : cfg->head_split > 1                 ? cfg->head_split
                                                     : pt_model_head_layers(&mc);
    if (cfg->head_chunk > 0 && (head > 1 || ra->tp > 1))
        return pt_fail(PT_EINVAL, "--head-chunk %d needs an unsplit LM head, but %s already keeps only a part of each "
                                  "row's logits; drop --head-chunk (auto turns itself off there)%s",
                       cfg->head_chunk,
                       ra->tp > 1 ? "--tp splits it over the vocabulary, so each rank"
                                  : "a head split into vocabulary shards (--head-split or the model config) means each "
                                    "shard",
                       ra->tp > 1 ? "" : " or use --head-split 1");
    int layers = mc.n_layer + 1 + head;
    int chunks = ra->chunks > 1 ? ra->chunks : pt_sched_default_chunks(ra->schedule ? ra->schedule : "1f1b");
    int stages = ra->stages > 0 ? ra->stages : 1;
    if (stages * chunks > layers)
        return pt_fail(PT_EINVAL, "--stages %d%s needs %d layers but %s has %d (embedding, %d blocks, %d head layer%s); "
                                  "use --stages %d or fewer%s",
                       stages, chunks > 1 ? (ra->chunks > 1 ? " x --chunks" : " x 2 chunks") : "", stages * chunks,
                       cfg->model, layers, mc.n_layer, head, head == 1 ? "" : "s", layers / chunks,
                       head == 1 ? ", or --head-split K to cut the LM head into K layers" : "");
    return PT_OK;
}

pt_status pt_job_check(const pt_runtime_train_args *ra, const pt_job_check_opts *o, pt_job_check_result *res)
{
    memset(res, 0, sizeof *res);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int local = o->local_ranks > 0 ? o->local_ranks : 1;
    const int threads = o->threads_per_rank > 0 ? o->threads_per_rank : (int)(cores > 0 ? cores : 1);
    /* the cores first: it needs nothing read, and a job of a thousand ranks should not wait for a plan */
    if (cores > 0 && (long)local * threads > JC_OVERSUBSCRIBE * cores) {
        double x = (double)local * threads / (double)cores;
        int fit = (int)(JC_OVERSUBSCRIBE * cores / local);
        char fix[160];
        if (fit >= 1)
            snprintf(fix, sizeof fix, "--threads %d or less", fit);
        else
            snprintf(fix, sizeof fix, "at most %ld local ranks (fewer --stages/--dp, or spread them over nodes with "
                     "'pipetrain launch')", JC_OVERSUBSCRIBE * cores);
        if (!o->force)
            return pt_fail(PT_EINVAL, "%d local rank%s on a machine with %ld cores, %d thread%s each: %d threads, "
                                      "%.0fx the cores (more than %dx only slows every rank down); use %s, or "
                                      "--force to start them anyway",
                           local, local == 1 ? "" : "s", cores, threads, threads == 1 ? "" : "s", local * threads, x,
                           JC_OVERSUBSCRIBE, fix);
        snprintf(res->note, sizeof res->note, "--force: %d threads on %ld cores (%.0fx)", local * threads, cores, x);
    }

    PT_CHECK(pt_cli_as_usage(check_layers(ra)));

    /* the phases the ranks run first, as they will run them (no comm, no log) */
    pt_runtime_train_args ca = *ra;
    ca.check_only = 1;
    ca.on_event = NULL;
    ca.on_log = NULL;
    ca.on_start = NULL;
    ca.after_step = NULL;
    pt_train_job j;
    pt_status st = pt_train_job_open(&j, &ca);
    if (st == PT_OK)
        st = pt_train_job_data(&j);
    if (st == PT_OK)
        st = pt_train_job_plan(&j);
    if (st == PT_OK)
        st = pt_train_job_schedule(&j);
    if (st == PT_OK)
        st = pt_sched_validate(j.sched); /* a schedule file is read, not validated, by the job phase */
    if (st == PT_OK) { /* the first sequence, as the first step reads it (a built-in task's minimum T) */
        int32_t *tok = malloc(2 * (size_t)j.T * sizeof *tok);
        st = tok ? pt_dataset_batch(j.data, PT_SPLIT_TRAIN, 0, 0, 1, j.T, tok, tok + j.T)
                 : pt_fail(PT_ENOMEM, "out of host memory");
        free(tok);
    }
    st = pt_cli_as_usage(st);
    const int W = j.P * j.D * j.TP;
    if (st == PT_OK && o->world > 0 && W != o->world) {
        if (!pt_sched_is_generator(j.sched_name))
            st = pt_fail(PT_EINVAL, "schedule %s has %d ranks, x %d replicas x %d tensor-parallel = %d, but the job has "
                                    "%d; give --nproc %d",
                         j.sched_name, j.P, j.D, j.TP, W, o->world, W);
        else
            st = pt_fail(PT_EINVAL, "%d stages x %d replicas x %d tensor-parallel need %d ranks but the job has %d; use "
                                    "--nproc %d",
                         j.P, j.D, j.TP, W, o->world, W);
    }
    if (st == PT_OK) {
        res->world = W;
        res->stages = j.P;
        res->replicas = j.D;
        /* memory: what the planner predicts for each rank that runs here (world ranks first ..
         * first + local - 1; rank r is pipeline rank r / T mod P), against this machine's RAM */
        double need = 0;
        const int first = o->first_rank > 0 ? o->first_rank : 0;
        const int n_here = o->world > 0 || local > 1 ? local : 1;
        for (int r = first; r < first + n_here && j.plan->pred_rank_mem_bytes; r++)
            need += j.plan->pred_rank_mem_bytes[r / j.TP % j.P];
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        double ram = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
        res->pred_bytes = need;
        if (ram > 0 && need > ram) {
            if (!o->force)
                st = pt_fail(PT_EINVAL, "%d rank%s of %s need %.1f GiB (the planner's prediction: weights, gradients, "
                                        "AdamW moments, activations) but this machine has %.1f GiB; use more --stages, "
                                        "a smaller --micro-batch-size or --seq-len, or --force to start anyway",
                             n_here, n_here == 1 ? "" : "s", j.cfg.name[0] ? j.cfg.name : ra->train.model,
                             need / 1073741824.0, ram / 1073741824.0);
            else {
                size_t n = strlen(res->note);
                snprintf(res->note + n, sizeof res->note - n, "%s--force: %.1f GiB predicted, %.1f GiB of RAM",
                         n ? "; " : "", need / 1073741824.0, ram / 1073741824.0);
            }
        }
    }
    if (st == PT_OK && ra->train.resume && ra->train.ckpt_dir)
        st = check_resume(&j, ra->train.ckpt_dir);
    pt_train_job_close(&j);
    return st;
}

/* ---- resume: the run's settings from its checkpoint ---- */

static int num_of(const cJSON *run, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(run, key);
    if (!cJSON_IsNumber(v))
        return 0;
    *out = v->valuedouble;
    return 1;
}

static void add(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    if (n + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

pt_status pt_job_resume_apply(const char *ckpt_dir, pt_job_resume *r)
{
    r->has_model_config = 0;
    r->line[0] = '\0';
    char note[1024] = "";
    pt_status st = pt_ckpt_resolve(ckpt_dir, r->step_dir, sizeof r->step_dir, note, sizeof note);
    if (st != PT_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", pt_last_error());
        return pt_fail(PT_EINVAL, "--resume: %s", msg);
    }
    pt_ckpt_manifest *m = NULL;
    PT_CHECK(pt_cli_as_usage(pt_ckpt_manifest_read(r->step_dir, &m)));
    r->ckpt_step = m->step;
    cJSON *run = cJSON_Parse(m->run_json ? m->run_json : "{}");
    if (!run) {
        pt_ckpt_manifest_destroy(m);
        return pt_fail(PT_EINVAL, "--resume: %s/manifest.json: its run description is not JSON; pass --model, "
                                  "--data and --schedule, or start without --resume",
                       r->step_dir);
    }
    char took[1024] = "", changes[1024] = "";
    st = PT_OK;
    /* the model: the config as trained (a preset name or file may no longer give it) */
    if (!r->model_given) {
        if (pt_ckpt_run_model_config(m->run_json, NULL, &r->model_config) == PT_OK) {
            r->has_model_config = 1;
            if (r->model_config.name[0])
                snprintf(r->model_name, sizeof r->model_name, "%s", r->model_config.name);
            else
                snprintf(r->model_name, sizeof r->model_name, "the checkpoint's model");
            r->model = r->model_name;
            add(took, sizeof took, "model %s", r->model);
        } else {
            pt_clear_error();
            add(took, sizeof took, "model %s (the checkpoint records none)", r->model);
        }
    } else
        add(took, sizeof took, "model %s (--model)", r->model);
    /* the data (the tokenizer is checked against the checkpoint's before any weight is read) */
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(run, "data_source");
    if (!r->data_given && cJSON_IsString(ds)) {
        snprintf(r->data_buf, sizeof r->data_buf, "%s", ds->valuestring);
        r->data = r->data_buf;
    } else if (r->data_given && cJSON_IsString(ds) && strcmp(ds->valuestring, r->data) != 0)
        add(changes, sizeof changes, "%s--data %s (was %s)", changes[0] ? ", " : "", r->data, ds->valuestring);
    add(took, sizeof took, ", data %s", r->data ? r->data : "builtin");
    /* the schedule: a generator's name (a schedule file's name is not a path) */
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(run, "schedule_name");
    if (!r->schedule_given && cJSON_IsString(sn) && pt_sched_is_generator(sn->valuestring)) {
        snprintf(r->schedule_buf, sizeof r->schedule_buf, "%s", sn->valuestring);
        r->schedule = r->schedule_buf;
        add(took, sizeof took, ", schedule %s", r->schedule);
    } else if (cJSON_IsString(sn) && strcmp(sn->valuestring, r->schedule ? r->schedule : "1f1b") != 0)
        add(changes, sizeof changes, "%sschedule %s (was %s)", changes[0] ? ", " : "", r->schedule ? r->schedule : "1f1b",
            sn->valuestring);
    /* the precision: the checkpoint holds fp32 masters either way, so a given one may differ */
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(run, "precision");
    if (!r->precision_given && cJSON_IsString(pr)) {
        snprintf(r->precision_buf, sizeof r->precision_buf, "%s", pr->valuestring);
        r->precision = r->precision_buf;
        add(took, sizeof took, ", precision %s", r->precision);
    } else if (cJSON_IsString(pr) && r->precision && strcmp(pr->valuestring, r->precision) != 0)
        add(changes, sizeof changes, "%sprecision %s (was %s)", changes[0] ? ", " : "", r->precision, pr->valuestring);
    /* the layout may change freely (checkpoints load by tensor name): say so */
    double v;
    int was_p = num_of(run, "stages", &v) ? (int)v : 0, was_d = num_of(run, "replicas", &v) ? (int)v : 0;
    if (was_p > 0 && r->stages > 0 && was_p != r->stages)
        add(changes, sizeof changes, "%s%d stages (was %d)", changes[0] ? ", " : "", r->stages, was_p);
    if (was_d > 0 && r->replicas > 0 && was_d != r->replicas)
        add(changes, sizeof changes, "%s%d replicas (was %d)", changes[0] ? ", " : "", r->replicas, was_d);
    int was_t = num_of(run, "n_tp", &v) && v > 1 ? (int)v : 1;
    if (r->tp > 0 && was_t != r->tp)
        add(changes, sizeof changes, "%s%d tensor-parallel ranks per stage (was %d)", changes[0] ? ", " : "", r->tp,
            was_t);
    /* the learning-rate schedule: steps, lr, lr_min, warmup */
    double steps, lr, lr_min, warmup;
    int has_sched = num_of(run, "steps", &steps) && num_of(run, "lr", &lr) && num_of(run, "lr_min", &lr_min) &&
                    num_of(run, "warmup", &warmup);
    if (!has_sched) {
        add(took, sizeof took, "; the checkpoint records no learning-rate schedule: this command's");
    } else {
        struct {
            const char *opt;
            int given;
            double now, was;
        } s[4] = {
            { "--steps", r->steps_given, (double)*r->steps, steps },
            { "--lr", r->lr_given, *r->lr, lr },
            { "--lr-min", r->lr_min_given, *r->lr_min, lr_min },
            { "--warmup", r->warmup_given, (double)*r->warmup, warmup },
        };
        int reset = 0;
        for (int k = 0; k < 4 && st == PT_OK; k++) {
            if (!s[k].given || s[k].now == s[k].was)
                continue;
            if (!r->reset_schedule) {
                if (k == 0)
                    st = pt_fail(PT_EINVAL, "--resume: the checkpoint's run has --steps %.0f; pass --steps %.0f, or "
                                            "--reset-schedule to re-plan the learning rate over %.0f steps",
                                 steps, steps, s[0].now);
                else
                    st = pt_fail(PT_EINVAL, "--resume: the checkpoint's run has %s %g; pass %s %g, or "
                                            "--reset-schedule to re-plan the learning rate with %s %g",
                                 s[k].opt, s[k].was, s[k].opt, s[k].was, s[k].opt, s[k].now);
            } else {
                reset = 1;
                add(changes, sizeof changes, "%s%s %g (was %g)", changes[0] ? ", " : "", s[k].opt, s[k].now,
                    s[k].was);
            }
        }
        if (st == PT_OK) {
            if (!r->steps_given)
                *r->steps = (long long)steps;
            if (!r->lr_given)
                *r->lr = lr;
            if (!r->lr_min_given)
                *r->lr_min = lr_min;
            if (!r->warmup_given)
                *r->warmup = (long long)warmup;
            add(took, sizeof took, ", lr %.2e -> %.2e over %lld steps (warmup %lld)%s", *r->lr, *r->lr_min,
                *r->steps, *r->warmup, reset ? "" : " as in its run");
            if (reset)
                add(changes, sizeof changes, "; the learning rate is re-planned over %lld steps (--reset-schedule)",
                    *r->steps);
        }
    }
    if (st == PT_OK)
        snprintf(r->line, sizeof r->line, "resume: step %lld from %s: %s; %s%s", (long long)r->ckpt_step,
                 r->step_dir, took, changes[0] ? "changes: " : "changes nothing", changes);
    if (st == PT_OK)
        snprintf(r->note, sizeof r->note, "%s", note);
    cJSON_Delete(run);
    pt_ckpt_manifest_destroy(m);
    return st;
}

pt_status pt_job_resume_finished(const pt_job_resume *r)
{
    if (r->ckpt_step < *r->steps)
        return PT_OK;
    return pt_fail(PT_EINVAL, "--resume: %s is step %lld, the end of a run of --steps %lld; to train further pass "
                              "--steps N (more) with --reset-schedule",
                   r->step_dir, (long long)r->ckpt_step, *r->steps);
}

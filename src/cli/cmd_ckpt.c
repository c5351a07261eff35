/* `pipetrain ckpt inspect|verify|export|import`: look into, check, and convert checkpoints. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"
#include "pipetrain/safetensors.h"
#include "pipetrain/timeutil.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain ckpt COMMAND ...   (pipetrain ckpt COMMAND --help for each)\n\n"
               "commands:\n"
               "  inspect DIR                              tensors, sizes and compression ratios\n"
               "  verify DIR [--all]                       check every checksum; non-zero exit on damage\n"
               "  export DIR --format safetensors OUT      weights in Hugging Face naming and layout (GPT-2: one\n"
               "                                           file; llama: a directory with config.json)\n"
               "  import IN DIR                            a step_000000 checkpoint (fresh optimizer state) from\n"
               "                                           a .safetensors file or a Hugging Face Llama directory\n\n"
               "DIR is a checkpoint root (its `latest` is used, or the newest complete checkpoint) or one\n"
               "step directory (DIR/step_000100).\n");
}

static double mib(uint64_t b)
{
    return (double)b / 1048576.0;
}

/* "all" for a whole tensor, "LO:HI" (elements [LO, HI) of its flattened values) for a piece,
 * "rows R0:R1 cols C0:C1" for a box of a tensor-parallel slice (pt_ckpt_entry_where). */
static void range_text(const pt_ckpt_entry *e, char *buf, size_t cap)
{
    pt_ckpt_entry_where(e, buf, cap);
}

static void shape_text(const pt_ckpt_entry *e, char *buf, size_t cap)
{
    buf[0] = 0;
    size_t len = 0;
    for (int d = 0; d < e->ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? "x" : "", (long long)e->shape[d]);
    if (e->ndim == 0)
        snprintf(buf, cap, "scalar");
}

/* Plane codecs of the first block, e.g. "zrrr" (z: zstd, r: raw). */
static void planes_text(const pt_ckpt_entry *e, char *buf)
{
    int k = 0;
    if (e->n_blocks > 0)
        for (; k < e->n_planes; k++)
            buf[k] = e->blocks[0].codec[k] == PT_CKPT_PLANE_ZSTD ? 'z' : 'r';
    buf[k] = 0;
}

static int cmd_inspect(int argc, char **argv)
{
    int json = 0;
    pt_opt opts[] = { { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per tensor, then a summary object", 0 } };
    pt_cmd_spec spec = { "pipetrain ckpt inspect DIR [--json]",
                         "Lists a checkpoint's tensors: kind, dtype, shape, the elements stored (all, or LO:HI for a\n"
                         "piece: a ZeRO-1 replica's slice of the AdamW moments, elements [LO, HI) of the tensor's\n"
                         "flattened values; rows R0:R1 cols C0:C1 for a tensor-parallel column slice, with values\n"
                         "LO:HI for part of it), shard, raw and stored size, compression ratio and plane codecs\n"
                         "(z = zstd, r = raw), then totals per kind and overall (entries: tensors and pieces).",
                         opts, 1, NULL };
    char *pos[1];
    int done = 0;
    pt_status st = pt_args_parse_n(&spec, argc, argv, pos, 1, "the checkpoint directory", &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    char dir[512], note[1024];
    PT_TRY(pt_ckpt_resolve(pos[0], dir, sizeof dir, note, sizeof note), out);
    if (note[0])
        fprintf(stderr, "%s\n", note);
    pt_ckpt_manifest *m;
    PT_TRY(pt_ckpt_manifest_read(dir, &m), out);
    uint64_t raw[PT_CKPT_KIND_COUNT] = { 0 }, stored[PT_CKPT_KIND_COUNT] = { 0 };
    int count[PT_CKPT_KIND_COUNT] = { 0 };
    if (!json) {
        printf("%s: format %d, step %lld, data step %lld, seed %" PRIu64 ", %d shard(s), %d tensors\n", dir,
               m->version, (long long)m->step, (long long)m->data_step, m->seed, m->n_ranks, m->n_entries);
        printf("run: %.300s%s\n\n", m->run_json, strlen(m->run_json) > 300 ? " ..." : "");
        printf("%-36s %-6s %-5s %-14s %-17s %-12s %10s %10s %6s %s\n", "tensor", "kind", "dtype", "shape", "elements",
               "shard", "raw MiB", "stored MiB", "ratio", "planes");
    }
    for (int i = 0; i < m->n_entries; i++) {
        const pt_ckpt_entry *e = &m->entries[i];
        char shape[96], planes[PT_CKPT_MAX_PLANES + 1], shard[32], range[112];
        shape_text(e, shape, sizeof shape);
        range_text(e, range, sizeof range);
        planes_text(e, planes);
        snprintf(shard, sizeof shard, "shard-%d.ptz", e->rank);
        double ratio = e->stored_bytes ? (double)e->raw_bytes / (double)e->stored_bytes : 0;
        if (json) { /* through cJSON: names come from the file and are escaped */
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "tensor", e->name);
            cJSON_AddStringToObject(o, "kind", pt_ckpt_kind_name(e->kind));
            cJSON_AddStringToObject(o, "dtype", pt_ckpt_dtype_name(e->dtype));
            cJSON_AddStringToObject(o, "shape", shape);
            if (pt_ckpt_entry_is_box(e)) {
                double box[4] = { (double)e->box.r0, (double)e->box.r1, (double)e->box.c0, (double)e->box.c1 };
                cJSON_AddItemToObject(o, "box", cJSON_CreateDoubleArray(box, 4));
            }
            if (pt_ckpt_entry_is_piece(e)) {
                double rg[2] = { (double)e->elem_lo, (double)e->elem_hi };
                cJSON_AddItemToObject(o, "range", cJSON_CreateDoubleArray(rg, 2));
            }
            cJSON_AddStringToObject(o, "shard", shard);
            cJSON_AddNumberToObject(o, "raw_bytes", (double)e->raw_bytes);
            cJSON_AddNumberToObject(o, "stored_bytes", (double)e->stored_bytes);
            cJSON_AddNumberToObject(o, "ratio", ratio);
            cJSON_AddStringToObject(o, "transform", pt_ckpt_transform_name(e->transform));
            cJSON_AddStringToObject(o, "planes", planes);
            char *line = cJSON_PrintUnformatted(o);
            if (line)
                printf("%s\n", line);
            free(line);
            cJSON_Delete(o);
        } else
            printf("%-36s %-6s %-5s %-14s %-17s %-12s %10.3f %10.3f %6.3f %s %s\n", e->name,
                   pt_ckpt_kind_name(e->kind), pt_ckpt_dtype_name(e->dtype), shape, range, shard, mib(e->raw_bytes),
                   mib(e->stored_bytes), ratio, pt_ckpt_transform_name(e->transform), planes);
        raw[e->kind] += e->raw_bytes;
        stored[e->kind] += e->stored_bytes;
        count[e->kind]++;
    }
    uint64_t tr = 0, ts = 0;
    if (!json)
        printf("\n%-8s %8s %12s %12s %7s\n", "kind", "entries", "raw MiB", "stored MiB", "ratio");
    for (int k = 0; k < PT_CKPT_KIND_COUNT; k++) {
        tr += raw[k];
        ts += stored[k];
        if (!count[k])
            continue;
        if (!json)
            printf("%-8s %8d %12.3f %12.3f %7.4f\n", pt_ckpt_kind_name((pt_ckpt_kind)k), count[k], mib(raw[k]),
                   mib(stored[k]), stored[k] ? (double)raw[k] / (double)stored[k] : 0);
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "summary", 1);
        cJSON_AddStringToObject(o, "dir", dir);
        cJSON_AddNumberToObject(o, "step", (double)m->step);
        cJSON_AddNumberToObject(o, "tensors", m->n_entries);
        cJSON_AddNumberToObject(o, "raw_bytes", (double)tr);
        cJSON_AddNumberToObject(o, "stored_bytes", (double)ts);
        cJSON_AddNumberToObject(o, "ratio", ts ? (double)tr / (double)ts : 0);
        char *line = cJSON_PrintUnformatted(o);
        if (line)
            printf("%s\n", line);
        free(line);
        cJSON_Delete(o);
    } else
        printf("%-8s %8d %12.3f %12.3f %7.4f\n", "all", m->n_entries, mib(tr), mib(ts), ts ? (double)tr / (double)ts : 0);
    pt_ckpt_manifest_destroy(m);
out:
    return pt_cli_finish(st);
}

/* Every (tensor, kind) stored exactly once: its whole entry, or pieces (ZeRO-1 optimizer slices) whose
 * union is [0, numel) with no overlap. A kind the checkpoint holds at all (the moments: it was saved
 * with optimizer state) must be there for every tensor it names. Prints each failure; returns their
 * number. */
static int verify_cover(const char *dir, const pt_ckpt_manifest *m)
{
    char what[700];
    snprintf(what, sizeof what, "%s/manifest.json", dir);
    int bad = 0, has_kind[PT_CKPT_KIND_COUNT] = { 0 };
    for (int i = 0; i < m->n_entries; i++)
        has_kind[m->entries[i].kind] = 1;
    for (int i = 0; i < m->n_entries; i++) {
        const pt_ckpt_entry *e = &m->entries[i];
        int first = 1; /* each name once: at its first entry */
        for (int k = 0; k < i && first; k++)
            first = strcmp(m->entries[k].name, e->name) != 0;
        for (int k = 0; first && k < PT_CKPT_KIND_COUNT; k++)
            if (has_kind[k] &&
                pt_ckpt_manifest_cover(m, e->name, (pt_ckpt_kind)k, 0, pt_ckpt_entry_numel(e), what) != PT_OK) {
                fprintf(stderr, "FAILED %s\n", pt_last_error());
                bad++;
            }
    }
    return bad;
}

/* Decodes every tensor of one step directory and checks that every tensor's pieces cover it once;
 * prints each failure. Returns the number of failures
 * (or -1 when the manifest itself cannot be read). */
static int verify_one(const char *dir, int threads, uint64_t *bytes)
{
    pt_ckpt_reader *r;
    if (pt_ckpt_reader_open(dir, threads, &r) != PT_OK) {
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        return -1;
    }
    const pt_ckpt_manifest *m = pt_ckpt_reader_manifest(r);
    int bad = 0;
    void *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < m->n_entries; i++) {
        const pt_ckpt_entry *e = &m->entries[i];
        if (e->raw_bytes > cap) {
            free(buf);
            cap = (size_t)e->raw_bytes;
            buf = malloc(cap);
            if (!buf) {
                fprintf(stderr, "pipetrain: out of memory (%zu bytes)\n", cap);
                pt_ckpt_reader_close(r);
                return bad + 1;
            }
        }
        if (pt_ckpt_reader_read(r, 1, &e, &buf) != PT_OK) {
            fprintf(stderr, "FAILED %s\n", pt_last_error());
            bad++;
        }
        *bytes += e->raw_bytes;
    }
    free(buf);
    bad += verify_cover(dir, m);
    pt_ckpt_reader_close(r);
    return bad;
}

static int cmd_verify(int argc, char **argv)
{
    int all = 0, threads = 2;
    pt_opt opts[] = { { "all", PT_OPT_FLAG, &all, NULL, "verify every complete checkpoint under DIR, not only the latest", 0 },
                      { "threads", PT_OPT_INT, &threads, "N", "decoding threads", 0 } };
    pt_cmd_spec spec = { "pipetrain ckpt verify DIR [--all]",
                         "Decodes every tensor of a checkpoint, checking zstd's checksums, every block's checksums of\n"
                         "its stored and raw bytes (XXH3; XXH64 in format 1) and every size, and that every tensor's\n"
                         "weights and moments are stored exactly once (a tensor stored as pieces, ZeRO-1 optimizer\n"
                         "slices: no element missing, no two pieces overlapping). Prints each damaged tensor (file\n"
                         "and name) and exits 1 when anything under DIR is damaged: a tensor, or a newest\n"
                         "checkpoint that is truncated, lacks a shard or has a broken manifest (the one a resume\n"
                         "would pass over). The last line names what is still usable.",
                         opts, 2, NULL };
    char *pos[1];
    int done = 0;
    pt_status st = pt_args_parse_n(&spec, argc, argv, pos, 1, "the checkpoint directory", &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    int64_t *steps = NULL;
    int n = 0;
    char dirs[64][600];
    int n_dirs = 0, root_damaged = 0;
    char note[1024] = "";
    if (all) {
        PT_TRY(pt_ckpt_list(pos[0], &steps, &n), out);
        for (int i = n > 64 ? n - 64 : 0; i < n; i++) {
            char sn[64];
            pt_ckpt_step_name(steps[i], sn, sizeof sn);
            snprintf(dirs[n_dirs++], sizeof dirs[0], "%s/%s", pos[0], sn);
        }
        free(steps);
        if (n_dirs == 0) {
            st = pt_fail(PT_EFORMAT, "%s holds no complete checkpoint", pos[0]);
            goto out;
        }
        char sd[600];
        if (pt_ckpt_resolve(pos[0], sd, sizeof sd, note, sizeof note) != PT_OK)
            pt_clear_error(); /* every step is verified below */
    } else {
        PT_TRY(pt_ckpt_resolve(pos[0], dirs[0], sizeof dirs[0], note, sizeof note), out);
        n_dirs = 1;
    }
    /* The note says the newest checkpoint (latest, or a newer step) is not usable: that is damage
     * under DIR even when an older checkpoint verifies. */
    if (note[0]) {
        printf("DAMAGED %s\n", note);
        root_damaged = 1;
    }
    int failed_dirs = 0;
    const char *usable = NULL;
    for (int i = 0; i < n_dirs; i++) {
        uint64_t bytes = 0;
        int64_t t0 = pt_now_ns();
        int bad = verify_one(dirs[i], threads, &bytes);
        double s = pt_seconds_between(t0, pt_now_ns());
        if (bad == 0) {
            printf("ok      %s: %.1f MiB of tensors verified in %.2f s\n", dirs[i], mib(bytes), s);
            usable = dirs[i];
        } else
            printf("DAMAGED %s: %s\n", dirs[i], bad < 0 ? "manifest unreadable" : "see the errors above");
        failed_dirs += bad != 0;
    }
    /* Only the newest was read and it is damaged: the newest older one that verifies is what is
     * still usable. */
    char older[600] = "";
    const char *us = strrchr(dirs[0], '_');
    long long first = us ? atoll(us + 1) : 0;
    if (!all && failed_dirs && pt_ckpt_list(pos[0], &steps, &n) == PT_OK) {
        for (int i = n - 1; i >= 0 && !older[0]; i--) {
            char d[600];
            char sn[64];
            pt_ckpt_step_name(steps[i], sn, sizeof sn);
            snprintf(d, sizeof d, "%s/%s", pos[0], sn);
            if (steps[i] >= first)
                continue;
            uint64_t bytes = 0;
            if (verify_one(d, threads, &bytes) == 0) {
                snprintf(older, sizeof older, "%s", d);
                printf("ok      %s: %.1f MiB of tensors verified (an older checkpoint)\n", d, mib(bytes));
            }
        }
        free(steps);
    } else
        pt_clear_error();
    if (older[0])
        usable = older;
    if (failed_dirs || root_damaged) {
        char u[700];
        if (usable)
            snprintf(u, sizeof u, "still usable: %.600s (train --resume would take it)", usable);
        else
            snprintf(u, sizeof u, "no checkpoint under it verifies");
        st = pt_fail(PT_EFORMAT, "%s: %d damaged checkpoint(s)%s; %s", pos[0], failed_dirs + root_damaged,
                     root_damaged && !failed_dirs ? " (the newest)" : "", u);
    }
out:
    return pt_cli_finish(st);
}

static pt_status full_model(const pt_model_config *cfg, const pt_backend **be, pt_stream **stream, pt_model **m)
{
    PT_CHECK(pt_backend_get("cpu", be));
    PT_CHECK((*be)->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 0 }, stream));
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .recompute = 0 };
    pt_status st = pt_model_create(cfg, 0, pt_model_n_layers(cfg) - 1, &mo, *be, *stream, m);
    if (st != PT_OK) {
        (*be)->stream_destroy(*stream);
        *stream = NULL;
    }
    return st;
}

/* "5GB", "500MB", "2GiB", "1048576": bytes (K/M/G decimal as Hugging Face's max_shard_size, KiB/MiB/GiB
 * binary). 0 when the text is not a size. */
static uint64_t parse_size(const char *s)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || end == s || !(v > 0))
        return 0;
    static const struct {
        const char *suffix;
        double mul;
    } units[] = { { "", 1 },          { "B", 1 },         { "K", 1e3 },           { "KB", 1e3 },
                  { "M", 1e6 },       { "MB", 1e6 },      { "G", 1e9 },           { "GB", 1e9 },
                  { "KiB", 1024.0 },  { "MiB", 1048576.0 }, { "GiB", 1073741824.0 } };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0)
            return v * units[i].mul >= 1 && v * units[i].mul < 1.8e19 ? (uint64_t)(v * units[i].mul) : 0;
    return 0;
}

static int cmd_export(int argc, char **argv)
{
    const char *format = "safetensors", *model = NULL, *dtype = "f32", *shard_size = NULL;
    pt_opt opts[] = { { "format", PT_OPT_STRING, &format, "FORMAT", "output format (safetensors)", 0 },
                      { "model", PT_OPT_STRING, &model, "NAME|FILE",
                        "model config (default: the one recorded in the checkpoint)", 0 },
                      { "dtype", PT_OPT_STRING, &dtype, "f32|bf16", "llama: tensor type on disk (default f32)", 0 },
                      { "shard-size", PT_OPT_STRING, &shard_size, "SIZE",
                        "llama: shards of at most SIZE (5GB, 500MB, 2GiB, bytes) with model.safetensors.index.json "
                        "when the weights are larger (default: one model.safetensors)",
                        0 } };
    pt_cmd_spec spec = { "pipetrain ckpt export DIR --format safetensors OUT",
                         "Writes a checkpoint's weights in Hugging Face naming and layout, loadable by transformers\n"
                         "and other tools. GPT-2: one safetensors file OUT (h.0.attn.c_attn.weight as [in, out], ...;\n"
                         "the config in its metadata). Llama: OUT is a directory (created) with config.json\n"
                         "(LlamaForCausalLM) and model.safetensors, or shards and model.safetensors.index.json with\n"
                         "--shard-size; weights [out, in], q/k/v_proj and gate/up_proj as separate tensors. OUT\n"
                         "ending in .safetensors writes one file with the config in its metadata instead.",
                         opts, 4,
                         "examples:\n"
                         "  pipetrain ckpt export ckpt --format safetensors model.safetensors        (gpt2)\n"
                         "  pipetrain ckpt export ckpt --format safetensors hf-out --dtype bf16      (llama)\n"
                         "  pipetrain ckpt export ckpt --format safetensors hf-out --shard-size 2GB  (llama)" };
    char *pos[2];
    int done = 0;
    pt_status st = pt_args_parse_n(&spec, argc, argv, pos, 2, "DIR and OUT", &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (strcmp(format, "safetensors") != 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--format %s is not supported; use --format safetensors", format));
    pt_hf_export_opts eo = { .bf16 = strcmp(dtype, "bf16") == 0 };
    if (!eo.bf16 && strcmp(dtype, "f32") != 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--dtype %s is not supported; use f32 or bf16", dtype));
    if (shard_size && !(eo.shard_bytes = parse_size(shard_size)))
        return pt_cli_finish(
            pt_fail(PT_EINVAL, "--shard-size %s is not a size; give bytes or a number with KB, MB, GB (or KiB, MiB, GiB)",
                    shard_size));
    char dir[512], note[1024];
    pt_ckpt_manifest *m = NULL;
    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    pt_model *mod = NULL;
    pt_model_config cfg;
    pt_train_state ts = { 0 };
    PT_TRY(pt_ckpt_resolve(pos[0], dir, sizeof dir, note, sizeof note), out);
    if (note[0])
        fprintf(stderr, "%s\n", note);
    PT_TRY(pt_ckpt_manifest_read(dir, &m), out);
    PT_TRY(pt_ckpt_run_model_config(m->run_json, model, &cfg), out);
    if (cfg.arch != PT_ARCH_LLAMA && (eo.bf16 || eo.shard_bytes)) {
        st = pt_fail(PT_EINVAL, "--dtype bf16 and --shard-size are for llama checkpoints; %s is gpt2, whose export is "
                                "one f32 file",
                     dir);
        goto out;
    }
    PT_TRY(full_model(&cfg, &be, &stream, &mod), out);
    PT_TRY(pt_ckpt_load_ex(dir, &mod, NULL, 1, &ts, NULL, NULL, NULL), out);
    if (cfg.arch == PT_ARCH_LLAMA)
        PT_TRY(pt_model_export_hf_llama(&mod, 1, pos[1], &eo), out);
    else
        PT_TRY(pt_model_export_hf_safetensors(&mod, 1, pos[1]), out);
    printf("wrote %s: %d tensors of %s, step %lld%s\n", pos[1], pt_model_n_tensors(mod), dir, (long long)m->step,
           cfg.arch == PT_ARCH_LLAMA ? (eo.bf16 ? " (Hugging Face Llama, bf16)" : " (Hugging Face Llama, f32)") : "");
out:
    free((char *)ts.run_json);
    pt_model_destroy(mod);
    if (be && stream)
        be->stream_destroy(stream);
    pt_ckpt_manifest_destroy(m);
    return pt_cli_finish(st);
}

/* The import's DIR is missing or empty, or force: importing into a root of training checkpoints
 * would point its `latest` at a new step 0. Names what DIR holds. */
static pt_status import_target_empty(const char *dir, int force)
{
    DIR *d = opendir(dir);
    if (!d)
        return PT_OK; /* made by the save */
    char first[3][64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            snprintf(first[n < 3 ? n : 2], sizeof first[0], "%.60s", de->d_name), n++;
    closedir(d);
    if (n == 0 || force)
        return PT_OK;
    return pt_fail(PT_EINVAL, "%s is not empty (it holds %s%s%s%s%s); importing would point its latest at a new step 0 "
                              "and a --resume there would save over the newer steps: import into an empty directory, "
                              "or add --force",
                   dir, first[0], n > 1 ? ", " : "", n > 1 ? first[1] : "", n > 2 ? ", " : "", n > 2 ? "..." : "");
}

static int cmd_import(int argc, char **argv)
{
    const char *model = NULL;
    int level = 1, threads = 2, force = 0;
    pt_opt opts[] = { { "model", PT_OPT_STRING, &model, "NAME|FILE",
                        "model config (default: the file's metadata, else the preset its shapes match)", 0 },
                      { "zstd-level", PT_OPT_INT, &level, "N", "zstd level (1..19)", 0 },
                      { "threads", PT_OPT_INT, &threads, "N", "compression threads", 0 },
                      { "force", PT_OPT_FLAG, &force, NULL,
                        "import into a DIR that already holds checkpoints (its latest then names step 0; a --resume "
                        "there is refused while a newer step is usable)",
                        0 } };
    pt_cmd_spec spec = { "pipetrain ckpt import IN DIR",
                         "Makes DIR/step_000000 from Hugging Face weights, with zeroed AdamW moments, so that\n"
                         "`pipetrain train --ckpt-dir DIR --resume` starts from them. IN is a safetensors file in\n"
                         "GPT-2 naming and layout, or a Llama-family checkpoint: a directory with config.json and\n"
                         "model.safetensors (or model.safetensors.index.json and its shards), F32/F16/BF16.",
                         opts, 4,
                         "examples:\n"
                         "  pipetrain ckpt import gpt2.safetensors ckpt --model gpt2\n"
                         "  pipetrain ckpt import Llama-3.2-1B ckpt" };
    char *pos[2];
    int done = 0;
    pt_status st = pt_args_parse_n(&spec, argc, argv, pos, 2, "IN and DIR", &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    pt_model *mod = NULL;
    pt_optim *opt = NULL;
    pt_ckpt_saver *sv = NULL;
    pt_model_config cfg;
    char path[600];
    struct stat sb;
    snprintf(path, sizeof path, "%s/step_000000", pos[1]);
    if (stat(path, &sb) == 0) {
        st = pt_fail(PT_EINVAL, "%s already exists; import into an empty directory", path);
        goto out;
    }
    PT_TRY(import_target_empty(pos[1], force), out);
    if (model)
        PT_TRY(pt_model_config_load(model, &cfg), out);
    else
        PT_TRY(pt_model_config_from_safetensors(pos[0], &cfg), out);
    PT_TRY(full_model(&cfg, &be, &stream, &mod), out);
    PT_TRY(pt_model_load_hf_safetensors(mod, pos[0]), out);
    pt_adamw_cfg ac = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.0f, .grad_clip = 0 };
    PT_TRY(pt_optim_create(mod, &ac, &opt), out);
    cJSON *run = cJSON_CreateObject(), *mj = pt_model_config_to_json(&cfg);
    char *run_json = NULL;
    if (run && mj) {
        cJSON_AddItemToObject(run, "model", mj);
        mj = NULL;
        cJSON_AddStringToObject(run, "imported_from", pos[0]);
        run_json = cJSON_PrintUnformatted(run);
    }
    cJSON_Delete(mj);
    cJSON_Delete(run);
    if (!run_json) {
        st = pt_fail(PT_ENOMEM, "out of memory");
        goto out;
    }
    pt_train_state ts = { .step = 0, .data_step = 0, .seed = 0, .run_json = run_json };
    st = pt_ckpt_saver_create(pos[1], 0, level, threads, &sv);
    if (st == PT_OK)
        st = pt_ckpt_save(sv, NULL, &mod, &opt, 1, &ts);
    if (st == PT_OK)
        st = pt_ckpt_saver_wait(sv);
    free(run_json);
    if (st == PT_OK) {
        pt_ckpt_save_info info;
        pt_ckpt_saver_info(sv, &info);
        printf("wrote %s: %s (%d layers, width %d), %.1f MiB -> %.1f MiB\n", info.step_dir, cfg.name, cfg.n_layer,
               cfg.n_embd, mib(info.raw_bytes), mib(info.stored_bytes));
    }
out:
    pt_ckpt_saver_destroy(sv);
    pt_optim_destroy(opt);
    pt_model_destroy(mod);
    if (be && stream)
        be->stream_destroy(stream);
    return pt_cli_finish(st);
}

int pt_cmd_ckpt(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "inspect") == 0)
        return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(argv[1], "export") == 0)
        return cmd_export(argc - 1, argv + 1);
    if (strcmp(argv[1], "import") == 0)
        return cmd_import(argc - 1, argv + 1);
    fprintf(stderr, "pipetrain: unknown ckpt command '%s'; run 'pipetrain ckpt --help'\n", argv[1]);
    return 2;
}

/* ckpt.zero: checkpoints of ZeRO-1 optimizer slices (pieces), resharded bit for bit.
 *  - 6 ranks (gpt2-tiny in 2 stages [0,2] | [3,5] x 3 data-parallel replicas, rank = d * 2 + p as the
 *    runtime places them) save through pt_ckpt_save_ex: replica d's optimizer covers
 *    pt_comm_segment(n_params, 3, d) of its chunk (uneven, cut inside tensors); replica 0 saves the
 *    weights and its moment pieces, replicas 1 and 2 their pieces only (optim_only). The manifest is
 *    format 3; the weights are stored once, by replica 0's ranks; the tied wte.weight's moments come
 *    in pieces from the embedding chunk's three replicas only
 *  - that checkpoint loads into whole optimizers (1 chunk), into D = 2 slices of 3 chunks, and into
 *    D = 3 slices of 1 chunk: every weight and moment equals the uncut reference bit for bit, every
 *    optimizer at step 10
 *  - a whole (zero 0) checkpoint loads into D = 2 slices of 2 chunks
 *  - a checkpoint holding only replica 1's slice fails to load into a whole optimizer with
 *    PT_EFORMAT naming the tensor, the kind and the missing element range; `pipetrain ckpt verify`
 *    (when the binary is given) exits 1 naming it, and `ckpt export` still reads its weights
 *  - overlapping pieces (written with pt_ckpt_write) fail the load and verify, naming the range
 *  - two ranks whose slices overlap without being equal fail the save (naming both), commit nothing
 *  - optim_only without optimizers is PT_EINVAL
 * The test starts its own ranks with pt_launch (it re-runs itself with RANK etc. set). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/comm.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"

#include "ckpt_test.h"

#define D_SAVE 3
#define P_SAVE 2

static const pt_adamw_cfg adam = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                   .grad_clip = 1.0f };
static const pt_backend *be;
static pt_stream *stream;
static pt_model_config cfg;
static int L; /* the last layer (head) */

/* Depends only on (tensor name, kind, index): every rank, layout and slice agrees. */
static float value_of(const char *name, int kind, size_t i)
{
    float u = (float)(ckpt_test_hash(name, (uint64_t)(kind + 11), i) >> 40) / 16777216.0f - 0.5f;
    return kind == 2 ? u * u * 1e-4f : u * 0.05f;
}

typedef struct chunk {
    pt_model *m;
    pt_optim *o;
} chunk;

/* Layers first..last, with an optimizer over replica d's segment of D (D = 0: the whole model). */
static chunk make(int first, int last, int D, int d)
{
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 8, .n_slots = 1, .recompute = 0 };
    chunk c;
    REQUIRE(pt_model_create(&cfg, first, last, &mo, be, stream, &c.m));
    if (D > 0) {
        size_t lo, hi;
        pt_comm_segment(pt_model_n_params(c.m), D, d, &lo, &hi);
        REQUIRE(pt_optim_create_range(c.m, &adam, lo, hi, &c.o));
    } else {
        REQUIRE(pt_optim_create(c.m, &adam, &c.o));
    }
    return c;
}

static void drop(chunk *c)
{
    pt_optim_destroy(c->o);
    pt_model_destroy(c->m);
}

/* Weights all value_of; the moments over the optimizer's range (buffers from element lo). kinds:
 * bit 0 the weights, bit 1 the moments. */
static void fill(chunk *c, int kinds)
{
    size_t lo, hi;
    pt_optim_range(c->o, &lo, &hi);
    float *w = pt_model_params(c->m), *mo[2] = { pt_optim_m(c->o), pt_optim_v(c->o) };
    for (int t = 0; t < pt_model_n_tensors(c->m); t++) {
        const pt_param *p = pt_model_tensor(c->m, t);
        for (size_t j = 0; (kinds & 1) && j < p->numel; j++)
            w[p->offset + j] = value_of(p->name, 0, j);
        for (int k = 0; (kinds & 2) && k < 2; k++)
            for (size_t j = 0; j < p->numel; j++)
                if (p->offset + j >= lo && p->offset + j < hi)
                    mo[k][p->offset + j - lo] = value_of(p->name, k + 1, j);
    }
    pt_optim_set_steps_done(c->o, 10);
}

/* 1 when the weights and the moments over the range equal value_of bit for bit, and the optimizer
 * is at `step`; else 0, printing the first miss. */
static int matches(chunk *c, const char *what, int64_t step)
{
    size_t lo, hi;
    pt_optim_range(c->o, &lo, &hi);
    float *w = pt_model_params(c->m), *mo[2] = { pt_optim_m(c->o), pt_optim_v(c->o) };
    for (int t = 0; t < pt_model_n_tensors(c->m); t++) {
        const pt_param *p = pt_model_tensor(c->m, t);
        for (size_t j = 0; j < p->numel; j++) {
            size_t x = p->offset + j;
            for (int k = 0; k < 3; k++) {
                if (k > 0 && (x < lo || x >= hi))
                    continue;
                float got = k == 0 ? w[x] : mo[k - 1][x - lo], want = value_of(p->name, k, j);
                if (memcmp(&got, &want, 4) != 0) {
                    fprintf(stderr, "%s: %s kind %d [%zu] (flat %zu, range [%zu, %zu)): %a, want %a\n", what, p->name,
                            k, j, x, lo, hi, got, want);
                    return 0;
                }
            }
        }
    }
    if (pt_optim_steps_done(c->o) != step) {
        fprintf(stderr, "%s: optimizer at step %lld, want %lld\n", what, (long long)pt_optim_steps_done(c->o),
                (long long)step);
        return 0;
    }
    return 1;
}

static pt_status load(const char *dir, chunk *c, int n)
{
    pt_model *m[8];
    pt_optim *o[8];
    for (int i = 0; i < n; i++) {
        m[i] = c[i].m;
        o[i] = c[i].o;
    }
    pt_train_state ts;
    pt_status st = pt_ckpt_load_ex(dir, m, o, n, &ts, NULL, NULL, NULL);
    if (st == PT_OK)
        free((char *)ts.run_json);
    return st;
}

static int rank_main(const char *root)
{
    pt_comm *comm;
    pt_comm_opts co = { .provider = NULL, .timeout_ms = 60000, .config_hash = 17 };
    REQUIRE(pt_comm_create(&co, &comm));
    int rank = pt_comm_rank(comm), p = rank % P_SAVE, d = rank / P_SAVE;
    chunk c = make(p ? 3 : 0, p ? L : 2, D_SAVE, d);
    fill(&c, d == 0 ? 3 : 2); /* other replicas' weights are never read */
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 1, &sv));
    pt_ckpt_save_opts so = { .optim_only = d > 0 };
    REQUIRE(pt_ckpt_saver_reserve_ex(sv, &c.m, &c.o, 1, &so));
    pt_train_state ts = { .step = 10, .data_step = 10, .seed = 3, .run_json = "{\"model\":\"gpt2-tiny\"}" };
    REQUIRE(pt_ckpt_save_ex(sv, comm, &c.m, &c.o, 1, &ts, &so));
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_saver_destroy(sv);
    drop(&c);
    pt_comm_destroy(comm);
    return 0;
}

/* 2 ranks whose slices of one model overlap ([0, 60%) and [40%, 100%)): the save fails on both,
 * naming the tensor and both ranges on rank 0; nothing is committed. Exit status 0 when so. */
static int overlap_rank_main(const char *root)
{
    pt_comm *comm;
    pt_comm_opts co = { .provider = NULL, .timeout_ms = 60000, .config_hash = 19 };
    REQUIRE(pt_comm_create(&co, &comm));
    int rank = pt_comm_rank(comm);
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 8, .n_slots = 1, .recompute = 0 };
    chunk c;
    REQUIRE(pt_model_create(&cfg, 0, L, &mo, be, stream, &c.m));
    size_t n = pt_model_n_params(c.m);
    REQUIRE(pt_optim_create_range(c.m, &adam, rank ? n * 2 / 5 : 0, rank ? n : n * 3 / 5, &c.o));
    fill(&c, 3);
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 1, &sv));
    pt_ckpt_save_opts so = { .optim_only = rank > 0 };
    pt_train_state ts = { .step = 5, .data_step = 5, .seed = 3, .run_json = "{}" };
    REQUIRE(pt_ckpt_save_ex(sv, comm, &c.m, &c.o, 1, &ts, &so));
    pt_status st = pt_ckpt_saver_wait(sv);
    const char *msg = pt_last_error();
    int ok = st != PT_OK && (rank != 0 || (st == PT_EINVAL && strstr(msg, "overlap and neither holds the other") &&
                                           strstr(msg, "rank 0 saved elements") && strstr(msg, "and rank 1")));
    if (!ok)
        fprintf(stderr, "rank %d: overlapping slices: status %d: %s\n", rank, st, pt_last_error());
    pt_ckpt_saver_destroy(sv);
    drop(&c);
    pt_comm_destroy(comm);
    return ok ? 0 : 1;
}

/* The manifest of the 6-rank save: format 3, weights once from replica 0's ranks, moment pieces
 * from every rank (some cut inside a tensor), wte.weight's moments from the embedding's ranks. */
static void check_manifest(const char *dir)
{
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    CHECK(man->version == 3 && man->n_ranks == 6, "version %d, %d ranks", man->version, man->n_ranks);
    int params_elsewhere = 0, n_wte_param = 0, cut_inside = 0, moments_per_rank[6] = { 0 }, wte_from_head = 0;
    for (int i = 0; i < man->n_entries; i++) {
        const pt_ckpt_entry *e = &man->entries[i];
        if (e->kind == PT_CKPT_PARAM) {
            params_elsewhere += e->rank >= P_SAVE || pt_ckpt_entry_is_piece(e);
            n_wte_param += strcmp(e->name, "wte.weight") == 0;
        } else {
            moments_per_rank[e->rank]++;
            cut_inside += e->elem_lo > 0 && e->elem_lo < pt_ckpt_entry_numel(e);
            wte_from_head += strcmp(e->name, "wte.weight") == 0 && e->rank % P_SAVE == 1;
        }
    }
    CHECK(params_elsewhere == 0 && n_wte_param == 1, "weights: %d not from replica 0 whole, wte x%d", params_elsewhere,
          n_wte_param);
    CHECK(cut_inside > 0, "no piece starts inside a tensor: the test does not cut tensors");
    CHECK(wte_from_head == 0, "the head's copy of wte.weight stored %d moment pieces", wte_from_head);
    for (int r = 0; r < 6; r++)
        CHECK(moments_per_rank[r] > 0, "rank %d stored no moment pieces", r);
    for (int i = 0; i < man->n_entries; i++)
        CHECK(pt_ckpt_manifest_cover(man, man->entries[i].name, man->entries[i].kind, 0,
                                     pt_ckpt_entry_numel(&man->entries[i]), dir) == PT_OK,
              "coverage: %s", pt_last_error());
    pt_ckpt_manifest_destroy(man);
}

static void reshard(const char *root)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/step_000010", root);
    check_manifest(dir);
    /* whole optimizers, one chunk */
    chunk one = make(0, L, 0, 0);
    CHECK(load(root, &one, 1) == PT_OK && matches(&one, "D=3 -> whole", 10), "D=3 -> whole: %s", pt_last_error());
    drop(&one);
    /* D = 2 slices of 3 chunks, and D = 3 slices of one chunk (other cuts than the save's) */
    int f3[3] = { 0, 2, 4 }, l3[3] = { 1, 3, 5 };
    for (int d = 0; d < 2; d++) {
        chunk c[3];
        for (int i = 0; i < 3; i++)
            c[i] = make(f3[i], l3[i], 2, d);
        char what[64];
        snprintf(what, sizeof what, "D=3 P=2 -> D=2 P=3 replica %d", d);
        CHECK(load(root, c, 3) == PT_OK, "%s: %s", what, pt_last_error());
        for (int i = 0; i < 3; i++) {
            CHECK(matches(&c[i], what, 10), "%s chunk %d", what, i);
            drop(&c[i]);
        }
    }
    for (int d = 0; d < 3; d++) {
        chunk c = make(0, L, 3, d);
        CHECK(load(root, &c, 1) == PT_OK && matches(&c, "D=3 P=2 -> D=3 P=1", 10), "-> D=3 P=1 replica %d: %s", d,
              pt_last_error());
        drop(&c);
    }
}

static void save_one(const char *root, chunk *c, int n, int64_t step, const pt_ckpt_save_opts *so)
{
    pt_model *m[8];
    pt_optim *o[8];
    for (int i = 0; i < n; i++) {
        m[i] = c[i].m;
        o[i] = c[i].o;
    }
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 2, &sv));
    pt_train_state ts = { .step = step, .data_step = step, .seed = 3, .run_json = "{\"model\":\"gpt2-tiny\"}" };
    REQUIRE(pt_ckpt_save_ex(sv, NULL, m, o, n, &ts, so));
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_saver_destroy(sv);
}

/* A zero-0 checkpoint (whole moments) into D = 2 slices of 2 chunks. */
static void whole_into_slices(const char *root)
{
    chunk w = make(0, L, 0, 0);
    fill(&w, 3);
    save_one(root, &w, 1, 10, NULL);
    drop(&w);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/step_000010", root);
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    CHECK(man->version == 2, "a checkpoint of whole tensors is version %d, want 2", man->version);
    pt_ckpt_manifest_destroy(man);
    for (int d = 0; d < 2; d++) {
        chunk c[2] = { make(0, 3, 2, d), make(4, L, 2, d) };
        CHECK(load(root, c, 2) == PT_OK && matches(&c[0], "whole -> D=2", 10) && matches(&c[1], "whole -> D=2", 10),
              "whole -> D=2 replica %d: %s", d, pt_last_error());
        drop(&c[0]);
        drop(&c[1]);
    }
}

static int run_cli(const char *cmd, const char *out)
{
    char full[2400];
    snprintf(full, sizeof full, "%s > %s 2>&1", cmd, out);
    int r = system(full);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static int file_has(const char *path, const char *text)
{
    size_t len;
    uint8_t *b = ckpt_test_slurp(path, &len);
    if (!b)
        return 0;
    b[len] = 0;
    int has = strstr((char *)b, text) != NULL;
    if (!has)
        fprintf(stderr, "%s lacks '%s':\n%s\n", path, text, (char *)b);
    free(b);
    return has;
}

/* Only replica 1 of 3 saved (weights and its slice): the whole optimizer misses [0, lo) of the
 * first tensor's adam_m. */
static void missing_piece(const char *root, const char *pt_bin)
{
    chunk r1 = make(0, L, 3, 1);
    fill(&r1, 3);
    save_one(root, &r1, 1, 10, NULL);
    size_t lo, hi;
    pt_optim_range(r1.o, &lo, &hi);
    const pt_param *first = pt_model_tensor(r1.m, 0);
    CHECK(first->offset == 0 && lo > 0, "segment 1 starts at %zu, tensor 0 at %zu", lo, first->offset);
    size_t gap_end = lo < first->numel ? lo : first->numel;
    char want[256];
    snprintf(want, sizeof want, "tensor %s (adam_m): no piece holds elements [0, %zu)", first->name, gap_end);
    drop(&r1);
    chunk w = make(0, L, 0, 0);
    pt_status st = load(root, &w, 1);
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), want) && strstr(pt_last_error(), "manifest.json") &&
              strstr(pt_last_error(), "use another checkpoint"),
          "missing piece: status %d: %s (want '%s')", st, pt_last_error(), want);
    /* replica 1's own slice loads */
    chunk again = make(0, L, 3, 1);
    CHECK(load(root, &again, 1) == PT_OK && matches(&again, "replica 1 -> replica 1", 10), "own slice: %s",
          pt_last_error());
    drop(&again);
    drop(&w);
    if (pt_bin) {
        char cmd[2000], out[700];
        snprintf(out, sizeof out, "%s/verify.txt", root);
        snprintf(cmd, sizeof cmd, "%s ckpt verify %s", pt_bin, root);
        CHECK(run_cli(cmd, out) == 1 && file_has(out, want) && file_has(out, "DAMAGED"), "verify of a missing piece");
        snprintf(cmd, sizeof cmd, "%s ckpt inspect %s", pt_bin, root);
        CHECK(run_cli(cmd, out) == 0 && file_has(out, "adam_m") && file_has(out, ":"), "inspect of pieces");
        snprintf(cmd, sizeof cmd, "%s ckpt export %s --format safetensors %s/w.safetensors", pt_bin, root, root);
        CHECK(run_cli(cmd, out) == 0, "export of a checkpoint with missing moment pieces reads its weights");
    }
}

/* Two pieces of one tensor's adam_v overlap: load and verify name the elements. */
static void overlapping_pieces(const char *root, const char *pt_bin)
{
    chunk w = make(0, L, 0, 0);
    fill(&w, 3);
    int nt = pt_model_n_tensors(w.m);
    pt_ckpt_src *src = calloc((size_t)nt * 3 + 1, sizeof *src);
    int n = 0;
    const pt_param *cut = NULL;
    for (int t = 0; t < nt; t++) {
        const pt_param *p = pt_model_tensor(w.m, t);
        if (pt_model_tensor_is_copy(w.m, p))
            continue;
        for (int k = 0; k < 3; k++) {
            const float *base = k == 0 ? pt_model_params(w.m) : (k == 1 ? pt_optim_m(w.o) : pt_optim_v(w.o));
            pt_ckpt_src s = { .name = p->name, .kind = (pt_ckpt_kind)k, .dtype = PT_CKPT_F32, .ndim = p->ndim,
                              .data = base + p->offset };
            for (int q = 0; q < p->ndim; q++)
                s.shape[q] = p->shape[q];
            if (k == 2 && !cut && p->numel >= 1000) { /* [0, 600) and [500, numel) */
                cut = p;
                s.elem_lo = 0;
                s.elem_hi = 600;
                src[n++] = s;
                s.elem_lo = 500;
                s.elem_hi = p->numel;
                s.data = base + p->offset + 500;
            }
            src[n++] = s;
        }
    }
    pt_train_state ts = { .step = 10, .data_step = 10, .seed = 3, .run_json = "{\"model\":\"gpt2-tiny\"}" };
    pt_ckpt_codec_opts co = pt_ckpt_codec_default(1, 2);
    REQUIRE(pt_ckpt_write(root, src, n, &ts, &co, 0));
    free(src);
    char want[256];
    snprintf(want, sizeof want, "tensor %s (adam_v): pieces [0, 600) in shard-0.ptz and [500, %zu) in shard-0.ptz "
                                "overlap in elements [500, 600)",
             cut->name, cut->numel);
    chunk c = make(0, L, 0, 0);
    pt_status st = load(root, &c, 1);
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), want), "overlap: status %d: %s (want '%s')", st, pt_last_error(),
          want);
    drop(&c);
    drop(&w);
    if (pt_bin) {
        char cmd[2000], out[700];
        snprintf(out, sizeof out, "%s/verify.txt", root);
        snprintf(cmd, sizeof cmd, "%s ckpt verify %s", pt_bin, root);
        CHECK(run_cli(cmd, out) == 1 && file_has(out, want), "verify of overlapping pieces");
    }
}

static void bad_args(const char *root)
{
    chunk w = make(0, L, 0, 0);
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 1, &sv));
    pt_ckpt_save_opts so = { .optim_only = 1 };
    pt_train_state ts = { .step = 1 };
    CHECK(pt_ckpt_save_ex(sv, NULL, &w.m, NULL, 1, &ts, &so) == PT_EINVAL && strstr(pt_last_error(), "optim_only"),
          "optim_only without optimizers: %s", pt_last_error());
    CHECK(pt_ckpt_saver_reserve_ex(sv, &w.m, NULL, 1, &so) == PT_EINVAL, "reserve: optim_only without optimizers");
    pt_ckpt_saver_destroy(sv);
    drop(&w);
}

static char *make_root(const char *tag)
{
    char *root = malloc(128);
    snprintf(root, 128, "/tmp/pt_ckpt_zero_%s_XXXXXX", tag);
    if (!mkdtemp(root))
        exit(1);
    return root;
}

static void remove_root(char *root)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", root);
    free(root);
}

int main(int argc, char **argv)
{
    REQUIRE(pt_backend_get("cpu", &be));
    REQUIRE(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &stream));
    REQUIRE(pt_model_config_load("gpt2-tiny", &cfg));
    L = pt_model_n_layers(&cfg) - 1;
    if (argc == 3 && strcmp(argv[1], "--rank") == 0)
        return rank_main(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--overlap-rank") == 0)
        return overlap_rank_main(argv[2]);
    const char *pt_bin = argc > 1 ? argv[1] : NULL; /* the pipetrain binary, for ckpt verify */

    char *root = make_root("dp3");
    char *child[] = { argv[0], "--rank", root, NULL };
    int code = -1;
    pt_launch_opts lo = { .nproc = P_SAVE * D_SAVE, .nodes = 1, .node_rank = 0, .master = NULL };
    REQUIRE(pt_launch(&lo, child, &code));
    CHECK(code == 0, "ranks exited with %d", code);
    reshard(root);
    remove_root(root);

    root = make_root("ranks");
    char *child2[] = { argv[0], "--overlap-rank", root, NULL };
    pt_launch_opts lo2 = { .nproc = 2, .nodes = 1, .node_rank = 0, .master = NULL };
    code = -1;
    REQUIRE(pt_launch(&lo2, child2, &code));
    char step5[300];
    snprintf(step5, sizeof step5, "%s/step_000005", root);
    CHECK(code == 0 && access(step5, F_OK) != 0, "overlapping slices of two ranks: exit %d, %s %s", code, step5,
          access(step5, F_OK) == 0 ? "committed" : "absent");
    remove_root(root);

    root = make_root("whole");
    whole_into_slices(root);
    remove_root(root);
    root = make_root("missing");
    missing_piece(root, pt_bin);
    remove_root(root);
    root = make_root("overlap");
    overlapping_pieces(root, pt_bin);
    remove_root(root);
    root = make_root("args");
    bad_args(root);
    remove_root(root);

    be->stream_destroy(stream);
    if (failures) {
        fprintf(stderr, "ckpt.zero: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.zero: ok (D=3 P=2 slices -> whole, D=2 P=3, D=3 P=1; whole -> D=2; missing and overlapping "
           "pieces named)\n");
    return 0;
}

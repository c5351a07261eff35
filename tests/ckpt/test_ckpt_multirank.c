/* ckpt.multirank: a checkpoint saved by 4 ranks (2 pipeline stages x 2 data-parallel replicas,
 * gpt2-tiny split [0,2] | [3,5]) through pt_ckpt_save with a pt_comm, then loaded in one process.
 *  - every rank writes its shard; rank 0 commits one manifest: 4 shards, each tensor once (the
 *    replicas' copies deduplicated, the tied wte stored by the embedding's rank)
 *  - loaded into 1 chunk and into 3 chunks, every tensor and moment is bit-identical
 *  - a second collective save while the first is written waits for it
 *  - keep 2 over four saves: the newest pruned checkpoint's shards (every rank's) go to recycle/,
 *    the next save overwrites them, and the checkpoint it writes loads exactly
 * The test starts its own ranks with pt_launch (it re-runs itself with RANK etc. set). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/comm.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"

#include "ckpt_test.h"

static const pt_adamw_cfg adam = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                   .grad_clip = 1.0f };

/* Depends only on (tensor name, kind, index), so every rank and layout agrees. */
static float value_of(const char *name, int kind, size_t i)
{
    return ((float)(ckpt_test_hash(name, (uint64_t)kind, i) >> 40) / 16777216.0f - 0.5f) * 0.05f;
}

static int rank_main(const char *root)
{
    pt_comm *comm;
    pt_comm_opts co = { .provider = NULL, .timeout_ms = 60000, .config_hash = 7 };
    REQUIRE(pt_comm_create(&co, &comm));
    int rank = pt_comm_rank(comm);
    const pt_backend *be;
    pt_stream *s;
    REQUIRE(pt_backend_get("cpu", &be));
    REQUIRE(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &s));
    pt_model_config cfg;
    REQUIRE(pt_model_config_load("gpt2-tiny", &cfg));
    int stage = rank % 2, L = pt_model_n_layers(&cfg) - 1;
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 8, .n_slots = 1, .recompute = 0 };
    pt_model *m;
    pt_optim *o;
    REQUIRE(pt_model_create(&cfg, stage ? 3 : 0, stage ? L : 2, &mo, be, s, &m));
    REQUIRE(pt_optim_create(m, &adam, &o));
    ckpt_test_fill(m, o, be, s, value_of);
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 2, 1, 1, &sv));
    for (int64_t step = 5; step <= 20; step += 5) { /* keep 2: 15 prunes 5, 20 overwrites its shards */
        pt_train_state ts = { .step = step, .data_step = step, .seed = 3, .run_json = "{\"stages\":2,\"dp\":2}" };
        REQUIRE(pt_ckpt_save(sv, comm, &m, &o, 1, &ts));
    }
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_saver_destroy(sv);
    pt_optim_destroy(o);
    pt_model_destroy(m);
    be->stream_destroy(s);
    pt_comm_destroy(comm);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--rank") == 0)
        return rank_main(argv[2]);
    char root[] = "/tmp/pt_ckpt_multirank_XXXXXX";
    if (!mkdtemp(root))
        return 1;
    char *child[] = { argv[0], "--rank", root, NULL };
    int code = -1;
    pt_launch_opts lo = { .nproc = 4, .nodes = 1, .node_rank = 0, .master = NULL };
    REQUIRE(pt_launch(&lo, child, &code));
    char dir[600];
    snprintf(dir, sizeof dir, "%s/step_000020", root);
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    int per_rank[4] = { 0 }, n_wte = 0;
    for (int i = 0; i < man->n_entries; i++) {
        per_rank[man->entries[i].rank]++;
        n_wte += strcmp(man->entries[i].name, "wte.weight") == 0;
    }
    if (man->n_ranks != 4 || per_rank[2] || per_rank[3] || !per_rank[0] || !per_rank[1] || n_wte != 3) {
        fprintf(stderr, "manifest: %d ranks, tensors per rank %d %d %d %d, wte x%d\n", man->n_ranks, per_rank[0],
                per_rank[1], per_rank[2], per_rank[3], n_wte);
        failures++;
    }
    pt_ckpt_manifest_destroy(man);
    int64_t *steps;
    int n;
    REQUIRE(pt_ckpt_list(root, &steps, &n));
    if (n != 2 || steps[0] != 15 || steps[1] != 20) {
        fprintf(stderr, "expected steps 15 and 20, found %d checkpoints\n", n);
        failures++;
    }
    for (int r = 0; r < 4; r++) { /* step 10's shards, pruned by 20's commit, wait in recycle/ */
        char path[700];
        snprintf(path, sizeof path, "%s/recycle/shard-%d.ptz", root, r);
        if (access(path, F_OK) != 0) {
            fprintf(stderr, "%s is missing\n", path);
            failures++;
        }
    }
    free(steps);

    const pt_backend *be;
    pt_stream *s;
    REQUIRE(pt_backend_get("cpu", &be));
    REQUIRE(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &s));
    pt_model_config cfg;
    REQUIRE(pt_model_config_load("gpt2-tiny", &cfg));
    int L = pt_model_n_layers(&cfg) - 1;
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 8, .n_slots = 1, .recompute = 0 };
    /* 1 chunk, then 3 chunks */
    int firsts[2][3] = { { 0 }, { 0, 2, 4 } }, lasts[2][3] = { { L }, { 1, 3, L } }, counts[2] = { 1, 3 };
    for (int layout = 0; layout < 2; layout++) {
        pt_model *m[3];
        pt_optim *o[3];
        for (int i = 0; i < counts[layout]; i++) {
            REQUIRE(pt_model_create(&cfg, firsts[layout][i], lasts[layout][i], &mo, be, s, &m[i]));
            REQUIRE(pt_optim_create(m[i], &adam, &o[i]));
        }
        pt_train_state ts;
        REQUIRE(pt_ckpt_load_ex(root, m, o, counts[layout], &ts, NULL, NULL, NULL));
        for (int i = 0; i < counts[layout]; i++) {
            if (!ckpt_test_matches(m[i], o[i], be, s, value_of, layout ? "3 chunks" : "1 chunk", i) || pt_optim_steps_done(o[i]) != 20)
                failures++;
            pt_optim_destroy(o[i]);
            pt_model_destroy(m[i]);
        }
        if (ts.step != 20 || !ts.run_json || !strstr(ts.run_json, "\"dp\":2")) {
            fprintf(stderr, "train state: step %lld run %s\n", (long long)ts.step, ts.run_json ? ts.run_json : "-");
            failures++;
        }
        free((char *)ts.run_json);
    }
    be->stream_destroy(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "ckpt.multirank: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.multirank: ok\n");
    return 0;
}

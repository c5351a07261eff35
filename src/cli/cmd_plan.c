/* `pipetrain plan`: partition a model across devices and predict its step time, bubble,
 * tokens/s, MFU and per-stage memory. Prints a table, or the plan as JSON (--json, --output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/json.h"
#include "pipetrain/model.h"
#include "pipetrain/partition.h"
#include "pipetrain/schedule.h"
#include "pipetrain/train.h"

static void fmt_count(char *buf, size_t cap, double n)
{
    if (n >= 1e9)
        snprintf(buf, cap, "%.2fB", n / 1e9);
    else if (n >= 1e6)
        snprintf(buf, cap, "%.1fM", n / 1e6);
    else if (n >= 1e3)
        snprintf(buf, cap, "%.1fK", n / 1e3);
    else
        snprintf(buf, cap, "%.0f", n);
}

static void fmt_time(char *buf, size_t cap, double s)
{
    if (s >= 1)
        snprintf(buf, cap, "%.3f s", s);
    else if (s >= 1e-3)
        snprintf(buf, cap, "%.2f ms", s * 1e3);
    else
        snprintf(buf, cap, "%.1f us", s * 1e6);
}

/* "emb+b0-2", "b3-5", "b10-11+head", "emb+b0-3+head"; with a split head its shards by number and
 * the rows of wte they multiply by: "b4-5+LM head 1/4 (wte rows 0-12543)", "LM head 2-4/4 (...)" */
static void fmt_layers(char *buf, size_t cap, const pt_model_config *cfg, int first, int last)
{
    const int head0 = cfg->n_layer + 1, K = pt_model_head_layers(cfg);
    int n = 0;
    buf[0] = 0;
    if (first == 0)
        n += snprintf(buf + n, cap - (size_t)n, "emb");
    const int b0 = first < 1 ? 1 : first, b1 = last > head0 - 1 ? head0 - 1 : last;
    if (b0 <= b1 && n < (int)cap) {
        if (b0 == b1)
            n += snprintf(buf + n, cap - (size_t)n, "%sb%d", n ? "+" : "", b0 - 1);
        else
            n += snprintf(buf + n, cap - (size_t)n, "%sb%d-%d", n ? "+" : "", b0 - 1, b1 - 1);
    }
    if (last < head0 || n >= (int)cap)
        return;
    const int s0 = first > head0 ? first - head0 : 0, s1 = last - head0; /* shards s0..s1 */
    if (K == 1 || (s0 == 0 && s1 == K - 1)) {
        snprintf(buf + n, cap - (size_t)n, "%shead", n ? "+" : "");
        return;
    }
    int v0, v1, unused;
    pt_model_head_shard_rows(cfg, s0, &v0, &unused);
    pt_model_head_shard_rows(cfg, s1, &unused, &v1);
    if (s0 == s1)
        snprintf(buf + n, cap - (size_t)n, "%sLM head %d/%d (wte rows %d-%d)", n ? "+" : "", s0 + 1, K, v0, v1 - 1);
    else
        snprintf(buf + n, cap - (size_t)n, "%sLM head %d-%d/%d (wte rows %d-%d)", n ? "+" : "", s0 + 1, s1 + 1, K, v0,
                 v1 - 1);
}

static void print_candidates(const pt_plan_candidate *cand, int n)
{
    printf("\n  auto compared (the best plan of each schedule, simulated):\n");
    printf("    %-12s %-18s %3s %5s %9s %11s %7s %10s %6s %9s\n", "schedule", "P x T x V x D", "B", "M", "recompute",
           "step", "bubble", "tokens/s", "MFU", "memory");
    for (int i = 0; i < n; i++) {
        const pt_plan_candidate *c = &cand[i];
        if (!c->fits) {
            printf("    %-12s no plan: no stage count or micro-batch size fits memory and layers\n", c->schedule);
            continue;
        }
        char shape[48], t[32];
        snprintf(shape, sizeof shape, "%d x %d x %d x %d", c->n_stages, c->n_tp > 0 ? c->n_tp : 1, c->n_chunks,
                 c->n_replicas);
        fmt_time(t, sizeof t, c->pred_step_time_s);
        printf("    %-12s %-18s %3d %5d %9d %11s %6.1f%% %10.0f %5.1f%% %6.1f GB%s\n", c->schedule, shape,
               c->micro_batch_size, c->n_microbatches, c->n_recompute, t, 100 * c->pred_bubble, c->pred_tokens_per_s,
               100 * c->pred_mfu, c->pred_max_mem_bytes / 1e9, i == 0 ? "  <- chosen" : "");
    }
}

static int n_recompute(const pt_plan *p)
{
    int n = 0;
    for (int k = 0; k < p->n_vstages; k++)
        n += p->recompute[k] != 0;
    return n;
}

static void print_table(const pt_plan *p, const pt_model_config *cfg, const pt_device *dev, double cap)
{
    char a[32], b[32], c[32];
    fmt_count(a, sizeof a, (double)p->n_params_total);
    printf("plan %s: %s (%s parameters) on %d x %s (%d node(s) x %d), schedule %s (%s backward)\n", p->method,
           cfg->name[0] ? cfg->name : "model", a, p->n_stages * p->n_tp * p->n_replicas, dev->name, p->n_nodes,
           p->devices_per_node, p->schedule, pt_plan_fused_only(p) ? "fused" : "split");
    char tps[32] = "";
    if (p->n_tp > 1)
        snprintf(tps, sizeof tps, " x %d tensor", p->n_tp);
    printf("  %d stage(s)%s x %d chunk(s) x %d replica(s); %d micro-batches of %d x %d tokens per replica; "
           "memory cap %.2f GB%s\n",
           p->n_stages, tps, p->n_chunks, p->n_replicas, p->n_microbatches, p->micro_batch_size, p->seq_len, cap / 1e9,
           !p->zero                ? ""
           : p->n_replicas > 1     ? "; --zero 1: each replica holds 1/D of the AdamW moments"
                                   : "; --zero 1 with one replica: nothing to shard");
    if (p->n_tp > 1) {
        char t[32];
        fmt_time(t, sizeof t, p->pred_tp_comm_s);
        printf("  tensor parallel: T = %d ranks per stage inside a node (global rank (d x P + s) x T + t), sequence "
               "parallelism %s; TP collectives %s per step on the critical path (intra-node link, not overlapped); "
               "devices = %d stages x %d tensor x %d replicas\n",
               p->n_tp, p->sp ? "on" : "off", t, p->n_stages, p->n_tp, p->n_replicas);
        printf("  train it: pipetrain train --plan FILE (or --stages %d --tp %d --dp %d%s); docs/parallelism.md\n",
               p->n_stages, p->n_tp, p->n_replicas, p->sp ? " --sp" : "");
    }
    printf("\n");
    double tmax = 0;
    for (int k = 0; k < p->n_vstages; k++)
        tmax = p->pred_time_s[k] > tmax ? p->pred_time_s[k] : tmax;
    int w_holds = 18; /* the "holds" column: as wide as its longest entry (head shards name their rows) */
    for (int k = 0; k < p->n_vstages; k++) {
        char holds[96];
        fmt_layers(holds, sizeof holds, cfg, p->first_layer[k], p->last_layer[k]);
        w_holds = (int)strlen(holds) > w_holds ? (int)strlen(holds) : w_holds;
    }
    printf("  %-5s %-4s %-5s %-7s %-*s %9s %10s %11s %6s %-9s %s\n", "chunk", "rank", "local", "layers", w_holds,
           "holds", "params", "memory", "time/mb", "share", "recompute", "link after");
    for (int k = 0; k < p->n_vstages; k++) {
        int rank, chunk;
        pt_plan_vstage_place(p, k, &rank, &chunk);
        char layers[24], holds[96];
        snprintf(layers, sizeof layers, "%d-%d", p->first_layer[k], p->last_layer[k]);
        fmt_layers(holds, sizeof holds, cfg, p->first_layer[k], p->last_layer[k]);
        fmt_count(a, sizeof a, (double)p->n_params[k]);
        snprintf(b, sizeof b, "%.2f GB", p->pred_mem_bytes[k] / 1e9);
        fmt_time(c, sizeof c, p->pred_time_s[k]);
        const char *link = k + 1 == p->n_vstages ? "-" : p->boundary_inter[k] ? "inter-node" : "intra-node";
        int r_next = -1, ch_next;
        if (k + 1 < p->n_vstages)
            pt_plan_vstage_place(p, k + 1, &r_next, &ch_next);
        if (r_next == rank)
            link = "same rank";
        printf("  %-5d %-4d %-5d %-7s %-*s %9s %10s %11s %5.0f%% %-9s %s\n", k, rank, chunk, layers, w_holds, holds, a, b, c,
               tmax > 0 ? 100.0 * p->pred_time_s[k] / tmax : 0.0, p->recompute[k] ? "yes" : "no", link);
    }
    printf("\n  memory per rank:");
    int peak = 0;
    for (int r = 0; r < p->n_stages; r++)
        peak = p->pred_rank_mem_bytes[r] > p->pred_rank_mem_bytes[peak] ? r : peak;
    for (int r = 0; r < p->n_stages && r < 16; r++)
        printf(" %.2f", p->pred_rank_mem_bytes[r] / 1e9);
    printf("%s GB; peak %.2f GB per device (rank %d)\n", p->n_stages > 16 ? " ..." : "",
           p->pred_rank_mem_bytes[peak] / 1e9, peak);
    printf("  rank %d by kind:", peak);
    for (int q = 0; q < PT_MEM_KINDS; q++) {
        const double v = p->pred_rank_mem_kind[(size_t)peak * PT_MEM_KINDS + q];
        if (q != PT_MEM_OTHER || v > 0) /* GB as above; MB where a kind is under 0.1 GB */
            printf(v >= 1e8 || v == 0 ? "%s %s %.2f GB" : "%s %s %.2f MB", q ? "," : "", pt_mem_kind_name(q),
                   v >= 1e8 || v == 0 ? v / 1e9 : v / 1e6);
    }
    printf("\n");
    fmt_time(a, sizeof a, p->pred_step_time_s);
    fmt_time(b, sizeof b, p->pred_comm_s);
    fmt_time(c, sizeof c, p->pred_optim_s);
    printf("  predicted step time %s (data-parallel all-reduce %s, optimizer %s), bubble %.1f%%, %.0f tokens/s, "
           "MFU %.1f%%\n",
           a, b, c, 100.0 * p->pred_bubble, p->pred_tokens_per_s, 100.0 * p->pred_mfu);
    printf("  chosen: P %d, T %d, D %d, V %d, M %d, B %d, recompute %d of %d chunks%s; predicted MFU %.1f%%, peak "
           "memory %.2f GB per device\n",
           p->n_stages, p->n_tp, p->n_replicas, p->n_chunks, p->n_microbatches, p->micro_batch_size, n_recompute(p),
           p->n_vstages, p->sp ? ", sequence parallel" : "", 100.0 * p->pred_mfu, p->pred_rank_mem_bytes[peak] / 1e9);
    const pt_published_config *pub = pt_published_find(cfg->name, p->n_stages * p->n_tp * p->n_replicas);
    if (pub)
        printf("  published: %s on %d %s: P %d, T %d, D %d, %d sequences of %d tokens per step, %s (%s)\n",
               pub->name, pub->gpus, pub->device, pub->P, pub->T, pub->D, pub->global_batch, pub->seq_len,
               pub->utilization, pub->source);
    /* A slowest chunk of one layer cannot be made smaller: say what that costs. */
    int slow;
    double share, balance;
    if (pt_plan_single_layer_bound(p, &slow, &share, &balance)) {
        char holds[96];
        fmt_layers(holds, sizeof holds, cfg, p->first_layer[slow], p->last_layer[slow]);
        printf("  note: chunk %d is a single layer (%s) with %.0f%% of the work: no split into %d chunks balances "
               "them better than %.0f%% (slowest chunk against the mean); fewer stages balance better\n",
               slow, holds, 100.0 * share, p->n_vstages, 100.0 * balance);
        if (p->first_layer[slow] == cfg->n_layer + 1 && pt_model_head_layers(cfg) == 1)
            printf("  note: --head-split K (or auto) makes the LM head K layers (vocabulary shards) that stages can "
                   "share\n");
    }
}

int pt_cmd_plan(int argc, char **argv)
{
    const char *model = NULL, *device = "cpu", *method = "time", *schedule = NULL, *layout = NULL, *costs = NULL;
    const char *output = NULL, *recompute = "auto", *precision = NULL;
    int gpus = 1, nodes = 1, stages = 0, chunks = 0, mb = 0, mbs = 0, gb = 0, seq = 0, json = 0, head_split = 0;
    int zero = 0, tp = 0, sp = 0;
    const char *head_split_arg = NULL, *head_chunk_arg = NULL;
    size_t mem = 0;
    pt_opt opts[] = {
        { "model", PT_OPT_STRING, &model, "NAME|FILE",
          "preset (gpt2, gpt2-xl, gpt3-175b, llama3-8b, llama3-70b, llama3-405b, ...) or JSON config", 0 },
        { "gpus", PT_OPT_INT, &gpus, "G", "devices in all (stages x tensor x replicas)", 0 },
        { "tp", PT_OPT_INT, &tp, "T",
          "tensor-parallel ranks per stage (Megatron-style, inside one node; must divide the heads, the MLP "
          "width, the padded vocabulary and the devices per node); 0: auto searches 1, 2, 4, 8, other methods "
          "use 1 (train runs it: --tp, docs/parallelism.md)",
          0 },
        { "sp", PT_OPT_FLAG, &sp, NULL,
          "sequence parallelism with --tp: norms and residuals on 1/T of the sequence (activations / T)", 0 },
        { "nodes", PT_OPT_INT, &nodes, "N", "nodes the devices are spread over (G/N per node)", 0 },
        { "device", PT_OPT_STRING, &device, "cpu|h100|h200|FILE", "device preset or JSON device file", 0 },
        { "precision", PT_OPT_STRING, &precision, "fp32|bf16",
          "price the memory and messages as train --precision allocates and sends them (bf16: the weights' "
          "bf16 copy in fp32 storage, 2-byte stage messages, the blocks' internals in the bf16 stash; fp32: "
          "none of them); default: the device's own accounting (the h100/h200 presets: a 2-byte weight copy, "
          "4-byte activations and messages)",
          0 },
        { "mem-limit", PT_OPT_BYTES, &mem, "BYTES", "memory per device (24G, 512M); default: the device's", 0, "mem" },
        { "partition", PT_OPT_STRING, &method, "METHOD", "uniform, params, time, memory or auto", 0 },
        { "schedule", PT_OPT_STRING, &schedule, "NAME",
          "gpipe, 1f1b, interleaved, looped-bfs, zb-h1, zb-h2, zbv; default 1f1b (auto searches)", 0 },
        { "stages", PT_OPT_INT, &stages, "P", "pipeline stages; 0: G / replicas (auto searches)", 0 },
        { "chunks", PT_OPT_INT, &chunks, "V", "chunks per rank; 0: 2 for interleaved and zbv, else 1", 0 },
        { "micro-batches", PT_OPT_INT, &mb, "M", "micro-batches per step and replica; 0: global batch / (D x B), else 4 x P", 0 },
        { "micro-batch-size", PT_OPT_INT, &mbs, "B", "sequences per micro-batch; 0: 1 (auto searches)", 0 },
        { "global-batch", PT_OPT_INT, &gb, "N", "sequences per step over all replicas; 0: unset (auto uses 2 x G)", 0 },
        { "seq-len", PT_OPT_INT, &seq, "T", "tokens per sequence; 0: the model's context", 0 },
        { "recompute", PT_OPT_STRING, &recompute, "auto|never|always", "activation recomputation per chunk", 0 },
        { "zero", PT_OPT_INT, &zero, "0|1",
          "1: each of the D replicas holds 1/D of its stage's AdamW moments (ZeRO-1, as train --zero 1), so plans "
          "that only fit that way are found; 0: every replica holds all of them",
          0 },
        { "layout", PT_OPT_STRING, &layout, "N,N,...", "manual layers per chunk (embedding and head layers count)", 0 },
        { "head-split", PT_OPT_STRING, &head_split_arg, "K|auto",
          "cut the LM head into K vocabulary-shard layers that stages can share, for a head that dominates the "
          "step (small model, large vocabulary); auto: the K with the shortest predicted step; default: the "
          "config file's, 1 unless it says",
          0 },
        { "head-chunk", PT_OPT_STRING, &head_chunk_arg, "ROWS|auto|off",
          "the LM head's token rows at a time, as train --head-chunk: a chunked head keeps no logits per "
          "micro-batch and makes its loss gradient in the forward; auto (default): chunks of about 256 MiB of "
          "logits (off with --head-split K > 1 and on --tp > 1 candidates)",
          0 },
        { "layer-costs", PT_OPT_STRING, &costs, "FILE", "measured layer times from 'pipetrain profile-layers'", 0,
          "costs" },
        { "output", PT_OPT_STRING, &output, "FILE",
          "also write the plan JSON here; 'pipetrain train --plan FILE' runs it", 0 },
        { "json", PT_OPT_FLAG, &json, NULL, "print the plan as JSON", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain plan --model NAME|CONFIG --gpus G [--nodes N] [--device D] [--mem-limit BYTES] [--partition METHOD] ...",
        "Partition a model's layers into pipeline stages and predict step time, bubble, tokens/s, MFU and memory.",
        opts, (int)(sizeof opts / sizeof opts[0]),
        "examples:\n  pipetrain plan --model gpt2-xl --gpus 8 --device h100 --partition memory --mem-limit 16G\n"
        "  pipetrain plan --model gpt3-175b --gpus 1024 --nodes 128 --device h100 --partition auto --global-batch 1536\n"
        "  pipetrain plan --model llama3-70b --gpus 512 --nodes 64 --device h100 --partition auto --seq-len 8192 "
        "--global-batch 1024\n"
        "  pipetrain plan --model gpt2-tiny --gpus 2 --seq-len 128 --output plan.json && pipetrain train --plan plan.json\n"
        "  pipetrain plan --model gpt2-tiny --gpus 2 --layout 3,3 --json\n"
        "  pipetrain plan --model gpt2-xl --gpus 8 --stages 2 --device h100 --zero 1 --mem-limit 16G\n"
        "  pipetrain plan --model gpt2-small --gpus 2 --head-split 4 --micro-batch-size 2 --seq-len 256\n"
        "  pipetrain plan --model llama3-405b --gpus 16384 --nodes 2048 --device h100 --partition auto --seq-len 8192 "
        "--global-batch 2048\n"
        "  pipetrain plan --model llama3-70b --gpus 64 --nodes 8 --device h100 --tp 8 --sp --partition auto --seq-len "
        "8192 --global-batch 64"
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (!model)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--model is required (a preset such as gpt2, or a JSON config)"));
    for (size_t i = 0; layout && i < sizeof opts / sizeof opts[0]; i++)
        if (opts[i].seen && (strcmp(opts[i].name, "partition") == 0 || strcmp(opts[i].name, "stages") == 0))
            return pt_cli_finish(pt_fail(PT_EINVAL, "--layout fixes the split and the stage count; drop --%s",
                                         opts[i].name));
    if (zero != 0 && zero != 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--zero %d: use 0 (every replica holds all AdamW moments) or 1 (each "
                                                "holds 1/D)",
                                     zero));
    if (gpus < 1 || nodes < 1 || gpus % nodes != 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--gpus %d over --nodes %d: the devices must split evenly over the nodes",
                                     gpus, nodes));
    if (tp < 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--tp %d: use 0 (auto searches), 1 (none) or the ranks per stage", tp));
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.zero = zero;
    rq.n_tp = tp;
    rq.sp = sp;
    if (strcmp(recompute, "auto") == 0)
        rq.recompute = -1;
    else if (strcmp(recompute, "never") == 0)
        rq.recompute = 0;
    else if (strcmp(recompute, "always") == 0)
        rq.recompute = 1;
    else
        return pt_cli_finish(pt_fail(PT_EINVAL, "--recompute '%s': use auto, never or always", recompute));

    pt_model_config cfg;
    pt_device dev;
    pt_topology topo;
    pt_layer_times *lt = NULL;
    pt_plan *p = NULL;
    cJSON *j = NULL;
    pt_plan_candidate cand[8];
    int n_cand = 0;
    PT_TRY(pt_args_head_split(head_split_arg, &head_split), out);
    if (head_split == PT_HEAD_SPLIT_AUTO && layout) {
        st = pt_fail(PT_EINVAL, "--head-split auto chooses the layers, which --layout names; give --head-split K");
        goto out;
    }
    PT_TRY(pt_model_config_load(model, &cfg), out);
    PT_TRY(pt_model_config_set_head_split(&cfg, head_split), out); /* 0, auto: the config's own for now */
    PT_TRY(pt_device_load(device, &dev), out);
    if (precision) {
        pt_precision prec;
        if (pt_precision_parse(precision, &prec) != PT_OK) {
            st = pt_cli_as_usage(pt_fail(PT_EINVAL, "--precision %s: use fp32 or bf16 (or leave it out for the "
                                                    "device's own accounting)",
                                         precision));
            goto out;
        }
        pt_device_set_precision(&dev, prec == PT_PRECISION_BF16, 1);
    }
    PT_TRY(pt_topology_init(&topo, &dev, nodes, gpus / nodes), out);
    if (costs)
        PT_TRY(pt_cli_as_usage(pt_layer_times_load(costs, &lt)), out);
    if (head_split == PT_HEAD_SPLIT_AUTO && lt) /* a cost file was measured with its own split */
        PT_TRY(pt_model_config_set_head_split(&cfg, lt->cfg.head_split > 1 ? lt->cfg.head_split : 1), out);
    int head_chunk = 0;
    PT_TRY(pt_args_head_chunk(head_chunk_arg, &head_chunk), out);
    if (head_chunk > 0 && (head_split > 1 || (head_split == 0 && cfg.head_split > 1))) {
        st = pt_fail(PT_EINVAL, "--head-chunk %d needs an unsplit LM head, but the head is split into %d vocabulary "
                                "shards; drop --head-chunk or use --head-split 1",
                     head_chunk, pt_model_head_layers(&cfg));
        goto out;
    }
    const double cap = mem ? (double)mem : dev.mem_bytes;
    if (layout) {
        cfg.head_chunk = pt_head_chunk_resolve(head_chunk, &cfg, 1, pt_sched_forwards_first(schedule));
        const int V = chunks > 0 ? chunks : 1;
        PT_TRY(pt_plan_from_layout(&cfg, layout, V, &p), out);
        if (gpus % p->n_stages != 0) {
            st = pt_fail(PT_EINVAL, "--layout has %d stages, which does not divide --gpus %d", p->n_stages, gpus);
            goto out;
        }
        const int ltp = tp > 0 ? tp : 1;
        PT_TRY(pt_plan_check_tp(&cfg, ltp, gpus / nodes), out);
        if (gpus % (p->n_stages * ltp) != 0) {
            st = pt_fail(PT_EINVAL, "--layout has %d stages x --tp %d, which does not divide --gpus %d", p->n_stages,
                         ltp, gpus);
            goto out;
        }
        p->n_tp = ltp;
        p->sp = ltp > 1 && sp;
        p->n_replicas = gpus / (p->n_stages * ltp);
        p->zero = zero;
        p->micro_batch_size = mbs > 0 ? mbs : 1;
        p->n_microbatches = mb > 0 ? mb : gb > 0 ? gb / (p->n_replicas * p->micro_batch_size) : 4 * p->n_stages;
        p->seq_len = seq > 0 ? seq : cfg.max_seq_len;
        if (p->n_microbatches < 1) {
            st = pt_fail(PT_EINVAL, "--global-batch %d is smaller than %d replicas x micro-batch size %d", gb,
                         p->n_replicas, p->micro_batch_size);
            goto out;
        }
        snprintf(p->schedule, sizeof p->schedule, "%s", schedule ? schedule : V > 1 ? "interleaved" : "1f1b");
        for (int k = 0; k < p->n_vstages; k++)
            p->recompute[k] = rq.recompute == 1;
        PT_TRY(pt_plan_price(p, &cfg, &dev, &topo, lt), out);
        if (rq.recompute == -1 && pt_plan_check_memory(p, cap) != PT_OK) {
            /* as for the other methods: recompute where that is what fits */
            for (int k = 0; k < p->n_vstages; k++)
                p->recompute[k] = 1;
            PT_TRY(pt_plan_price(p, &cfg, &dev, &topo, lt), out);
        }
        PT_TRY(pt_plan_check_memory(p, cap), out);
    } else {
        rq.method = method;
        rq.n_devices = gpus;
        rq.n_stages = stages;
        rq.n_chunks = chunks;
        rq.schedule = schedule;
        rq.micro_batch_size = mbs;
        rq.n_microbatches = mb;
        rq.global_batch = gb;
        rq.seq_len = seq;
        rq.mem_cap_bytes = (double)mem;
        rq.candidates = cand;
        rq.max_candidates = (int)(sizeof cand / sizeof cand[0]);
        rq.n_candidates = &n_cand;
        if (head_split == PT_HEAD_SPLIT_AUTO && !lt) {
            int k = 1;
            double t_k = 0, t_1 = 0;
            PT_TRY(pt_plan_best_head_split(&cfg, &dev, &topo, &rq, &k, &t_k, &t_1), out);
            PT_TRY(pt_model_config_set_head_split(&cfg, k), out);
            if (!json)
                printf("head split: auto chose %d LM-head layer%s (predicted step %.2f ms; %.2f ms with one)\n", k,
                       k == 1 ? "" : "s", 1e3 * t_k, 1e3 * t_1);
        }
        cfg.head_chunk = pt_head_chunk_resolve(head_chunk, &cfg, 1, pt_sched_forwards_first(schedule));
        PT_TRY(pt_plan_make(&cfg, &dev, &topo, lt, &rq, &p), out);
    }
    if (json || output) {
        PT_TRY(pt_plan_to_json(p, &j), out);
        /* the model as given, so that 'train --plan' runs (or refuses) the same one */
        if (!cJSON_AddStringToObject(j, "model", model)) {
            st = pt_fail(PT_ENOMEM, "out of host memory writing the plan");
            goto out;
        }
    }
    if (output)
        PT_TRY(pt_json_write_file(output, j, 0), out);
    if (json) {
        char *text = cJSON_Print(j);
        if (!text) {
            st = pt_fail(PT_ENOMEM, "out of host memory printing the plan");
            goto out;
        }
        printf("%s\n", text);
        free(text);
    } else {
        print_table(p, &cfg, &dev, cap);
        if (precision)
            printf("  priced as train --precision %s allocates and sends: %s\n", precision,
                   dev.stash_elem_bytes > 0 ? "the weights' bf16 copy in fp32 storage, 2-byte stage messages, what "
                                              "backward reads kept in 2 bytes (the bf16 stash)"
                                            : "no weight copy, 4-byte activations and stage messages");
        if (n_cand > 0)
            print_candidates(cand, n_cand);
    }
out:
    cJSON_Delete(j);
    pt_plan_destroy(p);
    pt_layer_times_destroy(lt);
    return pt_cli_finish(st);
}

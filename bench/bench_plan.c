/* `pipetrain bench plan`: how long the planner takes on a large problem, and what it predicts.
 * Default: GPT-3 175B (96 blocks, width 12288, 2048 tokens) on 1024 H100 (128 nodes x 8) with
 * `auto` and GPT-3's global batch of 1536 sequences. Prints one line per repetition and a summary;
 * with --json, one JSON object per line. --model llama3-70b / llama3-405b with --seq-len 8192 plans
 * the Llama 3 shapes (docs/planning.md, "Llama 3 70B and 405B").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/model.h"
#include "pipetrain/partition.h"
#include "pipetrain/timeutil.h"

/* Plans one case `reps` times and prints the timing and the chosen plan (or why none fits). */
static pt_status run_case(const pt_model_config *cfg, const char *device, int gpus, int nodes, const char *method,
                          const char *schedule, int gb, int seq, int reps, int json)
{
    pt_device dev;
    pt_topology topo;
    PT_CHECK(pt_device_load(device, &dev));
    PT_CHECK(pt_topology_init(&topo, &dev, nodes, gpus / nodes));
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.method = method;
    rq.n_devices = gpus;
    rq.global_batch = gb;
    rq.schedule = schedule;
    rq.seq_len = seq;
    double times[100] = { 0 };
    pt_plan *best = NULL;
    pt_status st = PT_OK;
    char why[512] = "";
    for (int r = 0; r < reps; r++) {
        pt_plan *p = NULL;
        const int64_t t0 = pt_now_ns();
        st = pt_plan_make(cfg, &dev, &topo, NULL, &rq, &p);
        times[r] = (double)(pt_now_ns() - t0) * 1e-9;
        if (st != PT_OK && st != PT_ENOMEM)
            return st;
        if (st == PT_ENOMEM)
            snprintf(why, sizeof why, "%s", pt_last_error());
        pt_plan_destroy(best);
        best = p;
    }
    for (int i = 1; i < reps; i++) /* median */
        for (int k = i; k > 0 && times[k] < times[k - 1]; k--) {
            const double t = times[k];
            times[k] = times[k - 1];
            times[k - 1] = t;
        }
    const double med = times[reps / 2];
    if (!best) {
        if (json) {
            cJSON *o = cJSON_CreateObject();
            if (o) {
                cJSON_AddStringToObject(o, "bench", "plan");
                cJSON_AddStringToObject(o, "model", cfg->name);
                cJSON_AddStringToObject(o, "device", dev.name);
                cJSON_AddNumberToObject(o, "gpus", gpus);
                cJSON_AddNumberToObject(o, "nodes", nodes);
                cJSON_AddNumberToObject(o, "seq_len", seq > 0 ? seq : cfg->max_seq_len);
                cJSON_AddStringToObject(o, "method", method);
                cJSON_AddNumberToObject(o, "plan_time_s", med);
                cJSON_AddBoolToObject(o, "fits", 0);
                cJSON_AddStringToObject(o, "reason", why);
                char *text = cJSON_PrintUnformatted(o);
                if (text)
                    printf("%s\n", text);
                free(text);
                cJSON_Delete(o);
            }
        } else {
            printf("%s on %d x %s (%d nodes), %s: searched in %.3f s (median of %d); no plan fits:\n  %s\n", cfg->name,
                   gpus, dev.name, nodes, method, med, reps, why);
        }
        return PT_OK;
    }
    double mem_max = 0;
    for (int r = 0; r < best->n_stages; r++)
        mem_max = best->pred_rank_mem_bytes[r] > mem_max ? best->pred_rank_mem_bytes[r] : mem_max;
    int n_rc = 0;
    for (int k = 0; k < best->n_vstages; k++)
        n_rc += best->recompute[k];
    if (json) {
        printf("{\"bench\":\"plan\",\"model\":\"%s\",\"params\":%lld,\"device\":\"%s\",\"gpus\":%d,\"nodes\":%d,"
               "\"seq_len\":%d,\"method\":\"%s\",\"plan_time_s\":%.6f,\"fits\":true,\"stages\":%d,\"tensor\":%d,\"chunks\":%d,\"replicas\":%d,"
               "\"schedule\":\"%s\",\"micro_batch_size\":%d,\"micro_batches\":%d,\"recompute_chunks\":%d,"
               "\"pred_step_time_s\":%.6f,\"pred_bubble\":%.6f,\"pred_tokens_per_s\":%.1f,\"pred_mfu\":%.6f,"
               "\"pred_max_mem_bytes\":%.0f}\n",
               cfg->name, (long long)best->n_params_total, dev.name, gpus, nodes, best->seq_len, method, med, best->n_stages,
               best->n_tp, best->n_chunks, best->n_replicas, best->schedule, best->micro_batch_size, best->n_microbatches, n_rc,
               best->pred_step_time_s, best->pred_bubble, best->pred_tokens_per_s, best->pred_mfu, mem_max);
    } else {
        printf("%s (%.1fB parameters) on %d x %s (%d nodes), %s: planned in %.3f s (median of %d)\n", cfg->name,
               (double)best->n_params_total / 1e9, gpus, dev.name, nodes, method, med, reps);
        printf("  chose %s, %d stages x %d tensor x %d chunk(s) x %d replicas, micro-batch %d x %d, %d micro-batches, "
               "%d chunk(s) recomputed\n",
               best->schedule, best->n_stages, best->n_tp, best->n_chunks, best->n_replicas, best->micro_batch_size,
               best->seq_len, best->n_microbatches, n_rc);
        printf("  predicted step %.3f s, bubble %.1f%%, %.0f tokens/s, MFU %.1f%%, peak memory %.1f GB per device\n",
               best->pred_step_time_s, 100 * best->pred_bubble, best->pred_tokens_per_s, 100 * best->pred_mfu,
               mem_max / 1e9);
    }
    pt_plan_destroy(best);
    return PT_OK;
}

int pt_bench_plan(int argc, char **argv)
{
    const char *model = "gpt3-175b", *device = NULL, *method = "auto", *schedule = NULL;
    int gpus = 1024, nodes = 128, gb = 1536, seq = 0, reps = 3, json = 0;
    pt_opt opts[] = {
        { "model", PT_OPT_STRING, &model, "NAME|FILE", "model preset or JSON config", 0 },
        { "gpus", PT_OPT_INT, &gpus, "G", "devices in all", 0 },
        { "nodes", PT_OPT_INT, &nodes, "N", "nodes (G/N devices each)", 0 },
        { "device", PT_OPT_STRING, &device, "NAME|FILE", "device preset or JSON file (default: h100, then h200)", 0 },
        { "partition", PT_OPT_STRING, &method, "METHOD", "partition method", 0 },
        { "schedule", PT_OPT_STRING, &schedule, "NAME", "fix the schedule (default: searched)", 0 },
        { "global-batch", PT_OPT_INT, &gb, "N", "sequences per optimizer step", 0 },
        { "seq-len", PT_OPT_INT, &seq, "T",
          "tokens per sequence; 0: the model's context (llama3-405b's is 131072: give 8192 as Meta's pre-training)", 0 },
        { "reps", PT_OPT_INT, &reps, "N", "repetitions (the median is reported)", 0 },
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per line", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench plan [--json] [options]",
                         "Time the planner on a large model (default GPT-3 175B on 1024 devices, 128 nodes x 8, "
                         "H100 then H200) and report the chosen plan's predicted MFU and bubble.",
                         opts, (int)(sizeof opts / sizeof opts[0]), NULL };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (reps < 1 || reps > 100 || gpus < 1 || nodes < 1 || gpus % nodes != 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--reps must be 1..100 and --gpus a multiple of --nodes"));
    pt_model_config cfg;
    st = pt_model_config_load(model, &cfg);
    if (st == PT_OK)
        st = run_case(&cfg, device ? device : "h100", gpus, nodes, method, schedule, gb, seq, reps, json);
    if (st == PT_OK && !device)
        st = run_case(&cfg, "h200", gpus, nodes, method, schedule, gb, seq, reps, json);
    return pt_cli_finish(st);
}

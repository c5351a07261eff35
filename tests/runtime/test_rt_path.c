/* tests/runtime/test_rt_path.c — the runtime's one transfer-path selection (src/runtime/rt_xfer.h,
 * rt_path_select), on made-up GPU lists: no device needed. */
#include <stdio.h>
#include <string.h>

#include "rt_xfer.h"

static int n_fail;

static rt_gpu_id gpu(const char *host, int device, unsigned char tag)
{
    rt_gpu_id g;
    memset(&g, 0, sizeof g);
    memset(g.uuid, tag, sizeof g.uuid);
    g.device = device;
    snprintf(g.host, sizeof g.host, "%s", host);
    return g;
}

static void expect(const char *name, int dev_mem, int built, int allowed, const rt_gpu_id *ids, int n, rt_path want,
                   const char *why_has)
{
    char why[256] = "";
    rt_path got = rt_path_select(dev_mem, built, allowed, ids, n, why, sizeof why);
    int ok = got == want && (why_has == NULL || strstr(why, why_has) != NULL);
    printf("%s %s: %s (%s)\n", ok ? "ok  " : "FAIL", name, rt_path_name(got), why);
    if (!ok) {
        printf("     want %s%s%s\n", rt_path_name(want), why_has ? " with a reason containing " : "",
               why_has ? why_has : "");
        n_fail++;
    }
}

int main(void)
{
    rt_gpu_id own[4] = { gpu("a", 0, 1), gpu("a", 1, 2), gpu("b", 0, 3), gpu("b", 1, 4) };
    /* ranks 1 and 3 on the same GPU (two stages on one device of host a) */
    rt_gpu_id shared[4] = { gpu("a", 0, 1), gpu("a", 1, 2), gpu("a", 2, 3), gpu("a", 1, 2) };
    /* the same device ordinal on two hosts is two GPUs */
    rt_gpu_id two_hosts[2] = { gpu("a", 0, 1), gpu("b", 0, 2) };
    rt_gpu_id one_gpu[2] = { gpu("a", 0, 7), gpu("a", 0, 7) };
    /* rank 2 was started with PT_NCCL=0 (or another build): nobody may use NCCL */
    rt_gpu_id one_off[4] = { gpu("a", 0, 1), gpu("a", 1, 2), gpu("b", 0, 3), gpu("b", 1, 4) };
    one_off[2].no_nccl = 1;

    expect("cpu backend", 0, 1, 1, NULL, 4, RT_PATH_HOST, "host memory");
    expect("cpu backend, GPU list ignored", 0, 1, 1, own, 4, RT_PATH_HOST, NULL);
    expect("own GPUs", 1, 1, 1, own, 4, RT_PATH_NCCL, "own GPU");
    expect("same ordinal on two hosts", 1, 1, 1, two_hosts, 2, RT_PATH_NCCL, NULL);
    expect("two ranks share a GPU", 1, 1, 1, shared, 4, RT_PATH_STAGED, "ranks 1 and 3 share GPU 1 on a");
    expect("one GPU machine", 1, 1, 1, one_gpu, 2, RT_PATH_STAGED, "ranks 0 and 1 share GPU 0");
    expect("no NCCL in the build", 1, 0, 1, own, 4, RT_PATH_STAGED, "no NCCL");
    expect("PT_NCCL=0", 1, 1, 0, own, 4, RT_PATH_STAGED, "PT_NCCL=0");
    expect("one rank", 1, 1, 1, own, 1, RT_PATH_STAGED, "one rank");
    expect("a rank without NCCL", 1, 1, 1, one_off, 4, RT_PATH_STAGED, "rank 2 cannot use NCCL");
    expect("no list", 1, 1, 1, NULL, 4, RT_PATH_STAGED, "no list");
    /* a NULL reason buffer is allowed */
    if (rt_path_select(1, 1, 1, own, 4, NULL, 0) != RT_PATH_NCCL) {
        printf("FAIL NULL reason buffer\n");
        n_fail++;
    }
    if (strcmp(rt_path_name(RT_PATH_STAGED), "host-staged") != 0 || strcmp(rt_path_name(RT_PATH_NCCL), "nccl") != 0) {
        printf("FAIL path names\n");
        n_fail++;
    }
    return n_fail != 0;
}

/* `pipetrain launch --nproc N [--nodes K|MIN:MAX --node-rank R --master ADDR:PORT] -- COMMAND ...`:
 * starts N local ranks of COMMAND with the rank environment (see include/pipetrain/comm.h). */
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/comm.h"

/* 1 when `cmd` (a command's argv[0]) is this program: named pipetrain, or the same file. */
static int is_this_program(const char *cmd)
{
    const char *base = strrchr(cmd, '/');
    if (strcmp(base ? base + 1 : cmd, "pipetrain") == 0)
        return 1;
    struct stat a, b;
    return strchr(cmd, '/') && stat(cmd, &a) == 0 && stat("/proc/self/exe", &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int pt_cmd_launch(int argc, char **argv) { return pt_cmd_launch_checked(argc, argv, NULL); }

/* The value of option `name` in a train command's arguments ("--name V" or "--name=V"), or NULL. */
static const char *train_opt(char **args, int n, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < n; i++) {
        if (strncmp(args[i], "--", 2) != 0 || strncmp(args[i] + 2, name, len) != 0)
            continue;
        if (args[i][2 + len] == '=')
            return args[i] + 3 + len;
        if (args[i][2 + len] == 0 && i + 1 < n)
            return args[i + 1];
    }
    return NULL;
}

/* --nodes "K" or "MIN:MAX" -> *min_nodes, *nodes (K: both K). */
static pt_status parse_nodes(const char *v, int *min_nodes, int *nodes)
{
    char *end;
    long a = strtol(v, &end, 10), b = a;
    if (end != v && *end == ':') {
        const char *m = end + 1;
        b = strtol(m, &end, 10);
        if (end == m)
            end = (char *)m - 1; /* "2:" */
    }
    if (end == v || *end != 0)
        return pt_fail(PT_EINVAL, "--nodes %s: give a node count K, or MIN:MAX for a job that may shrink to MIN nodes "
                                  "(e.g. --nodes 2:4)", v);
    if (a < 1 || b < 1 || a > 4096 || b > 4096)
        return pt_fail(PT_EINVAL, "--nodes %s: node counts are 1 or more (at most 4096)", v);
    if (a > b)
        return pt_fail(PT_EINVAL, "--nodes %s: MIN %ld is more than MAX %ld; give --nodes %ld:%ld", v, a, b, b, a);
    *min_nodes = (int)a;
    *nodes = (int)b;
    return PT_OK;
}

/* The train command's integer option `name`, given explicitly, in *v: 0 ok; -1 not given or not a
 * number. */
static int train_int(char **args, int n, const char *name, int *v)
{
    const char *s = train_opt(args, n, name);
    char *end;
    long x = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end != 0 || x < 1 || x > 1 << 20)
        return -1;
    *v = (int)x;
    return 0;
}

int pt_cmd_launch_checked(int argc, char **argv, pt_cli_launch_check_fn check)
{
    int nproc = 1, nodes = 1, min_nodes = 1, node_rank = 0, max_restarts = 0;
    double rejoin_timeout = 300;
    const char *master = NULL, *nodes_arg = "1", *nnodes_arg = NULL;
    pt_opt opts[] = {
        { "nproc", PT_OPT_INT, &nproc, "N", "ranks to start on this node", 0 },
        { "nodes", PT_OPT_STRING, &nodes_arg, "K|MIN:MAX",
          "nodes in the job (run one launcher per node); MIN:MAX with --max-restarts: start on MAX, and when a node "
          "does not rejoin within --rejoin-timeout continue on the others while at least MIN remain (fewer "
          "data-parallel replicas, the global batch kept by more micro-batches)", 0 },
        { "nnodes", PT_OPT_STRING, &nnodes_arg, "K|MIN:MAX", "the same as --nodes (torchrun's spelling)", 0 },
        { "node-rank", PT_OPT_INT, &node_rank, "R", "this node's index, 0..K-1 (its ranks are R*N .. R*N+N-1)", 0 },
        { "master", PT_OPT_STRING, &master, "ADDR:PORT",
          "rank 0's rendezvous address (default: 127.0.0.1 and a free port; required with --nodes > 1)", 0 },
        { "max-restarts", PT_OPT_INT, &max_restarts, "N",
          "for `-- pipetrain train --run-dir DIR ...`: when a rank fails, stop the others and restart the ranks from "
          "the newest checkpoint, up to N times; with --nodes, node 0's launcher leads every node's (they meet at "
          "the --master port + 1)", 0 },
        { "rejoin-timeout", PT_OPT_DOUBLE, &rejoin_timeout, "SECONDS",
          "with --max-restarts and --nodes: how long to wait for a node that dropped out to come back (default 300)",
          0 },
    };
    pt_cmd_spec spec = {
        "pipetrain launch --nproc N [--nodes K|MIN:MAX --node-rank R --master ADDR:PORT] -- COMMAND [ARGS...]",
        "Start N ranks of COMMAND on this node. Each gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,\n"
        "MASTER_ADDR, MASTER_PORT and IPATH_NO_BACKTRACE=1; their output lines are prefixed with \"[rank R] \".\n"
        "SIGINT and SIGTERM are passed on: ranks of 'pipetrain train' stop after the same step, save a\n"
        "checkpoint and exit 130 (SIGINT) or 143 (SIGTERM), as the launcher then does; a second signal, a\n"
        "second or more later, kills the ranks at once. A rank that exits 130 or 143 has stopped, not\n"
        "failed. When a rank fails, the others are stopped (TERM, then KILL after 5 s) and the launcher\n"
        "exits with that rank's status, naming it.",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "examples:\n"
        "  pipetrain launch --nproc 2 -- pipetrain train --stages 2\n"
        "  # two nodes, two ranks each (run on each node with its --node-rank):\n"
        "  pipetrain launch --nproc 2 --nodes 2 --node-rank 0 --master 10.0.0.1:29500 -- pipetrain train --stages 4\n"
        "  # may shrink to one node when the other does not come back within 60 s (global batch kept):\n"
        "  pipetrain launch --nproc 2 --nodes 1:2 --node-rank 0 --master 10.0.0.1:29500 --max-restarts 3 \\\n"
        "      --rejoin-timeout 60 -- pipetrain train --stages 2 --dp 2 --micro-batches 4 --micro-batch-size 2 \\\n"
        "      --run-dir run\n",
    };
    char *pos[257];
    int n_pos = 0, done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, pos, (int)(sizeof pos / sizeof pos[0]) - 2, &n_pos, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (n_pos == 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "launch: no command given; put it after --, e.g. "
                                                "`pipetrain launch --nproc 2 -- pipetrain train`"));
    pos[n_pos] = NULL;
    st = parse_nodes(nnodes_arg ? nnodes_arg : nodes_arg, &min_nodes, &nodes);
    if (st == PT_OK && min_nodes < nodes && max_restarts <= 0)
        st = pt_fail(PT_EINVAL, "--nodes %d:%d shrinks a job that restarts: add --max-restarts N (or give --nodes %d)",
                     min_nodes, nodes, nodes);
    if (st != PT_OK)
        return pt_cli_finish(st);
    /* `-- pipetrain train ...`: the whole job checked here, before any rank starts (job_check.c) */
    if (check && n_pos >= 2 && strcmp(pos[1], "train") == 0 && is_this_program(pos[0]) && nproc >= 1 && nodes >= 1) {
        int code = check(n_pos - 1, pos + 1, nproc, node_rank * nproc, nproc * nodes);
        if (code != 0)
            return code;
    }
    pt_launch_opts o = { .nproc = nproc, .nodes = nodes, .node_rank = node_rank, .master = master };
    int code = 1;
    pt_cli_restart rs = { .max_restarts = max_restarts, .rejoin_timeout_s = rejoin_timeout };
    char ckpt_buf[4096];
    if (max_restarts != 0) {
        if (max_restarts < 0)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--max-restarts %d: give 0 (no restarts) or more", max_restarts));
        if (nodes > 1 && !master)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--max-restarts with --nodes %d needs --master ADDR:PORT (the node "
                                                    "agents meet at node 0, port PORT + 1)",
                                         nodes));
        if (n_pos < 2 || strcmp(pos[1], "train") != 0 || !is_this_program(pos[0]))
            return pt_cli_finish(pt_fail(PT_EINVAL, "--max-restarts restarts a training job: the command must be "
                                                    "`pipetrain train ... --run-dir DIR`"));
        rs.run_dir = train_opt(pos + 2, n_pos - 2, "run-dir");
        if (!rs.run_dir)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--max-restarts needs the train command's --run-dir DIR (the ranks "
                                                    "of every restart must find the same checkpoints); add one"));
        for (int i = 2; i < n_pos; i++)
            if (strcmp(pos[i], "--no-ckpt") == 0)
                return pt_cli_finish(pt_fail(PT_EINVAL, "--max-restarts with --no-ckpt would restart from step 0 "
                                                        "every time; drop --no-ckpt"));
        const char *ck = train_opt(pos + 2, n_pos - 2, "ckpt-dir");
        if (!ck) {
            snprintf(ckpt_buf, sizeof ckpt_buf, "%s/ckpt", rs.run_dir);
            ck = ckpt_buf;
        }
        rs.ckpt_dir = ck;
        const char *steps = train_opt(pos + 2, n_pos - 2, "steps");
        rs.steps = steps ? strtoll(steps, NULL, 10) : 0;
        if (min_nodes < nodes) { /* a shrink rewrites --dp and --micro-batches; B must stay as it is */
            if (train_opt(pos + 2, n_pos - 2, "plan"))
                return pt_cli_finish(pt_fail(PT_EINVAL, "--nodes %d:%d re-plans the job when it shrinks, but --plan "
                                                        "fixes its replicas and micro-batches; give --stages, --dp, "
                                                        "--micro-batches and --micro-batch-size instead",
                                             min_nodes, nodes));
            int mbs;
            if (train_int(pos + 2, n_pos - 2, "dp", &rs.dp) != 0 ||
                train_int(pos + 2, n_pos - 2, "micro-batches", &rs.micro_batches) != 0 ||
                train_int(pos + 2, n_pos - 2, "micro-batch-size", &mbs) != 0)
                return pt_cli_finish(pt_fail(PT_EINVAL, "--nodes %d:%d keeps the global batch on a shrink by "
                                                        "rewriting the train command's --dp and --micro-batches: give "
                                                        "--dp D, --micro-batches M and --micro-batch-size B explicitly "
                                                        "(a step is M x B x D sequences)",
                                             min_nodes, nodes));
            if ((nproc * nodes) % rs.dp != 0)
                return pt_cli_finish(pt_fail(PT_EINVAL, "--dp %d does not divide the %d ranks of --nodes %d x --nproc "
                                                        "%d", rs.dp, nproc * nodes, nodes, nproc));
            rs.min_nodes = min_nodes;
        }
    }
    st = pt_cli_launch_restarting(&o, pos, n_pos, &rs, &code);
    if (st == PT_OK && (code == 128 + SIGINT || code == 128 + SIGTERM)) {
        fprintf(stderr, "pipetrain launch: the ranks stopped on %s (exit %d); rank 0's line above names the checkpoint; "
                        "continue with the same command and --resume\n",
                code == 128 + SIGINT ? "SIGINT" : "SIGTERM", code);
        return code;
    }
    if (st == PT_OK)
        return 0;
    fprintf(stderr, "pipetrain launch: %s\n", pt_last_error());
    if (st == PT_ECOMM)
        return code ? code : 1; /* a rank failed: pass its status on */
    return pt_status_exit_code(st);
}

/* `pipetrain bench NAME ...`: dispatches to bench/bench_<name>.c (compiled in when present; the
 * table is commands.c's, which hands it over). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f, const pt_cli_entry *benches)
{
    fprintf(f, "usage: pipetrain bench NAME [--json] [options]   (pipetrain bench NAME --help for each)\n\n"
               "Benchmarks print one JSON object per line with --json.\n\nbenchmarks:\n");
    for (const pt_cli_entry *b = benches; b->name; b++)
        fprintf(f, "  %-10s %s\n", b->name, b->summary);
}

int pt_cmd_bench(int argc, char **argv, const pt_cli_entry *benches)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout, benches);
        return argc < 2 ? 2 : 0;
    }
    for (const pt_cli_entry *b = benches; b->name; b++)
        if (strcmp(argv[1], b->name) == 0)
            return b->run(argc - 1, argv + 1);
    fprintf(stderr, "pipetrain: unknown benchmark '%s'; run 'pipetrain bench --help' for the list\n", argv[1]);
    return 2;
}

/* pipetrain — the command-line program: dispatches to one subcommand (the table is commands.c's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pipetrain/modules.h"

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("pipetrain %s (built with: %s)\n", PT_VERSION_STRING, pt_modules_describe());
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain COMMAND [options]   (pipetrain COMMAND --help for each)\n\ncommands:\n");
    for (const pt_cli_entry *c = pt_cli_commands(); c->name; c++)
        fprintf(f, "  %-15s %s\n", c->name, c->summary);
    fprintf(f, "  %-15s %s\n", "version", "print the version and the optional modules built");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (const pt_cli_entry *c = pt_cli_commands(); c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "pipetrain: unknown command '%s'; run 'pipetrain --help' for the list\n", argv[1]);
    return 2;
}

/* ferry: one binary, many subcommands. This file only parses the first argument and dispatches;
 * each subcommand lives with its part (src/tools, src/vmm, src/migration). */
#include "commands.h"

#include <stdio.h>
#include <string.h>

static const FerryCommand *const commands[] = {
    &ferry_cmd_version, &ferry_cmd_analyze, &ferry_cmd_run,
    &ferry_cmd_schema,  &ferry_cmd_explore, &ferry_cmd_migrate,
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry <command> [options]\n\n"
                 "Live migration of KVM virtual machines with hotplugged devices.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\n'ferry <command> --help' describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return ferry_cmd_version.run(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i]->name))
            return commands[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "ferry: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

/* `ferry schema <subcommand>`: a small dispatcher so each schema tool (check, dump, ...) is one
 * table entry with its own file. */
#include "commands.h"
#include "schema_check.h"
#include "schema_dump.h"

#include <stdio.h>
#include <string.h>

typedef struct SchemaSub {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} SchemaSub;

static const SchemaSub subs[] = {
    {"check", "report what breaks migration between two schemas (QEMU or Ferry)",
     ferry_schema_check_main},
    {"dump", "write the JSON schema of every device of a machine type", ferry_schema_dump_main},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry schema <subcommand> [options]\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        fprintf(out, "  %-8s %s\n", subs[i].name, subs[i].summary);
    fprintf(out, "\n'ferry schema <subcommand> --help' describes a subcommand.\n");
}

static int schema_run(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (!strcmp(argv[1], subs[i].name))
            return subs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ferry schema: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

const FerryCommand ferry_cmd_schema = {
    .name = "schema",
    .summary = "device-state schemas: dump them, check migration compatibility",
    .run = schema_run,
};

/* ferry schema dump: writes the schema of a machine type's device state, stably formatted, so
 * golden files (tests/compat/) and `ferry schema check` can compare versions of Ferry. */
#include "schema_dump.h"

#include "ferry/machine/device.h"
#include "ferry/machine/machine.h"
#include "ferry/state/schema.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: ferry schema dump [--machine TYPE] [-o FILE]\n\n"
               "Write the JSON schema of every device-state section of a machine type.\n\n"
               "  -m, --machine TYPE  machine type (default: the newest)\n"
               "  -o, --output FILE   write to FILE instead of standard output\n"
               "  -h, --help          show this help\n\nmachine types:\n");
    for (size_t i = 0; ferry_machine_type_at(i); i++)
        fprintf(f, "  %-10s %s\n", ferry_machine_type_at(i)->name,
                ferry_machine_type_at(i)->summary);
}

int ferry_schema_dump_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"machine", required_argument, NULL, 'm'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *machine = NULL, *output = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            machine = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ferry schema dump: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    const FerryMachineType *t =
        machine ? ferry_machine_type_find(machine) : ferry_machine_type_default();
    if (!t) {
        fprintf(stderr, "ferry schema dump: unknown machine type '%s' (known:", machine);
        for (size_t i = 0; ferry_machine_type_at(i); i++)
            fprintf(stderr, " %s", ferry_machine_type_at(i)->name);
        fprintf(stderr, ")\n");
        return 2;
    }
    FerryError err = {0};
    FerryRegistry *reg = ferry_machine_type_schema_registry(t, &err);
    if (!reg) {
        fprintf(stderr, "ferry schema dump: %s\n", err.msg);
        return 1;
    }
    char *text = ferry_schema_dumps(reg, t->name);
    ferry_registry_free(reg);
    if (!text) {
        fprintf(stderr, "ferry schema dump: out of memory\n");
        return 1;
    }
    int rc = 0;
    FILE *f = output ? fopen(output, "w") : stdout;
    if (!f) {
        fprintf(stderr, "ferry schema dump: cannot open '%s': %m\n", output);
        rc = 1;
    } else {
        if (fputs(text, f) == EOF || (output ? fclose(f) : fflush(f)) != 0) {
            fprintf(stderr, "ferry schema dump: write failed: %m\n");
            rc = 1;
        }
    }
    free(text);
    return rc;
}

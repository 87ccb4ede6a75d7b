/* ferry version: producer version, stream and schema format versions. */
#include "commands.h"
#include "ferry/state/schema.h"

#include <stdio.h>

static int run_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("ferry %s\n", FERRY_VERSION);
    printf("schema format %d\n", FERRY_SCHEMA_FORMAT_VERSION);
    return 0;
}

const FerryCommand ferry_cmd_version = {"version", "print version information", run_version};

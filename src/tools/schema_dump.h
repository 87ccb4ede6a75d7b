/* `ferry schema dump [--machine TYPE] [-o FILE]`: the JSON schema (docs/schema-format.md) of
 * every device-state section of a machine type. Wired into `ferry schema` by the dispatcher. */
#ifndef FERRY_TOOLS_SCHEMA_DUMP_H
#define FERRY_TOOLS_SCHEMA_DUMP_H

/* argv[0] is "dump". Returns 0 on success, 1 on failure, 2 on a usage error. */
int ferry_schema_dump_main(int argc, char **argv);

#endif

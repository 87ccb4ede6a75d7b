/* Subcommands of the ferry binary. Each returns the process exit status:
 * 0 success, 1 failure (invalid input, failed operation), 2 usage error. Only main() exits. */
#ifndef FERRY_CLI_COMMANDS_H
#define FERRY_CLI_COMMANDS_H

typedef struct FerryCommand {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} FerryCommand;

/* Each tool defines its command in its own file (src/tools/<tool>.c). */
extern const FerryCommand ferry_cmd_version;
extern const FerryCommand ferry_cmd_analyze;
extern const FerryCommand ferry_cmd_run;
extern const FerryCommand ferry_cmd_schema;
extern const FerryCommand ferry_cmd_explore;
extern const FerryCommand ferry_cmd_migrate;

#endif

/* The interleaving explorer (ferry explore, docs/explorer.md): every sequence of management,
 * guest and migration actions on the pure machine model, with invariants checked at each state. */
#ifndef FERRY_TOOLS_EXPLORE_H
#define FERRY_TOOLS_EXPLORE_H

#include "ferry/error.h"
#include "ferry/machine/machine.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum FerryExploreSearch {
    FERRY_EXPLORE_BFS, /* level by level: the first violation found has a shortest trace */
    FERRY_EXPLORE_DFS, /* depth first with a depth-aware visited set: less memory */
} FerryExploreSearch;

/* How the switchover builds the destination (bit mask of FERRY_EXPLORE_DST_*). */
#define FERRY_EXPLORE_DST_CMDLINE 0x1u /* devices on the destination's command line */
#define FERRY_EXPLORE_DST_ADD     0x2u /* device_add in inmigrate, as libvirt does */
#define FERRY_EXPLORE_DST_STALE   0x4u /* device_add whose plug left hotplug leftovers (S12) */
#define FERRY_EXPLORE_DST_ALL     0x7u

typedef struct FerryExploreConfig {
    const char *machine_type;  /* NULL: the newest */
    uint32_t slots;            /* card slots, 1..8; 0 = 2 */
    uint32_t cpu_slots;        /* hotpluggable vCPU slots besides the boot vCPU, 0..4 */
    uint32_t mem_slots;        /* memory-block slots, 0..4 */
    uint32_t depth;            /* management and migration actions per trace, the switchover
                                * included; 0 = 8. Guest steps are free unless count_guest. */
    bool count_guest;          /* guest protocol steps count towards depth as well */
    FerryMachinePolicy policy; /* seeded bad policies; all false = Ferry's real behaviour */
    FerryExploreSearch search;
    uint32_t destinations; /* FERRY_EXPLORE_DST_* mask; 0 = all */
    FILE *progress;        /* per-depth counts while running (NULL: quiet) */
} FerryExploreConfig;

typedef struct FerryExploreResult {
    uint64_t states;      /* distinct source states reached (by hash) */
    uint64_t transitions; /* actions applied, refused ones included */
    uint64_t refused;     /* actions the model refused (each checked to fail with an error) */
    uint64_t switchovers; /* destinations built, loaded and run to quiescence */
    uint32_t depth;       /* deepest level completed */
    double seconds;       /* wall-clock time of the search */
    bool violation;
    char message[FERRY_ERROR_MSG_MAX]; /* the violated invariant, naming device and connector */
    char trace[4096];   /* "add 0; cont; migrate; switchover add": the actions that reach it */
    uint32_t trace_len; /* number of actions in `trace`, guest steps included */
} FerryExploreResult;

/* Search every trace of up to cfg->depth actions from a source in prelaunch with one boot vCPU
 * and cfg->slots empty card slots. Stops at the first violation (BFS: a shortest trace).
 * Returns 0 when the search ran (res says whether an invariant broke), negative on bad
 * configuration or out of memory. */
int ferry_explore_run(const FerryExploreConfig *cfg, FerryExploreResult *res, FerryError *err);

/* Apply the actions of `trace` (separated by ';' or newlines; '#' starts a comment) from the same
 * initial state, checking the same invariants; with `log` non-NULL, print each action and what
 * it did. res->violation says whether an invariant broke. Returns negative when the trace does
 * not parse or an action is not enabled where it appears. */
int ferry_explore_replay(const FerryExploreConfig *cfg, const char *trace, FILE *log,
                         FerryExploreResult *res, FerryError *err);

/* "real", or a comma-separated list of: list-append, inmigrate-hotplug, edge, conn-subsection
 * (the four seeded bad policies, each as docs/explorer.md defines it), keep-dest-connectors,
 * keep-dest-events (single switches). */
int ferry_explore_policy_parse(const char *text, FerryMachinePolicy *p, FerryError *err);
/* The canonical --policy text of `p` into buf ("real" when all false). Returns buf. */
char *ferry_explore_policy_format(const FerryMachinePolicy *p, char *buf, size_t len);

#endif

/* ferry explore: exhaustive interleavings of hotplug, guest, reset and migration actions on the
 * machine model, with invariants at every state; prints the shortest trace of a violation. */
#include "ferry/tools/explore.h"

#include "commands.h"
#include "ferry/machine/device.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: ferry explore [options]\n"
        "       ferry explore [options] --replay TRACE|@FILE [--emit-c[=FILE]]\n\n"
        "Explores every sequence of up to D actions (device_add/device_del per slot, guest\n"
        "protocol steps, system_reset, migration start, switchover into a destination built\n"
        "from the command line, by device_add, or with stale plug leftovers) and checks the\n"
        "invariants of docs/explorer.md at every state.\n\n"
        "  --slots N          card slots (default 2, at most 8)\n"
        "  --cpu-slots N      hotpluggable vCPU slots besides the boot vCPU (default 0, max 4)\n"
        "  --mem-slots N      memory-block slots (default 0, at most 4)\n"
        "  --depth D          management and migration actions per trace, the switchover\n"
        "                     included (default 8); guest protocol steps are free\n"
        "  --count-guest      guest protocol steps count towards the depth as well\n"
        "  --machine TYPE     machine type (default: the newest)\n"
        "  --policy LIST      real (default), or seeded bad policies: list-append,\n"
        "                     inmigrate-hotplug, edge, conn-subsection (comma-separated;\n"
        "                     single switches: inmigrate-hotplug-path, conn-subsection-only,\n"
        "                     keep-dest-connectors, keep-dest-events)\n"
        "  --destinations L   cmdline,add,stale (default: all)\n"
        "  --bfs | --dfs      search order (default bfs: shortest counterexample)\n"
        "  --progress         per-depth counts on stderr\n"
        "  --replay TRACE     apply 'add 0; cont; ...' (or @FILE) and check it\n"
        "  --emit-c[=FILE]    with a violation, print (or write to FILE) a cmocka test that\n"
        "                     replays it\n\n"
        "Exit status: 0 no violation, 1 violation (or error), 2 usage.\n");
}

static int parse_u32(const char *opt, const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !*s || *end || v > 100000) {
        fprintf(stderr, "ferry explore: %s: '%s' is not a number\n", opt, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_destinations(const char *s, uint32_t *out)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    *out = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "cmdline"))
            *out |= FERRY_EXPLORE_DST_CMDLINE;
        else if (!strcmp(t, "add"))
            *out |= FERRY_EXPLORE_DST_ADD;
        else if (!strcmp(t, "stale"))
            *out |= FERRY_EXPLORE_DST_STALE;
        else {
            fprintf(stderr, "ferry explore: --destinations: unknown '%s' (cmdline, add, stale)\n",
                    t);
            return -1;
        }
    }
    return *out ? 0 : -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int ch;
    while (m && (ch = fgetc(f)) != EOF)
        fputc(ch, m);
    if (m)
        fclose(m);
    fclose(f);
    return buf;
}

/* The command line that reproduces the run (for replay lines). */
static void options_text(const FerryExploreConfig *cfg, char *buf, size_t len)
{
    char pol[256];
    ferry_explore_policy_format(&cfg->policy, pol, sizeof(pol));
    int n = snprintf(buf, len, "--slots %u", cfg->slots ? cfg->slots : 2);
    if (cfg->cpu_slots)
        n += snprintf(buf + n, len - (size_t)n, " --cpu-slots %u", cfg->cpu_slots);
    if (cfg->mem_slots)
        n += snprintf(buf + n, len - (size_t)n, " --mem-slots %u", cfg->mem_slots);
    snprintf(buf + n, len - (size_t)n, "%s%s --policy %s", cfg->machine_type ? " --machine " : "",
             cfg->machine_type ? cfg->machine_type : "", pol);
}

static void emit_c(FILE *out, const FerryExploreConfig *cfg, const FerryExploreResult *res)
{
    const FerryMachinePolicy *p = &cfg->policy;
    fprintf(out, "/* Replays the counterexample found by ferry explore: %s */\n", res->message);
    fprintf(out, "static void replay_counterexample(void **state)\n{\n    (void)state;\n");
    fprintf(out,
            "    FerryExploreConfig cfg = {.slots = %u, .cpu_slots = %u, .mem_slots = %u%s%s%s, "
            ".policy = {",
            cfg->slots ? cfg->slots : 2, cfg->cpu_slots, cfg->mem_slots,
            cfg->machine_type ? ", .machine_type = \"" : "",
            cfg->machine_type ? cfg->machine_type : "", cfg->machine_type ? "\"" : "");
    fprintf(out, "%s%s%s%s%s%s}};\n", p->events_load_append ? ".events_load_append = true, " : "",
            p->inmigrate_hotplug ? ".inmigrate_hotplug = true, " : "",
            p->edge_notify ? ".edge_notify = true, " : "",
            p->conn_state_subsection ? ".conn_state_subsection = true, " : "",
            p->keep_dest_connectors ? ".keep_dest_connectors = true, " : "",
            p->keep_dest_events ? ".keep_dest_events = true, " : "");
    fprintf(out, "    FerryExploreResult res;\n    FerryError err = {0};\n");
    fprintf(out, "    assert_int_equal(ferry_explore_replay(&cfg, \"%s\", NULL, &res, &err), 0);\n",
            res->trace);
    fprintf(out, "    assert_true(res.violation);\n");
    fprintf(out, "    cfg.policy = (FerryMachinePolicy){0}; /* the real policy passes */\n");
    fprintf(out, "    assert_int_equal(ferry_explore_replay(&cfg, \"%s\", NULL, &res, &err), 0);\n",
            res->trace);
    fprintf(out, "    assert_false(res.violation);\n}\n");
}

static int run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"slots", required_argument, NULL, 's'},
        {"depth", required_argument, NULL, 'd'},
        {"machine", required_argument, NULL, 'm'},
        {"policy", required_argument, NULL, 'p'},
        {"bfs", no_argument, NULL, 'B'},
        {"dfs", no_argument, NULL, 'D'},
        {"replay", required_argument, NULL, 'r'},
        {"emit-c", optional_argument, NULL, 'c'},
        {"progress", no_argument, NULL, 'P'},
        {"destinations", required_argument, NULL, 'v'},
        {"count-guest", no_argument, NULL, 'g'},
        {"cpu-slots", required_argument, NULL, 'C'},
        {"mem-slots", required_argument, NULL, 'M'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    FerryExploreConfig cfg = {0};
    const char *replay = NULL;
    bool want_c = false;
    const char *c_path = NULL;
    FerryError err = {0};
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (parse_u32("--slots", optarg, &cfg.slots) < 0)
                return 2;
            if (cfg.slots < 1 || cfg.slots > 8) {
                fprintf(stderr, "ferry explore: --slots %u: between 1 and 8 card slots\n",
                        cfg.slots);
                return 2;
            }
            break;
        case 'd':
            if (parse_u32("--depth", optarg, &cfg.depth) < 0)
                return 2;
            if (cfg.depth < 1) {
                fprintf(stderr, "ferry explore: --depth 0: at least one action\n");
                return 2;
            }
            break;
        case 'm':
            if (!ferry_machine_type_find(optarg)) {
                fprintf(stderr, "ferry explore: --machine '%s': unknown machine type (", optarg);
                for (size_t i = 0; ferry_machine_type_at(i); i++)
                    fprintf(stderr, "%s%s", i ? ", " : "", ferry_machine_type_at(i)->name);
                fprintf(stderr, ")\n");
                return 2;
            }
            cfg.machine_type = optarg;
            break;
        case 'p':
            if (ferry_explore_policy_parse(optarg, &cfg.policy, &err) < 0) {
                fprintf(stderr, "ferry explore: %s\n", err.msg);
                return 2;
            }
            break;
        case 'B':
            cfg.search = FERRY_EXPLORE_BFS;
            break;
        case 'D':
            cfg.search = FERRY_EXPLORE_DFS;
            break;
        case 'r':
            replay = optarg;
            break;
        case 'c':
            want_c = true;
            c_path = optarg;
            break;
        case 'P':
            cfg.progress = stderr;
            break;
        case 'g':
            cfg.count_guest = true;
            break;
        case 'C':
            if (parse_u32("--cpu-slots", optarg, &cfg.cpu_slots) < 0)
                return 2;
            if (cfg.cpu_slots > 4) {
                fprintf(stderr, "ferry explore: --cpu-slots %u: at most 4\n", cfg.cpu_slots);
                return 2;
            }
            break;
        case 'M':
            if (parse_u32("--mem-slots", optarg, &cfg.mem_slots) < 0)
                return 2;
            if (cfg.mem_slots > 4) {
                fprintf(stderr, "ferry explore: --mem-slots %u: at most 4\n", cfg.mem_slots);
                return 2;
            }
            break;
        case 'v':
            if (parse_destinations(optarg, &cfg.destinations) < 0)
                return 2;
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
        fprintf(stderr, "ferry explore: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char opts[512], pol[256];
    options_text(&cfg, opts, sizeof(opts));
    FerryExploreResult res;
    int rc;
    if (replay) {
        char *text = replay[0] == '@' ? read_file(replay + 1) : strdup(replay);
        if (!text) {
            fprintf(stderr, "ferry explore: cannot read trace '%s'\n", replay + 1);
            return 1;
        }
        rc = ferry_explore_replay(&cfg, text, stdout, &res, &err);
        free(text);
        if (rc < 0) {
            fprintf(stderr, "ferry explore: %s\n", err.msg);
            return 1;
        }
    } else {
        printf("ferry explore: %s, %u card + %u vCPU + %u memory slots, depth %u, policy %s, "
               "%s\n",
               cfg.machine_type ? cfg.machine_type : "newest machine type",
               cfg.slots ? cfg.slots : 2, cfg.cpu_slots, cfg.mem_slots, cfg.depth ? cfg.depth : 8,
               ferry_explore_policy_format(&cfg.policy, pol, sizeof(pol)),
               cfg.search == FERRY_EXPLORE_DFS ? "dfs" : "bfs");
        fflush(stdout);
        rc = ferry_explore_run(&cfg, &res, &err);
        if (rc < 0) {
            fprintf(stderr, "ferry explore: %s\n", err.msg);
            return 1;
        }
        printf("explored %llu states (%llu transitions, %llu refused actions checked, %llu "
               "switchovers) to depth %u in %.2f s\n",
               (unsigned long long)res.states, (unsigned long long)res.transitions,
               (unsigned long long)res.refused, (unsigned long long)res.switchovers, res.depth,
               res.seconds);
    }
    if (!res.violation) {
        printf("no invariant violated\n");
        return 0;
    }
    printf("VIOLATION after %u action(s): %s\n", res.trace_len, res.message);
    printf("trace: %s\n", res.trace);
    printf("replay: ferry explore %s --replay '%s'\n", opts, res.trace);
    if (want_c) {
        FILE *out = c_path ? fopen(c_path, "w") : stdout;
        if (!out) {
            fprintf(stderr, "ferry explore: --emit-c=%s: %s\n", c_path, strerror(errno));
            return 2;
        }
        emit_c(out, &cfg, &res);
        if (c_path && fclose(out) != 0) {
            fprintf(stderr, "ferry explore: --emit-c=%s: %s\n", c_path, strerror(errno));
            return 2;
        }
        if (c_path)
            printf("cmocka test written to %s\n", c_path);
    }
    return 1;
}

const FerryCommand ferry_cmd_explore = {
    .name = "explore",
    .summary = "explore hotplug x migration x reset interleavings on the machine model",
    .run = run,
};

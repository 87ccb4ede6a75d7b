/* ferry explore's engine: no counterexample for Ferry's real policy, a counterexample for each
 * seeded bad policy (which replays, and passes under the real policy), and the trace files. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
// clang-format on

#include "ferry/tools/explore.h"

#ifndef TRACE_DIR
#error "TRACE_DIR must name tests/unit/tools/explore-traces"
#endif

static FerryExploreConfig config(const char *policy, const char *machine, uint32_t depth,
                                 FerryExploreSearch search)
{
    FerryExploreConfig cfg = {
        .machine_type = machine, .slots = 2, .depth = depth, .search = search};
    FerryError err = {0};
    assert_int_equal(ferry_explore_policy_parse(policy, &cfg.policy, &err), 0);
    return cfg;
}

static FerryExploreResult explore(const char *policy, const char *machine, uint32_t depth,
                                  FerryExploreSearch search)
{
    FerryExploreConfig cfg = config(policy, machine, depth, search);
    FerryExploreResult res;
    FerryError err = {0};
    assert_int_equal(ferry_explore_run(&cfg, &res, &err), 0);
    if (res.violation)
        fprintf(stderr, "  %s on %s: %s\n    trace: %s\n", policy, machine, res.message, res.trace);
    return res;
}

/* The real policy: every invariant holds. The default run (ferry-2.0, BFS, depth 8), ferry-1.0
 * and DFS at smaller depths to keep the suite fast under sanitizers; docs/explorer.md has the
 * runs over the whole state space. */
static void real_policy_holds(void **state)
{
    (void)state;
    FerryExploreResult res = explore("real", "ferry-2.0", 8, FERRY_EXPLORE_BFS);
    assert_false(res.violation);
    assert_int_equal(res.depth, 8);
    assert_true(res.states > 5000); /* guest positions x plug states x migration phases */
    assert_true(res.switchovers > 1000);
    assert_true(res.refused > 1000); /* S10 refusals and repeated device_del were exercised */
    res = explore("real", "ferry-1.0", 6, FERRY_EXPLORE_BFS);
    assert_false(res.violation);
    assert_true(res.states > 1000);
    res = explore("real", "ferry-2.0", 5, FERRY_EXPLORE_DFS);
    assert_false(res.violation);
    assert_true(res.states > 1000);
}

/* vCPU and memory-block connectors follow the same protocol with other descriptions: the real
 * policy holds with one slot of each kind, and the edge policy loses a memory hotplug the same
 * way as a card's. */
static void all_resource_kinds(void **state)
{
    (void)state;
    FerryExploreConfig cfg = config("real", NULL, 4, FERRY_EXPLORE_BFS);
    cfg.slots = 1;
    cfg.cpu_slots = 1;
    cfg.mem_slots = 1;
    FerryExploreResult res;
    FerryError err = {0};
    assert_int_equal(ferry_explore_run(&cfg, &res, &err), 0);
    assert_false(res.violation);
    assert_true(res.states > 1000);
    cfg.policy.edge_notify = true;
    assert_int_equal(ferry_explore_run(&cfg, &res, &err), 0);
    assert_true(res.violation);
    assert_int_equal(ferry_explore_replay(&cfg, "cont; add mem 0", NULL, &res, &err), 0);
    assert_true(res.violation);
    assert_non_null(strstr(res.message, "'mem0' (connector 0x20000000)"));
    assert_true(ferry_explore_replay(&cfg, "cont; add cpu 0", NULL, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "'cpu N' (1..1)"));
}

/* Each seeded bad policy: found by BFS at a small depth, with a short trace that replays to a
 * violation and passes under the real policy. `expect` is a word the violation must contain. */
static void check_bad(const char *policy, const char *machine, const char *expect, uint32_t max_len)
{
    FerryExploreResult res = explore(policy, machine, 4, FERRY_EXPLORE_BFS);
    assert_true(res.violation);
    assert_non_null(strstr(res.message, expect));
    assert_true(res.trace_len >= 1 && res.trace_len <= max_len);

    FerryExploreConfig cfg = config(policy, machine, 4, FERRY_EXPLORE_BFS);
    FerryExploreResult rep;
    FerryError err = {0};
    assert_int_equal(ferry_explore_replay(&cfg, res.trace, NULL, &rep, &err), 0);
    assert_true(rep.violation);
    assert_string_equal(rep.message, res.message);

    cfg.policy = (FerryMachinePolicy){0};
    assert_int_equal(ferry_explore_replay(&cfg, res.trace, NULL, &rep, &err), 0);
    assert_false(rep.violation);

    /* depth-first search finds it as well (not necessarily as short) */
    res = explore(policy, machine, 4, FERRY_EXPLORE_DFS);
    assert_true(res.violation);
}

static void bad_list_append(void **state)
{
    (void)state;
    check_bad("list-append", "ferry-2.0", "event queues differ", 4);
    check_bad("list-append", "ferry-1.0", "event queues differ", 4);
}

static void bad_inmigrate_hotplug(void **state)
{
    (void)state;
    check_bad("inmigrate-hotplug", "ferry-2.0", "event queues differ", 4);
    check_bad("inmigrate-hotplug", "ferry-1.0", "differ", 4);
}

static void bad_edge(void **state)
{
    (void)state;
    check_bad("edge", "ferry-2.0", "event lost", 2);
}

static void bad_conn_subsection(void **state)
{
    (void)state;
    check_bad("conn-subsection", "ferry-2.0", "connector 0x30000000 differs", 4);
}

/* The inmigrate-hotplug counterexample needs a destination built by device_add: the same
 * policy with command-line destinations only has none (-device is always a coldplug). */
static void inmigrate_hotplug_needs_device_add(void **state)
{
    (void)state;
    FerryExploreConfig cfg = config("inmigrate-hotplug", "ferry-2.0", 5, FERRY_EXPLORE_BFS);
    cfg.destinations = FERRY_EXPLORE_DST_CMDLINE;
    FerryExploreResult res;
    FerryError err = {0};
    assert_int_equal(ferry_explore_run(&cfg, &res, &err), 0);
    assert_false(res.violation);
    cfg.destinations = FERRY_EXPLORE_DST_ADD;
    assert_int_equal(ferry_explore_run(&cfg, &res, &err), 0);
    assert_true(res.violation);
    assert_non_null(strstr(res.trace, "switchover add"));
}

/* Defence in depth: one layer switched off alone is masked by the others (docs/explorer.md). A
 * hotplug-path plug in inmigrate is cleaned before the load; ferry-2.0 streams every connector;
 * only ferry-1.0's subsection-only rule exposes a destination that keeps its connectors. */
static void single_layers_are_masked(void **state)
{
    (void)state;
    assert_false(explore("inmigrate-hotplug-path", "ferry-2.0", 5, FERRY_EXPLORE_BFS).violation);
    assert_false(explore("conn-subsection-only", "ferry-2.0", 5, FERRY_EXPLORE_BFS).violation);
    assert_false(explore("keep-dest-connectors", "ferry-2.0", 5, FERRY_EXPLORE_BFS).violation);
    FerryExploreResult res = explore("keep-dest-connectors", "ferry-1.0", 4, FERRY_EXPLORE_BFS);
    assert_true(res.violation);
    assert_non_null(strstr(res.message, "connector"));
    /* keeping the queue is not masked: without queued events the stream carries no list to
     * replace it, so the purge before the load is what removes stale events */
    assert_true(explore("keep-dest-events", "ferry-2.0", 4, FERRY_EXPLORE_BFS).violation);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Trace files: a first line "# policy: P" (P may be "real"), "# machine: T", "# expect: ok" or
 * "# expect: violation WORDS". Each replays as stated, and a violating one passes under the
 * real policy. */
static void trace_files(void **state)
{
    (void)state;
    const char *files[] = {
        "list-append.trace",     "inmigrate-hotplug.trace",    "edge.trace",
        "edge-migration.trace",  "conn-subsection.trace",      "del-readd-race.trace",
        "s05-mid-session.trace", "s06-unplug-in-flight.trace", "s04-cpu-mem.trace"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512], policy[64] = "real", machine[32] = "ferry-2.0", expect[128] = "";
        snprintf(path, sizeof(path), "%s/%s", TRACE_DIR, files[i]);
        const char *text = slurp(path);
        const char *p;
        if ((p = strstr(text, "# policy: ")))
            sscanf(p, "# policy: %63s", policy);
        if ((p = strstr(text, "# machine: ")))
            sscanf(p, "# machine: %31s", machine);
        uint32_t cpu_slots = 0, mem_slots = 0;
        if ((p = strstr(text, "# cpu-slots: ")))
            sscanf(p, "# cpu-slots: %u", &cpu_slots);
        if ((p = strstr(text, "# mem-slots: ")))
            sscanf(p, "# mem-slots: %u", &mem_slots);
        if ((p = strstr(text, "# expect: ")))
            sscanf(p, "# expect: %127[^\n]", expect);
        FerryExploreConfig cfg = config(policy, machine, 8, FERRY_EXPLORE_BFS);
        cfg.cpu_slots = cpu_slots;
        cfg.mem_slots = mem_slots;
        FerryExploreResult res;
        FerryError err = {0};
        int rc = ferry_explore_replay(&cfg, text, NULL, &res, &err);
        if (rc < 0)
            fprintf(stderr, "%s: %s\n", files[i], err.msg);
        assert_int_equal(rc, 0);
        bool want = !strncmp(expect, "violation", 9);
        if (res.violation != want)
            fprintf(stderr, "%s: %s\n", files[i], res.violation ? res.message : "no violation");
        assert_int_equal(res.violation, want);
        if (want) {
            assert_non_null(strstr(res.message, expect + 10));
            cfg.policy = (FerryMachinePolicy){0};
            assert_int_equal(ferry_explore_replay(&cfg, text, NULL, &res, &err), 0);
            assert_false(res.violation);
        }
    }
}

static void replay_errors(void **state)
{
    (void)state;
    FerryExploreConfig cfg = config("real", NULL, 8, FERRY_EXPLORE_BFS);
    FerryExploreResult res;
    FerryError err = {0};
    assert_true(ferry_explore_replay(&cfg, "cont; fly", NULL, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "unknown action 'fly'"));
    assert_true(ferry_explore_replay(&cfg, "add 7", NULL, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "slot below 2"));
    /* the guest does not run before cont */
    assert_true(ferry_explore_replay(&cfg, "guest", NULL, &res, &err) < 0);
    assert_non_null(strstr(err.msg, "not enabled"));
    assert_true(ferry_explore_replay(&cfg, "cont; switchover add", NULL, &res, &err) < 0);
    assert_true(ferry_explore_replay(&cfg, "cont; migrate; switchover moon", NULL, &res, &err) < 0);
    /* refused actions are part of a valid trace: S10 and a repeated device_del */
    assert_int_equal(ferry_explore_replay(&cfg,
                                          "cont; add 0; migrate; add 1; del 0; cancel; "
                                          "del 0; del 0",
                                          NULL, &res, &err),
                     0);
    assert_false(res.violation);
    assert_int_equal(res.refused, 3);
    /* a stream cut mid-way: the source keeps running and can migrate again */
    assert_int_equal(ferry_explore_replay(&cfg,
                                          "cont; add 0; guest; migrate; cut; guest; "
                                          "migrate; switchover add",
                                          NULL, &res, &err),
                     0);
    assert_false(res.violation);
    assert_int_equal(res.switchovers, 2);
}

static void policy_names(void **state)
{
    (void)state;
    FerryMachinePolicy p;
    FerryError err = {0};
    char buf[256];
    assert_int_equal(ferry_explore_policy_parse("real", &p, &err), 0);
    assert_string_equal(ferry_explore_policy_format(&p, buf, sizeof(buf)), "real");
    assert_int_equal(ferry_explore_policy_parse("inmigrate-hotplug,edge", &p, &err), 0);
    assert_true(p.inmigrate_hotplug && p.keep_dest_connectors && p.keep_dest_events &&
                p.edge_notify && !p.events_load_append && !p.conn_state_subsection);
    FerryMachinePolicy q;
    assert_int_equal(
        ferry_explore_policy_parse(ferry_explore_policy_format(&p, buf, sizeof(buf)), &q, &err), 0);
    assert_memory_equal(&p, &q, sizeof(p));
    assert_true(ferry_explore_policy_parse("edge,level", &p, &err) < 0);
    assert_non_null(strstr(err.msg, "unknown 'level'"));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]); /* e.g. 'bad_*' */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_policy_holds),
        cmocka_unit_test(all_resource_kinds),
        cmocka_unit_test(bad_list_append),
        cmocka_unit_test(bad_inmigrate_hotplug),
        cmocka_unit_test(bad_edge),
        cmocka_unit_test(bad_conn_subsection),
        cmocka_unit_test(inmigrate_hotplug_needs_device_add),
        cmocka_unit_test(single_layers_are_masked),
        cmocka_unit_test(trace_files),
        cmocka_unit_test(replay_errors),
        cmocka_unit_test(policy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Run-state table: every (state, event) pair against an expectation written out by hand here,
 * independently of the table in src/machine/runstate.c. */
#include "ferry/machine/runstate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

typedef struct Allowed {
    FerryRunState from;
    FerryRunEvent ev;
    FerryRunState to;
} Allowed;

/* Every allowed transition; all other pairs must be refused. */
static const Allowed allowed[] = {
    {FERRY_RUN_PRELAUNCH, FERRY_RUN_EV_CONT, FERRY_RUN_RUNNING},
    {FERRY_RUN_PRELAUNCH, FERRY_RUN_EV_STOP, FERRY_RUN_PRELAUNCH},
    {FERRY_RUN_PRELAUNCH, FERRY_RUN_EV_RESET, FERRY_RUN_PRELAUNCH},
    {FERRY_RUN_PRELAUNCH, FERRY_RUN_EV_SHUTDOWN, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_PRELAUNCH, FERRY_RUN_EV_OUTGOING_DONE, FERRY_RUN_POSTMIGRATE},
    {FERRY_RUN_INMIGRATE, FERRY_RUN_EV_STOP, FERRY_RUN_INMIGRATE},
    {FERRY_RUN_INMIGRATE, FERRY_RUN_EV_SHUTDOWN, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_INMIGRATE, FERRY_RUN_EV_INCOMING_RUN, FERRY_RUN_RUNNING},
    {FERRY_RUN_INMIGRATE, FERRY_RUN_EV_INCOMING_PAUSE, FERRY_RUN_PAUSED},
    {FERRY_RUN_INMIGRATE, FERRY_RUN_EV_INCOMING_FAIL, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_RUNNING, FERRY_RUN_EV_CONT, FERRY_RUN_RUNNING},
    {FERRY_RUN_RUNNING, FERRY_RUN_EV_STOP, FERRY_RUN_PAUSED},
    {FERRY_RUN_RUNNING, FERRY_RUN_EV_RESET, FERRY_RUN_RUNNING},
    {FERRY_RUN_RUNNING, FERRY_RUN_EV_SHUTDOWN, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_RUNNING, FERRY_RUN_EV_OUTGOING_DONE, FERRY_RUN_POSTMIGRATE},
    {FERRY_RUN_PAUSED, FERRY_RUN_EV_CONT, FERRY_RUN_RUNNING},
    {FERRY_RUN_PAUSED, FERRY_RUN_EV_STOP, FERRY_RUN_PAUSED},
    {FERRY_RUN_PAUSED, FERRY_RUN_EV_RESET, FERRY_RUN_PRELAUNCH},
    {FERRY_RUN_PAUSED, FERRY_RUN_EV_SHUTDOWN, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_PAUSED, FERRY_RUN_EV_OUTGOING_DONE, FERRY_RUN_POSTMIGRATE},
    {FERRY_RUN_POSTMIGRATE, FERRY_RUN_EV_CONT, FERRY_RUN_RUNNING},
    {FERRY_RUN_POSTMIGRATE, FERRY_RUN_EV_STOP, FERRY_RUN_POSTMIGRATE},
    {FERRY_RUN_POSTMIGRATE, FERRY_RUN_EV_RESET, FERRY_RUN_PRELAUNCH},
    {FERRY_RUN_POSTMIGRATE, FERRY_RUN_EV_SHUTDOWN, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_SHUTDOWN, FERRY_RUN_EV_STOP, FERRY_RUN_SHUTDOWN},
    {FERRY_RUN_SHUTDOWN, FERRY_RUN_EV_RESET, FERRY_RUN_PRELAUNCH},
    {FERRY_RUN_SHUTDOWN, FERRY_RUN_EV_SHUTDOWN, FERRY_RUN_SHUTDOWN},
};

static void every_pair(void **state)
{
    (void)state;
    size_t checked = 0;
    for (int s = 0; s < FERRY_RUN__COUNT; s++)
        for (int e = 0; e < FERRY_RUN_EV__COUNT; e++) {
            const Allowed *want = NULL;
            for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                if (allowed[i].from == (FerryRunState)s && allowed[i].ev == (FerryRunEvent)e)
                    want = &allowed[i];
            FerryRunState next = FERRY_RUN__COUNT;
            bool ok = ferry_runstate_next(s, e, &next);
            if (ok != (want != NULL))
                fail_msg("%s + %s: table says %s, expected %s", ferry_runstate_name(s),
                         ferry_runevent_name(e), ok ? "allowed" : "refused",
                         want ? "allowed" : "refused");
            if (want && next != want->to)
                fail_msg("%s + %s -> %s, expected %s", ferry_runstate_name(s),
                         ferry_runevent_name(e), ferry_runstate_name(next),
                         ferry_runstate_name(want->to));
            checked++;
        }
    assert_int_equal(checked, FERRY_RUN__COUNT * FERRY_RUN_EV__COUNT);
}

static void names_and_bounds(void **state)
{
    (void)state;
    assert_string_equal(ferry_runstate_name(FERRY_RUN_INMIGRATE), "inmigrate");
    assert_string_equal(ferry_runstate_name(FERRY_RUN_POSTMIGRATE), "postmigrate");
    assert_string_equal(ferry_runevent_name(FERRY_RUN_EV_OUTGOING_DONE), "outgoing-done");
    assert_string_equal(ferry_runstate_name((FerryRunState)99), "invalid");
    for (int s = 0; s < FERRY_RUN__COUNT; s++)
        assert_string_not_equal(ferry_runstate_name(s), "invalid");
    assert_false(ferry_runstate_next((FerryRunState)99, FERRY_RUN_EV_CONT, NULL));
    assert_false(ferry_runstate_next(FERRY_RUN_RUNNING, (FerryRunEvent)99, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_pair),
        cmocka_unit_test(names_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Run-state transition table (DESIGN §4). One row per state, one column per event; a refused
 * pair is RS_NO. Behaviour follows QEMU where it has one (reset of a stopped VM -> prelaunch). */
#include "ferry/machine/runstate.h"

#include <assert.h>

#define RS_NO FERRY_RUN__COUNT

static const FerryRunState table[FERRY_RUN__COUNT][FERRY_RUN_EV__COUNT] = {
    /*                  CONT              STOP                   RESET
     *                  SHUTDOWN          INCOMING_RUN           INCOMING_PAUSE
     *                  INCOMING_FAIL     OUTGOING_DONE */
    /* outgoing-done: a paused source reset during its migration is in prelaunch at switchover;
     * once its state lives on elsewhere it must not boot here again (found by ferry explore). */
    [FERRY_RUN_PRELAUNCH] = {FERRY_RUN_RUNNING, FERRY_RUN_PRELAUNCH, FERRY_RUN_PRELAUNCH,
                             FERRY_RUN_SHUTDOWN, RS_NO, RS_NO, RS_NO, FERRY_RUN_POSTMIGRATE},
    /* cont/reset while waiting for a stream are refused: the stream decides the state. */
    [FERRY_RUN_INMIGRATE] = {RS_NO, FERRY_RUN_INMIGRATE, RS_NO, FERRY_RUN_SHUTDOWN,
                             FERRY_RUN_RUNNING, FERRY_RUN_PAUSED, FERRY_RUN_SHUTDOWN, RS_NO},
    [FERRY_RUN_RUNNING] = {FERRY_RUN_RUNNING, FERRY_RUN_PAUSED, FERRY_RUN_RUNNING,
                           FERRY_RUN_SHUTDOWN, RS_NO, RS_NO, RS_NO, FERRY_RUN_POSTMIGRATE},
    /* A stopped VM that is reset has to boot again: prelaunch (QEMU main_loop_should_exit). */
    [FERRY_RUN_PAUSED] = {FERRY_RUN_RUNNING, FERRY_RUN_PAUSED, FERRY_RUN_PRELAUNCH,
                          FERRY_RUN_SHUTDOWN, RS_NO, RS_NO, RS_NO, FERRY_RUN_POSTMIGRATE},
    /* cont after a completed migration is allowed (management decided to keep the source). */
    [FERRY_RUN_POSTMIGRATE] = {FERRY_RUN_RUNNING, FERRY_RUN_POSTMIGRATE, FERRY_RUN_PRELAUNCH,
                               FERRY_RUN_SHUTDOWN, RS_NO, RS_NO, RS_NO, RS_NO},
    /* Leaving shutdown requires a reset first (QEMU: "Resetting the Virtual Machine is
     * required"). */
    [FERRY_RUN_SHUTDOWN] = {RS_NO, FERRY_RUN_SHUTDOWN, FERRY_RUN_PRELAUNCH, FERRY_RUN_SHUTDOWN,
                            RS_NO, RS_NO, RS_NO, RS_NO},
};

static const char *const state_names[FERRY_RUN__COUNT] = {
    [FERRY_RUN_PRELAUNCH] = "prelaunch",     [FERRY_RUN_INMIGRATE] = "inmigrate",
    [FERRY_RUN_RUNNING] = "running",         [FERRY_RUN_PAUSED] = "paused",
    [FERRY_RUN_POSTMIGRATE] = "postmigrate", [FERRY_RUN_SHUTDOWN] = "shutdown",
};

static const char *const event_names[FERRY_RUN_EV__COUNT] = {
    [FERRY_RUN_EV_CONT] = "cont",
    [FERRY_RUN_EV_STOP] = "stop",
    [FERRY_RUN_EV_RESET] = "reset",
    [FERRY_RUN_EV_SHUTDOWN] = "shutdown",
    [FERRY_RUN_EV_INCOMING_RUN] = "incoming-run",
    [FERRY_RUN_EV_INCOMING_PAUSE] = "incoming-pause",
    [FERRY_RUN_EV_INCOMING_FAIL] = "incoming-fail",
    [FERRY_RUN_EV_OUTGOING_DONE] = "outgoing-done",
};

const char *ferry_runstate_name(FerryRunState s)
{
    return (unsigned)s < FERRY_RUN__COUNT ? state_names[s] : "invalid";
}

const char *ferry_runevent_name(FerryRunEvent e)
{
    return (unsigned)e < FERRY_RUN_EV__COUNT ? event_names[e] : "invalid";
}

bool ferry_runstate_next(FerryRunState s, FerryRunEvent e, FerryRunState *next)
{
    if ((unsigned)s >= FERRY_RUN__COUNT || (unsigned)e >= FERRY_RUN_EV__COUNT)
        return false;
    FerryRunState n = table[s][e];
    if (n == RS_NO)
        return false;
    if (next)
        *next = n;
    return true;
}

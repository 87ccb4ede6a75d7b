/* Run states of a machine (DESIGN §4) and the explicit table of their transitions.
 * The table is data, not code: every (state, event) pair has one entry, tested exhaustively. */
#ifndef FERRY_MACHINE_RUNSTATE_H
#define FERRY_MACHINE_RUNSTATE_H

#include <stdbool.h>

typedef enum FerryRunState {
    FERRY_RUN_PRELAUNCH, /* started with -S, the guest never ran */
    FERRY_RUN_INMIGRATE, /* waiting for an incoming stream */
    FERRY_RUN_RUNNING,
    FERRY_RUN_PAUSED,
    FERRY_RUN_POSTMIGRATE, /* source after a completed outgoing migration */
    FERRY_RUN_SHUTDOWN,
    FERRY_RUN__COUNT
} FerryRunState;

typedef enum FerryRunEvent {
    FERRY_RUN_EV_CONT,           /* QMP cont / start without -S */
    FERRY_RUN_EV_STOP,           /* QMP stop */
    FERRY_RUN_EV_RESET,          /* system_reset / guest reboot */
    FERRY_RUN_EV_SHUTDOWN,       /* guest power-off or quit */
    FERRY_RUN_EV_INCOMING_RUN,   /* incoming stream loaded and verified, autostart */
    FERRY_RUN_EV_INCOMING_PAUSE, /* incoming stream loaded and verified, -S */
    FERRY_RUN_EV_INCOMING_FAIL,  /* incoming stream failed: the destination never runs */
    FERRY_RUN_EV_OUTGOING_DONE,  /* outgoing migration completed */
    FERRY_RUN_EV__COUNT
} FerryRunEvent;

/* Stable lower-case names ("prelaunch", "inmigrate", ...; QMP query-status spelling). */
const char *ferry_runstate_name(FerryRunState s);
const char *ferry_runevent_name(FerryRunEvent e);
/* The table: true and *next filled when `e` is allowed in `s`, false when it is refused. */
bool ferry_runstate_next(FerryRunState s, FerryRunEvent e, FerryRunState *next);

#endif

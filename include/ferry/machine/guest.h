/* A model of the guest's hotplug driver, played through the same registers as the firmware
 * (docs/guest-interface.md), one protocol step at a time, recording what the guest saw. */
#ifndef FERRY_MACHINE_GUEST_H
#define FERRY_MACHINE_GUEST_H

#include "ferry/machine/machine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryGuest FerryGuest;

typedef enum FerryGuestObsKind {
    FERRY_GUEST_OBS_READY,      /* declared ready */
    FERRY_GUEST_OBS_BOOT,       /* connector listed by the boot enumeration */
    FERRY_GUEST_OBS_EVENT,      /* event fetched: a = action */
    FERRY_GUEST_OBS_TOKEN,      /* configure-connector token: a = token type, text = name */
    FERRY_GUEST_OBS_CONFIGURED, /* configure-connector finished: text = node name */
    FERRY_GUEST_OBS_RELEASED,   /* device isolated and released after a remove event */
    FERRY_GUEST_OBS_STALE,      /* event for a connector that no longer needs it: ignored */
    FERRY_GUEST_OBS_DUPLICATE,  /* add event for a device the guest already has: a bug */
    FERRY_GUEST_OBS_ERROR,      /* a command failed: a = command, b = status */
    FERRY_GUEST_OBS_REBOOT,
} FerryGuestObsKind;

typedef struct FerryGuestObs {
    FerryGuestObsKind kind;
    uint32_t index; /* connector index (0 for READY/REBOOT) */
    uint32_t a, b;
    char text[32];
} FerryGuestObs;

/* `m` is borrowed (the guest talks to it through ferry_hotplug_io_*). Caller frees. */
FerryGuest *ferry_guest_new(FerryMachine *m);
void ferry_guest_free(FerryGuest *g);
/* Point the guest at another machine: after migration its memory (this object) moved there. */
void ferry_guest_attach(FerryGuest *g, FerryMachine *m);
/* The guest restarts from scratch (firmware reboot after a machine reset); keeps its log. */
void ferry_guest_reboot(FerryGuest *g);

/* One protocol step of the guest's program (declare ready, enumerate one boot device, fetch one
 * event when the line is asserted, one allocate/unisolate/configure/isolate/release command).
 * Returns true if it did something, false when idle (nothing to do until the line rises). */
bool ferry_guest_step(FerryGuest *g);
/* Steps until idle or `max` steps; returns the number of steps taken. */
size_t ferry_guest_run(FerryGuest *g, size_t max);

/* Single protocol actions for explorers (each one register command, logged). Return the status
 * register value (FERRY_HP_ST_*). */
uint32_t ferry_guest_declare_ready(FerryGuest *g);
uint32_t ferry_guest_fetch_event(FerryGuest *g, uint32_t *action, uint32_t *kind, uint32_t *index);
uint32_t ferry_guest_set_state(FerryGuest *g, uint32_t index, uint32_t state);
uint32_t ferry_guest_cc_step(FerryGuest *g, uint32_t index, uint32_t *token);

/* What the guest saw, in order (borrowed). */
size_t ferry_guest_log_count(const FerryGuest *g);
const FerryGuestObs *ferry_guest_log_at(const FerryGuest *g, size_t i);
/* One line per observation ("event add cpu 0x10000002"); caller frees. */
char *ferry_guest_log_text(const FerryGuest *g);
void ferry_guest_log_clear(FerryGuest *g);
/* Number of observations of `kind` (optionally for connector `index`; UINT32_MAX = any). */
size_t ferry_guest_log_find(const FerryGuest *g, FerryGuestObsKind kind, uint32_t index);
/* The guest's belief: connector `index` holds a device it has configured (boot or hotplug). */
bool ferry_guest_has(const FerryGuest *g, uint32_t index);
/* True when the guest is between protocol steps of a job (mid add/remove). */
bool ferry_guest_busy(const FerryGuest *g);

/* Model properties: the clone talks to `m` (borrowed). Equality and hash ignore the machine. */
FerryGuest *ferry_guest_clone(const FerryGuest *g, FerryMachine *m);
bool ferry_guest_equal(const FerryGuest *a, const FerryGuest *b);
uint64_t ferry_guest_hash(const FerryGuest *g);

#endif

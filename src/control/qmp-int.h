/* Private parts of src/control shared by the session, server and client: the streaming JSON
 * splitter that cuts a byte stream into whole JSON values, and output formatting helpers. */
#ifndef FERRY_CONTROL_QMP_INT_H
#define FERRY_CONTROL_QMP_INT_H

#include "ferry/control/qmp.h"

#include <stdbool.h>
#include <stddef.h>

/* Called for each complete value (`text`, `len`: strict JSON, single quotes already turned into
 * double quotes) or for each error in the stream (`text` NULL, `error` the QMP desc). `text` is
 * borrowed for the duration of the call. */
typedef void (*FerryQmpSplitFn)(void *opaque, const char *text, size_t len, const char *error);

typedef enum FerryQmpSplitState {
    FERRY_QMP_SPLIT_IDLE,    /* between values */
    FERRY_QMP_SPLIT_VALUE,   /* inside an object or array */
    FERRY_QMP_SPLIT_STRING,  /* inside a string (top level or nested) */
    FERRY_QMP_SPLIT_ESCAPE,  /* after a backslash in a string */
    FERRY_QMP_SPLIT_SCALAR,  /* a bare top-level word or number */
    FERRY_QMP_SPLIT_RECOVER, /* after a lexical error: discard until '{' or '[' */
} FerryQmpSplitState;

/* Finds value boundaries by counting brackets outside strings (as QEMU's json-streamer does),
 * so jansson only ever sees one whole value. Bounded memory: a value longer than `max` is
 * reported once and then skipped to its end without being stored. */
typedef struct FerryQmpSplitter {
    char *buf;
    size_t len, cap, max;
    FerryQmpSplitState state;
    char quote;    /* the string's opening quote: '"' or '\'' */
    long depth;    /* open brackets; counted past the nesting cap while skipping */
    bool skipping; /* the current value overflowed `max` or the nesting cap */
} FerryQmpSplitter;

void ferry_qmp_splitter_init(FerryQmpSplitter *sp, size_t max);
void ferry_qmp_splitter_release(FerryQmpSplitter *sp);
/* Feed bytes; calls `fn` for each value or error found. Never fails. */
void ferry_qmp_splitter_feed(FerryQmpSplitter *sp, const unsigned char *data, size_t len,
                             FerryQmpSplitFn fn, void *opaque);
/* True when no partial value is buffered. */
bool ferry_qmp_splitter_idle(const FerryQmpSplitter *sp);

/* Serialise a message as the server sends it: one line of ASCII JSON ending in "\r\n".
 * Returns a malloc'd string (caller frees) and its length, or NULL on allocation failure. */
char *ferry_qmp_format(json_t *msg, size_t *len);

/* Wall-clock timestamp object {"seconds": s, "microseconds": us}; -1/-1 if the clock fails. */
json_t *ferry_qmp_timestamp(void);

/* A snapshot of one executable command, taken under the registry lock so the handler runs
 * without holding it. */
typedef struct FerryQmpCommandInfo {
    const FerryQmpCommandSpec *spec;
    FerryQmpHandler fn;
    void *ctx;
    bool builtin;
} FerryQmpCommandInfo;

/* 0 and *info filled when `name` can be executed, -ENOENT otherwise. */
int ferry_qmp_commands_lookup(FerryQmpCommands *cmds, const char *name, FerryQmpCommandInfo *info);

/* [{"name": ...}, ...] of every executable command (query-commands). New reference. */
json_t *ferry_qmp_commands_list(FerryQmpCommands *cmds);
#endif

/* Error values shared by every Ferry module.
 * A failing call returns a negative errno (or NULL) and fills a FerryError whose message names
 * what failed (device, field path) and where (stream offset). Callers test the return value,
 * never the error, to learn whether a call failed. */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#include <stdarg.h>

#define FERRY_ERROR_MSG_MAX 512

/* A plain value type (like jansson's json_error_t): lives on the caller's stack, owns no heap
 * memory, and needs no destroy call. */
typedef struct FerryError {
    int code;                      /* negative errno, 0 when unset */
    char msg[FERRY_ERROR_MSG_MAX]; /* human-readable, NUL-terminated */
} FerryError;

/* Reset to "no error". `err` may be NULL. */
void ferry_error_clear(FerryError *err);

/* Record an error and return `code` so a caller can write `return ferry_error_set(...)`.
 * `code` must be negative. `err` may be NULL (the message is then dropped). */
int ferry_error_set(FerryError *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ferry_error_setv(FerryError *err, int code, const char *fmt, va_list ap);

/* Prepend context ("drc-cpu[3]: ") to an existing message, keeping its code. Returns the code. */
int ferry_error_prefix(FerryError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

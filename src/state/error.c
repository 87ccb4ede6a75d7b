/* FerryError helpers: formatting and prefixing of error messages.
 * Messages are truncated, never overflowed; a truncated message still ends in NUL. */
#include "ferry/error.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void ferry_error_clear(FerryError *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

int ferry_error_setv(FerryError *err, int code, const char *fmt, va_list ap)
{
    assert(code < 0);
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return code;
}

int ferry_error_set(FerryError *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ferry_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int ferry_error_prefix(FerryError *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[FERRY_ERROR_MSG_MAX];
    char old[FERRY_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* Explicit truncation: snprintf("%s%s") trips gcc 12's -Wformat-truncation at -O2. */
    size_t pl = strnlen(prefix, sizeof(err->msg) - 1);
    size_t ol = strnlen(old, sizeof(old));
    if (ol > sizeof(err->msg) - 1 - pl)
        ol = sizeof(err->msg) - 1 - pl;
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, old, ol);
    err->msg[pl + ol] = '\0';
    return err->code;
}

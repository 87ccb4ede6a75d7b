/* Streaming splitter for QMP input: cuts an unframed byte stream into whole JSON values.
 * It tracks only strings and bracket depth; jansson then parses each value on its own. */
#include "qmp-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Buffers above this are released after use so one large message does not pin memory. */
#define SPLIT_KEEP_CAP (64u * 1024u)

typedef struct SplitCall {
    FerryQmpSplitter *sp;
    FerryQmpSplitFn fn;
    void *opaque;
} SplitCall;

void ferry_qmp_splitter_init(FerryQmpSplitter *sp, size_t max)
{
    memset(sp, 0, sizeof(*sp));
    sp->max = max ? max : FERRY_QMP_DEFAULT_MAX_MESSAGE;
    sp->state = FERRY_QMP_SPLIT_IDLE;
}

void ferry_qmp_splitter_release(FerryQmpSplitter *sp)
{
    free(sp->buf);
    sp->buf = NULL;
    sp->len = sp->cap = 0;
}

bool ferry_qmp_splitter_idle(const FerryQmpSplitter *sp)
{
    return sp->state == FERRY_QMP_SPLIT_IDLE || sp->state == FERRY_QMP_SPLIT_RECOVER;
}

static void split_error(SplitCall *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void split_error(SplitCall *c, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->fn(c->opaque, NULL, 0, msg);
}

static void split_reset(FerryQmpSplitter *sp)
{
    sp->len = 0;
    sp->depth = 0;
    sp->skipping = false;
    if (sp->cap > SPLIT_KEEP_CAP) {
        free(sp->buf);
        sp->buf = NULL;
        sp->cap = 0;
    }
}

/* The value overflowed: say so once, drop what was stored, keep tracking its structure. */
static void split_overflow(SplitCall *c, const char *what)
{
    FerryQmpSplitter *sp = c->sp;
    if (!sp->skipping)
        split_error(c, "%s", what);
    sp->skipping = true;
    sp->len = 0;
}

static void split_put(SplitCall *c, const char *bytes, size_t n)
{
    FerryQmpSplitter *sp = c->sp;
    if (sp->skipping)
        return;
    if (sp->len + n > sp->max) {
        char what[96];
        snprintf(what, sizeof(what), "JSON message exceeds the limit of %zu bytes", sp->max);
        split_overflow(c, what);
        return;
    }
    if (sp->len + n > sp->cap) {
        size_t cap = sp->cap ? sp->cap : 256;
        while (cap < sp->len + n)
            cap *= 2;
        char *nb = realloc(sp->buf, cap);
        if (!nb) {
            split_overflow(c, "Out of memory buffering the JSON message");
            return;
        }
        sp->buf = nb;
        sp->cap = cap;
    }
    memcpy(sp->buf + sp->len, bytes, n);
    sp->len += n;
}

static void split_emit(SplitCall *c)
{
    FerryQmpSplitter *sp = c->sp;
    sp->state = FERRY_QMP_SPLIT_IDLE;
    if (!sp->skipping)
        c->fn(c->opaque, sp->buf, sp->len, NULL);
    split_reset(sp);
}

/* A byte no JSON text may contain (outside and inside strings): the QMP spec's way for a client
 * to force the parser back into a known state (control characters other than \t \r \n, and
 * 0xFF for old servers). */
static bool lexical_error_byte(unsigned char b)
{
    return (b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0xFF || b == 0xFE;
}

static bool scalar_byte(unsigned char b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '-' ||
           b == '+' || b == '.';
}

static void split_open(SplitCall *c, unsigned char b)
{
    FerryQmpSplitter *sp = c->sp;
    char ch = (char)b;
    split_put(c, &ch, 1);
    sp->depth++;
    if (sp->depth > FERRY_QMP_MAX_NESTING)
        split_overflow(c, "JSON nesting depth limit exceeded");
    sp->state = FERRY_QMP_SPLIT_VALUE;
}

static void split_string_start(SplitCall *c, unsigned char quote)
{
    c->sp->quote = (char)quote;
    c->sp->state = FERRY_QMP_SPLIT_STRING;
    split_put(c, "\"", 1);
}

/* After a string or a closing bracket: the value ends when no bracket is open. */
static void split_after_token(SplitCall *c)
{
    if (c->sp->depth == 0)
        split_emit(c);
    else
        c->sp->state = FERRY_QMP_SPLIT_VALUE;
}

void ferry_qmp_splitter_feed(FerryQmpSplitter *sp, const unsigned char *data, size_t len,
                             FerryQmpSplitFn fn, void *opaque)
{
    SplitCall c = {sp, fn, opaque};
    size_t i = 0;
    while (i < len) {
        unsigned char b = data[i];
        char ch = (char)b;

        if (lexical_error_byte(b) && sp->state != FERRY_QMP_SPLIT_RECOVER) {
            bool quiet = sp->skipping;
            split_reset(sp);
            sp->state = FERRY_QMP_SPLIT_RECOVER;
            if (!quiet && b > 0 && b < 0x20)
                split_error(&c, "JSON parse error, stray '%c'", b); /* QEMU's wording */
            else if (!quiet)
                split_error(&c, "JSON parse error, invalid byte 0x%02x", b);
            i++;
            continue;
        }

        switch (sp->state) {
        case FERRY_QMP_SPLIT_RECOVER:
            if (b == '{' || b == '[') {
                sp->state = FERRY_QMP_SPLIT_IDLE;
                continue; /* reprocess as the start of a value */
            }
            break;

        case FERRY_QMP_SPLIT_IDLE:
            if (b == ' ' || b == '\t' || b == '\n' || b == '\r')
                break;
            if (b == '{' || b == '[') {
                split_open(&c, b);
            } else if (b == '"' || b == '\'') {
                split_string_start(&c, b);
            } else if (scalar_byte(b)) {
                sp->state = FERRY_QMP_SPLIT_SCALAR;
                split_put(&c, &ch, 1);
            } else if (b == '}' || b == ']' || b == ':' || b == ',') {
                /* A valid token where a value must start: QEMU's parser words it so. */
                split_error(&c, "JSON parse error, expecting value");
            } else {
                sp->state = FERRY_QMP_SPLIT_RECOVER;
                if (b < 0x7F)
                    split_error(&c, "JSON parse error, stray '%c'", b);
                else /* never put a non-ASCII byte in a reply (QMP output is ASCII) */
                    split_error(&c, "JSON parse error, invalid byte 0x%02x", b);
            }
            break;

        case FERRY_QMP_SPLIT_SCALAR:
            if (scalar_byte(b)) {
                split_put(&c, &ch, 1);
                break;
            }
            split_emit(&c);
            continue; /* the terminator belongs to whatever follows */

        case FERRY_QMP_SPLIT_VALUE:
            if (b == '{' || b == '[') {
                split_open(&c, b);
            } else if (b == '}' || b == ']') {
                split_put(&c, &ch, 1);
                sp->depth--;
                split_after_token(&c);
            } else if (b == '"' || b == '\'') {
                split_string_start(&c, b);
            } else {
                split_put(&c, &ch, 1);
            }
            break;

        case FERRY_QMP_SPLIT_STRING:
            if (b == '\\') {
                sp->state = FERRY_QMP_SPLIT_ESCAPE; /* written with the next byte */
            } else if (ch == sp->quote) {
                split_put(&c, "\"", 1);
                split_after_token(&c);
            } else if (b == '"') {
                split_put(&c, "\\\"", 2); /* a double quote inside a 'single-quoted' string */
            } else {
                split_put(&c, &ch, 1);
            }
            break;

        case FERRY_QMP_SPLIT_ESCAPE:
            /* QMP's extension: \' is a single quote, in either kind of string. */
            if (b == '\'') {
                split_put(&c, "'", 1);
            } else {
                split_put(&c, "\\", 1);
                split_put(&c, &ch, 1);
            }
            sp->state = FERRY_QMP_SPLIT_STRING;
            break;
        }
        i++;
    }
}

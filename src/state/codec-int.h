/* Codec internals shared by the loader (codec.c) and the JSON decoder (decode.c):
 * the error-path context and the wire primitives, so both read the bytes the same way. */
#ifndef FERRY_STATE_CODEC_INT_H
#define FERRY_STATE_CODEC_INT_H

#include "ferry/state/state.h"
#include "io-int.h"

#define CODEC_MAX_DEPTH 32

/* Wire markers of the subsection block that ends every description's payload. */
enum { SUB_END = 0x00, SUB_MANDATORY = 0x01, SUB_OPTIONAL = 0x02 };

typedef struct CodecFrame {
    const char *name;
    int64_t index; /* -1: not an element */
} CodecFrame;

typedef struct CodecCtx {
    FerryIO *io;
    FerryError *err;
    const FerryLoadOpts *opts;
    CodecFrame stack[CODEC_MAX_DEPTH];
    int depth;
} CodecCtx;

void codec_push(CodecCtx *c, const char *name);
void codec_pop(CodecCtx *c);
static inline void codec_index(CodecCtx *c, int64_t i)
{
    c->stack[c->depth - 1].index = i;
}
/* "desc.field[3].sub" of the current position. */
void codec_path(const CodecCtx *c, char *buf, size_t len);
/* Fail with "<path>: <message> (offset 0x..)". */
int codec_fail(CodecCtx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix an error filled by a lower layer (IO) with the current path. */
int codec_wrap(CodecCtx *c, int rc);
void codec_warn(CodecCtx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int codec_version_check(CodecCtx *c, const FerryDesc *d, uint32_t version);
/* Array count on the wire, checked against the field's bounds (not yet against memory). */
int codec_read_count(CodecCtx *c, const FerryField *f, uint32_t *n);
int codec_read_presence(CodecCtx *c, bool *present);
/* Subsection frame header; *tag == SUB_END ends the block. `name` holds 256 bytes. */
int codec_read_sub_header(CodecCtx *c, uint8_t *tag, char *name, uint32_t *version, uint32_t *len);
const FerrySubsection *codec_find_sub(const FerryDesc *d, const char *name, size_t *index);
int codec_read_bool(CodecCtx *c, uint8_t *v);

#endif

/* Declarative device state: descriptions of C structs and the codec that saves and loads them.
 * Descriptions are static tables built with the FERRY_* macros below (compile-time offsets and
 * type checks); the wire format is specified in docs/stream-format.md ("device payload"). */
#ifndef FERRY_STATE_STATE_H
#define FERRY_STATE_STATE_H

#include "ferry/error.h"
#include "ferry/state/io.h"
#include "ferry/state/list.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryDesc FerryDesc;

/* One hook signature for pre_save, post_save, pre_load and post_load. `version` is the version
 * being written (saves) or the stream's version (loads). Return 0 or a negative errno with `err`
 * filled. */
typedef int (*FerryHookFn)(void *opaque, uint32_t version, FerryError *err);
/* Field existence test, evaluated on both sides with the stream version. The codec writes the
 * answer as a presence byte, so a disagreement is reported instead of desynchronising. */
typedef bool (*FerryExistsFn)(const void *opaque, uint32_t version);
/* Subsection predicate, evaluated on save only. */
typedef bool (*FerryNeededFn)(const void *opaque);
/* Frees one list element (FERRY_LIST). Default: free(). */
typedef void (*FerryReleaseFn)(void *elem);

typedef enum FerryType {
    FERRY_TYPE_U8,
    FERRY_TYPE_U16,
    FERRY_TYPE_U32,
    FERRY_TYPE_U64,
    FERRY_TYPE_I8,
    FERRY_TYPE_I16,
    FERRY_TYPE_I32,
    FERRY_TYPE_I64,
    FERRY_TYPE_BOOL,
    FERRY_TYPE_BUFFER, /* `size` raw bytes */
    FERRY_TYPE_STRING, /* char[size] holding a NUL-terminated string */
    FERRY_TYPE_STRUCT, /* nested description `desc` */
    FERRY_TYPE_LIST,   /* FerryList of elements described by `desc` */
    FERRY_TYPE__COUNT
} FerryType;

typedef enum FerryArrayKind {
    FERRY_ARRAY_NONE,  /* one element */
    FERRY_ARRAY_FIXED, /* T m[count] */
    FERRY_ARRAY_VAR,   /* T m[capacity], `count_name` elements used */
    FERRY_ARRAY_ALLOC, /* T *m, `count_name` elements, allocated on load, at most `max` */
} FerryArrayKind;

typedef struct FerryField {
    const char *name;
    FerryType type;
    FerryArrayKind array;
    size_t offset;          /* of the member in the described struct */
    size_t size;            /* of one element in memory */
    uint32_t count;         /* FIXED: length; VAR: capacity */
    size_t count_offset;    /* VAR/ALLOC: the count member (unsigned, earlier field) */
    uint8_t count_size;     /* 1, 2, 4 or 8 */
    const char *count_name; /* its field name */
    uint32_t max;           /* ALLOC and LIST: bound on a loaded count (hostile input) */
    uint32_t since;         /* absent in streams older than this version */
    FerryExistsFn exists;   /* optional existence test */
    const FerryDesc *desc;  /* STRUCT and LIST elements */
    size_t link_offset;     /* LIST: the FerryLink inside the element */
    FerryReleaseFn release; /* LIST: frees an element; NULL means free() */
} FerryField;

typedef struct FerrySubsection {
    const FerryDesc *desc; /* its name is the subsection's name on the wire */
    FerryNeededFn needed;  /* NULL: always sent */
    bool optional;         /* a destination that does not know it may skip it */
} FerrySubsection;

struct FerryDesc {
    const char *name;
    uint32_t version;
    uint32_t min_version;     /* oldest stream version this build still loads */
    size_t size;              /* sizeof the described struct (elements of lists and arrays) */
    const FerryField *fields; /* terminated by FERRY_END */
    const FerrySubsection *subsections; /* terminated by { NULL }; may be NULL */
    FerryHookFn pre_save, post_save, pre_load, post_load;
};

#define FERRY_LIST_MAX_DEFAULT 65536u

/* Options for a load: where warnings go (skipped optional subsections). May be NULL. */
typedef void (*FerryWarnFn)(void *ctx, const char *msg);
typedef struct FerryLoadOpts {
    FerryWarnFn warn;
    void *warn_ctx;
} FerryLoadOpts;

/* Check a description (recursively): names, sizes, count fields before their arrays, list
 * parameters. Registries call this; a bad table is a programming error reported by name. */
int ferry_desc_check(const FerryDesc *d, FerryError *err);

/* Save `opaque` as described by `d` at d->version. Hooks may modify `opaque`. */
int ferry_state_save(const FerryDesc *d, void *opaque, FerryIO *io, FerryError *err);
/* Load a payload written at `version` into `opaque`. Lists are replaced (old elements released),
 * ALLOC arrays are reallocated. On failure the message names the field path and offset. */
int ferry_state_load(const FerryDesc *d, void *opaque, FerryIO *io, uint32_t version,
                     const FerryLoadOpts *opts, FerryError *err);
/* Release what loads allocated inside `opaque` (list elements, ALLOC arrays), recursively. */
void ferry_state_release(const FerryDesc *d, void *opaque);

const char *ferry_type_name(FerryType t);
/* Bytes of one element of a scalar type on the wire (0 for non-scalars). */
size_t ferry_type_wire_size(FerryType t);

/* ---- Table-building macros -----------------------------------------------------------------
 * Options are designated initialisers appended after the required arguments:
 *   FERRY_FIELD(Dev, irq, .since = 2)   FERRY_FIELD(Dev, pending, .exists = has_pending)
 */
#define FERRY__M(S, m) (((S *)0)->m)
#define FERRY__SCALAR(x)                                                                           \
    _Generic((x), uint8_t                                                                          \
             : FERRY_TYPE_U8, uint16_t                                                             \
             : FERRY_TYPE_U16, uint32_t                                                            \
             : FERRY_TYPE_U32, uint64_t                                                            \
             : FERRY_TYPE_U64, unsigned long long                                                  \
             : FERRY_TYPE_U64, int8_t                                                              \
             : FERRY_TYPE_I8, int16_t                                                              \
             : FERRY_TYPE_I16, int32_t                                                             \
             : FERRY_TYPE_I32, int64_t                                                             \
             : FERRY_TYPE_I64, long long                                                           \
             : FERRY_TYPE_I64, bool                                                                \
             : FERRY_TYPE_BOOL, default                                                            \
             : FERRY_TYPE_STRUCT)
/* Compile-time: `a` is an array (not a pointer), like Linux's __must_be_array. */
#define FERRY__IS_ARRAY(a) (!__builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0])))
#define FERRY__ARRAY_LEN(a)                                                                        \
    (sizeof(a) / sizeof((a)[0]) + 0 * sizeof(struct {                                              \
                                      _Static_assert(FERRY__IS_ARRAY(a),                           \
                                                     "member is not an array");                    \
                                      char c;                                                      \
                                  }))
#define FERRY__PTR_CHECK(p)                                                                        \
    (0 * sizeof(struct {                                                                           \
         _Static_assert(!FERRY__IS_ARRAY(p), "member is not a pointer");                           \
         char c;                                                                                   \
     }))
#define FERRY__COUNT(S, c)                                                                         \
    .count_offset = offsetof(S, c), .count_size = sizeof(FERRY__M(S, c)), .count_name = #c

/* An integer or bool member. */
#define FERRY_FIELD(S, m, ...)                                                                     \
    {                                                                                              \
        .name = #m, .type = FERRY__SCALAR(FERRY__M(S, m)), .offset = offsetof(S, m),               \
        .size = sizeof(FERRY__M(S, m)), __VA_ARGS__                                                \
    }
/* A nested struct member described by `d`. */
#define FERRY_STRUCT(S, m, d, ...)                                                                 \
    {                                                                                              \
        .name = #m, .type = FERRY_TYPE_STRUCT, .offset = offsetof(S, m),                           \
        .size = sizeof(FERRY__M(S, m)), .desc = (d), __VA_ARGS__                                   \
    }
/* A fixed array of scalars; of structs when `.desc = &d` is given. */
#define FERRY_ARRAY(S, m, ...)                                                                     \
    {                                                                                              \
        .name = #m, .type = FERRY__SCALAR(FERRY__M(S, m)[0]), .array = FERRY_ARRAY_FIXED,          \
        .offset = offsetof(S, m), .size = sizeof(FERRY__M(S, m)[0]),                               \
        .count = FERRY__ARRAY_LEN(FERRY__M(S, m)), __VA_ARGS__                                     \
    }
/* A fixed-capacity array of which member `c` says how many are used. */
#define FERRY_VARRAY(S, m, c, ...)                                                                 \
    {                                                                                              \
        .name = #m, .type = FERRY__SCALAR(FERRY__M(S, m)[0]), .array = FERRY_ARRAY_VAR,            \
        .offset = offsetof(S, m), .size = sizeof(FERRY__M(S, m)[0]),                               \
        .count = FERRY__ARRAY_LEN(FERRY__M(S, m)), FERRY__COUNT(S, c), __VA_ARGS__                 \
    }
/* A pointer to `c` elements, allocated (calloc) on load; loads of more than `mx` fail. */
#define FERRY_ALLOC(S, m, c, mx, ...)                                                              \
    {                                                                                              \
        .name = #m, .type = FERRY__SCALAR(FERRY__M(S, m)[0]), .array = FERRY_ARRAY_ALLOC,          \
        .offset = offsetof(S, m),                                                                  \
        .size = sizeof(FERRY__M(S, m)[0]) + FERRY__PTR_CHECK(FERRY__M(S, m)), FERRY__COUNT(S, c),  \
        .max = (mx), __VA_ARGS__                                                                   \
    }
/* A uint8_t[N] member saved as raw bytes. */
#define FERRY_BUFFER(S, m, ...)                                                                    \
    {                                                                                              \
        .name = #m, .type = FERRY_TYPE_BUFFER, .offset = offsetof(S, m),                           \
        .size = FERRY__ARRAY_LEN(FERRY__M(S, m)), __VA_ARGS__                                      \
    }
/* A char[N] member holding a NUL-terminated string of at most N-1 bytes. */
#define FERRY_STRING(S, m, ...)                                                                    \
    {                                                                                              \
        .name = #m, .type = FERRY_TYPE_STRING, .offset = offsetof(S, m),                           \
        .size = FERRY__ARRAY_LEN(FERRY__M(S, m)), __VA_ARGS__                                      \
    }
/* A FerryList member whose elements are `E`, linked through `E.link`, described by `d`. */
#define FERRY_LIST(S, m, E, link, d, ...)                                                          \
    {                                                                                              \
        .name = #m, .type = FERRY_TYPE_LIST, .offset = offsetof(S, m), .size = sizeof(E),          \
        .link_offset = offsetof(E, link), .desc = (d), .max = FERRY_LIST_MAX_DEFAULT, __VA_ARGS__  \
    }
#define FERRY_END                                                                                  \
    {                                                                                              \
        .name = NULL                                                                               \
    }

#endif

/* Unit tests of the device-state codec: golden wire vectors, round trips, truncation at every
 * byte, version skew, subsections, list replacement, hooks, bounded allocation. */
#include "ferry/state/state.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- a description using every field type -------------------------------------------------- */

typedef struct Inner {
    uint16_t x;
    int8_t y;
} Inner;

typedef struct Event {
    uint32_t id;
    FerryLink link;
    uint8_t kind;
} Event;

typedef struct All {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    bool flag;
    uint8_t buf[3];
    char name[8];
    uint16_t arr[2];
    Inner inner;
    Inner inners[2];
    uint8_t nvar;
    uint32_t var[4];
    uint16_t nalloc;
    uint16_t *alloc;
    FerryList events;
} All;

static const FerryDesc inner_desc = {
    .name = "inner",
    .version = 1,
    .size = sizeof(Inner),
    .fields = (const FerryField[]){FERRY_FIELD(Inner, x), FERRY_FIELD(Inner, y), FERRY_END},
};

static const FerryDesc event_desc = {
    .name = "event",
    .version = 1,
    .size = sizeof(Event),
    .fields = (const FerryField[]){FERRY_FIELD(Event, id), FERRY_FIELD(Event, kind), FERRY_END},
};

static const FerryField all_fields[] = {
    FERRY_FIELD(All, u8),
    FERRY_FIELD(All, u16),
    FERRY_FIELD(All, u32),
    FERRY_FIELD(All, u64),
    FERRY_FIELD(All, i8),
    FERRY_FIELD(All, i16),
    FERRY_FIELD(All, i32),
    FERRY_FIELD(All, i64),
    FERRY_FIELD(All, flag),
    FERRY_BUFFER(All, buf),
    FERRY_STRING(All, name),
    FERRY_ARRAY(All, arr),
    FERRY_STRUCT(All, inner, &inner_desc),
    FERRY_ARRAY(All, inners, .desc = &inner_desc),
    FERRY_FIELD(All, nvar),
    FERRY_VARRAY(All, var, nvar),
    FERRY_FIELD(All, nalloc),
    FERRY_ALLOC(All, alloc, nalloc, 16),
    FERRY_LIST(All, events, Event, link, &event_desc, .max = 8),
    FERRY_END,
};

static const FerryDesc all_desc = {
    .name = "all", .version = 1, .min_version = 1, .size = sizeof(All), .fields = all_fields};

static Event *event_new(uint32_t id, uint8_t kind)
{
    Event *e = calloc(1, sizeof(*e));
    e->id = id;
    e->kind = kind;
    return e;
}

static void all_fill(All *a)
{
    memset(a, 0, sizeof(*a));
    a->u8 = 0x2a;
    a->u16 = 0x1234;
    a->u32 = 0xdeadbeef;
    a->u64 = 0x0102030405060708ull;
    a->i8 = -2;
    a->i16 = -300;
    a->i32 = -70000;
    a->i64 = -5;
    a->flag = true;
    memcpy(a->buf, "\x01\x02\x03", 3);
    strcpy(a->name, "cpu");
    a->arr[0] = 7;
    a->arr[1] = 8;
    a->inner = (Inner){0x0a0b, -1};
    a->inners[0] = (Inner){1, 2};
    a->inners[1] = (Inner){3, 4};
    a->nvar = 2;
    a->var[0] = 0x11;
    a->var[1] = 0x22;
    a->nalloc = 2;
    a->alloc = calloc(2, sizeof(uint16_t));
    a->alloc[0] = 0xaaaa;
    a->alloc[1] = 0xbbbb;
    ferry_list_init(&a->events);
    ferry_list_push_tail(&a->events, &event_new(5, 1)->link);
    ferry_list_push_tail(&a->events, &event_new(6, 2)->link);
}

/* The wire bytes of all_fill(), one field per line (docs/stream-format.md, device payload). */
static const uint8_t golden_all[] = {
    0x2a,                                           /* u8 = 0x2a */
    0x34, 0x12,                                     /* u16 = 0x1234 (little-endian) */
    0xef, 0xbe, 0xad, 0xde,                         /* u32 = 0xdeadbeef */
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* u64 = 0x0102030405060708 */
    0xfe,                                           /* i8 = -2 */
    0xd4, 0xfe,                                     /* i16 = -300 */
    0x90, 0xee, 0xfe, 0xff,                         /* i32 = -70000 */
    0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* i64 = -5 */
    0x01,                                           /* flag = true */
    0x01, 0x02, 0x03,                               /* buf[3], raw */
    0x03, 0x00, 0x00, 0x00, 'c',  'p',  'u',        /* name: u32 length 3, bytes, no NUL */
    0x02, 0x00, 0x00, 0x00,                         /* arr: count 2 */
    0x07, 0x00, 0x08, 0x00,                         /*   arr[0] = 7, arr[1] = 8 */
    0x01, 0x00, 0x00, 0x00,                         /* inner: nested version 1 */
    0x0b, 0x0a, 0xff,                               /*   inner.x = 0x0a0b, inner.y = -1 */
    0x00,                                           /*   inner: end of subsections */
    0x02, 0x00, 0x00, 0x00,                         /* inners: count 2 */
    0x01, 0x00, 0x00, 0x00,                         /*   nested version 1 */
    0x01, 0x00, 0x02, 0x00,                         /*   inners[0] = {1, 2}, end */
    0x03, 0x00, 0x04, 0x00,                         /*   inners[1] = {3, 4}, end */
    0x02,                                           /* nvar = 2 */
    0x02, 0x00, 0x00, 0x00,                         /* var: count 2 */
    0x11, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, /*   var[0..1] */
    0x02, 0x00,                                     /* nalloc = 2 */
    0x02, 0x00, 0x00, 0x00,                         /* alloc: count 2 */
    0xaa, 0xaa, 0xbb, 0xbb,                         /*   alloc[0..1] */
    0x01, 0x00, 0x00, 0x00,                         /* events: element version 1 */
    0x02, 0x00, 0x00, 0x00,                         /* events: 2 elements */
    0x05, 0x00, 0x00, 0x00, 0x01, 0x00,             /*   {id 5, kind 1}, end */
    0x06, 0x00, 0x00, 0x00, 0x02, 0x00,             /*   {id 6, kind 2}, end */
    0x00,                                           /* all: end of subsections */
};

static void all_release(All *a)
{
    ferry_state_release(&all_desc, a);
}

static uint8_t *save_to(const FerryDesc *d, void *opaque, size_t *len)
{
    FerryIO *io = ferry_io_mem_writer();
    FerryError err;
    int rc = ferry_state_save(d, opaque, io, &err);
    if (rc)
        fail_msg("save failed: %s", err.msg);
    const uint8_t *data = ferry_io_mem_data(io, len);
    uint8_t *copy = malloc(*len ? *len : 1);
    memcpy(copy, data, *len);
    ferry_io_destroy(io);
    return copy;
}

static int load_from(const FerryDesc *d, void *opaque, const uint8_t *data, size_t len,
                     uint32_t version, FerryError *err)
{
    FerryIO *io = ferry_io_mem_reader(data, len);
    int rc = ferry_state_load(d, opaque, io, version, NULL, err);
    if (!rc && ferry_io_offset(io) != len)
        rc = ferry_error_set(err, -EBADMSG, "trailing bytes");
    ferry_io_destroy(io);
    return rc;
}

static void test_desc_check_ok(void **state)
{
    (void)state;
    FerryError err;
    assert_int_equal(ferry_desc_check(&all_desc, &err), 0);
}

static void test_golden_save(void **state)
{
    (void)state;
    All a;
    all_fill(&a);
    size_t len;
    uint8_t *wire = save_to(&all_desc, &a, &len);
    assert_int_equal(len, sizeof(golden_all));
    assert_memory_equal(wire, golden_all, sizeof(golden_all));
    free(wire);
    all_release(&a);
}

static void test_golden_load_round_trip(void **state)
{
    (void)state;
    All want, got;
    all_fill(&want);
    memset(&got, 0, sizeof(got));
    ferry_list_init(&got.events);
    /* Count members are loaded before their arrays; the loader checks they agree. */
    FerryError err;
    assert_int_equal(load_from(&all_desc, &got, golden_all, sizeof(golden_all), 1, &err), 0);
    assert_int_equal(got.u8, want.u8);
    assert_int_equal(got.u16, want.u16);
    assert_int_equal(got.u32, want.u32);
    assert_true(got.u64 == want.u64);
    assert_int_equal(got.i8, want.i8);
    assert_int_equal(got.i16, want.i16);
    assert_int_equal(got.i32, want.i32);
    assert_true(got.i64 == want.i64);
    assert_true(got.flag);
    assert_memory_equal(got.buf, want.buf, 3);
    assert_string_equal(got.name, "cpu");
    assert_memory_equal(got.arr, want.arr, sizeof(want.arr));
    assert_memory_equal(&got.inner, &want.inner, sizeof(Inner));
    assert_memory_equal(got.inners, want.inners, sizeof(want.inners));
    assert_int_equal(got.nvar, 2);
    assert_memory_equal(got.var, want.var, 2 * sizeof(uint32_t));
    assert_int_equal(got.nalloc, 2);
    assert_non_null(got.alloc);
    assert_memory_equal(got.alloc, want.alloc, 2 * sizeof(uint16_t));
    assert_int_equal(got.events.len, 2);
    Event *e0 = ferry_container_of(got.events.head, Event, link);
    Event *e1 = ferry_container_of(got.events.tail, Event, link);
    assert_int_equal(e0->id, 5);
    assert_int_equal(e0->kind, 1);
    assert_int_equal(e1->id, 6);
    /* And saving what was loaded gives the same bytes again. */
    size_t len;
    uint8_t *wire = save_to(&all_desc, &got, &len);
    assert_memory_equal(wire, golden_all, sizeof(golden_all));
    free(wire);
    all_release(&want);
    all_release(&got);
}

/* Every proper prefix of a valid payload fails, and the error names a field path and offset. */
static void test_truncation_every_byte(void **state)
{
    (void)state;
    for (size_t cut = 0; cut < sizeof(golden_all); cut++) {
        All got;
        memset(&got, 0, sizeof(got));
        ferry_list_init(&got.events);
        FerryError err;
        ferry_error_clear(&err);
        int rc = load_from(&all_desc, &got, golden_all, cut, 1, &err);
        assert_int_equal(rc, -ENODATA);
        assert_non_null(strstr(err.msg, "stream ended"));
        char at[32];
        snprintf(at, sizeof(at), "at offset 0x%zx", cut);
        if (!strstr(err.msg, at))
            fail_msg("cut %zu: '%s' lacks '%s'", cut, err.msg, at);
        assert_true(strncmp(err.msg, "all", 3) == 0);
        all_release(&got);
    }
}

static void test_truncation_names_field(void **state)
{
    (void)state;
    All got;
    memset(&got, 0, sizeof(got));
    ferry_list_init(&got.events);
    FerryError err;
    /* Cut inside inners[1].x (offset of inners payload + 4 + 4 + 3 + 1 byte). */
    size_t cut = 0;
    for (size_t i = 0; i + 8 <= sizeof(golden_all); i++)
        if (!memcmp(golden_all + i, "\x03\x00\x04\x00", 4)) {
            cut = i + 1;
            break;
        }
    assert_true(cut > 0);
    assert_int_equal(load_from(&all_desc, &got, golden_all, cut, 1, &err), -ENODATA);
    assert_non_null(strstr(err.msg, "all.inners[1].x: stream ended 1 bytes early"));
    all_release(&got);
}

/* ---- versions -------------------------------------------------------------------------------- */

typedef struct Dev {
    uint32_t a;
    uint32_t b; /* since 2 */
} Dev;

static const FerryDesc dev_v1 = {
    .name = "dev",
    .version = 1,
    .size = sizeof(Dev),
    .fields = (const FerryField[]){FERRY_FIELD(Dev, a), FERRY_END},
};
static const FerryDesc dev_v2 = {
    .name = "dev",
    .version = 2,
    .min_version = 1,
    .size = sizeof(Dev),
    .fields = (const FerryField[]){FERRY_FIELD(Dev, a), FERRY_FIELD(Dev, b, .since = 2), FERRY_END},
};
static const FerryDesc dev_v3_min2 = {
    .name = "dev",
    .version = 3,
    .min_version = 2,
    .size = sizeof(Dev),
    .fields = (const FerryField[]){FERRY_FIELD(Dev, a), FERRY_FIELD(Dev, b, .since = 2), FERRY_END},
};

static void test_version_old_stream_on_new_build(void **state)
{
    (void)state;
    Dev src = {7, 0}, dst = {0, 99};
    size_t len;
    uint8_t *wire = save_to(&dev_v1, &src, &len);
    assert_int_equal(len, 4 + 1);
    FerryError err;
    assert_int_equal(load_from(&dev_v2, &dst, wire, len, 1, &err), 0);
    assert_int_equal(dst.a, 7);
    assert_int_equal(dst.b, 99); /* not in a v1 stream: untouched */
    free(wire);
}

static void test_version_new_stream_on_old_build(void **state)
{
    (void)state;
    Dev src = {7, 8}, dst = {0};
    size_t len;
    uint8_t *wire = save_to(&dev_v2, &src, &len);
    FerryError err;
    assert_int_equal(load_from(&dev_v1, &dst, wire, len, 2, &err), -EPROTONOSUPPORT);
    assert_string_equal(
        err.msg, "dev: stream has version 2, newer than this build's version 1 (offset 0x0)");
    free(wire);
}

static void test_version_too_old(void **state)
{
    (void)state;
    Dev src = {7, 0}, dst = {0};
    size_t len;
    uint8_t *wire = save_to(&dev_v1, &src, &len);
    FerryError err;
    assert_int_equal(load_from(&dev_v3_min2, &dst, wire, len, 1, &err), -EPROTONOSUPPORT);
    assert_non_null(strstr(err.msg, "older than the oldest version 2"));
    free(wire);
}

/* ---- exists() -------------------------------------------------------------------------------- */

typedef struct Cond {
    bool has;
    uint32_t val;
} Cond;

static bool cond_has(const void *o, uint32_t v)
{
    (void)v;
    return ((const Cond *)o)->has;
}

static const FerryDesc cond_desc = {
    .name = "cond",
    .version = 1,
    .size = sizeof(Cond),
    .fields = (const FerryField[]){FERRY_FIELD(Cond, has),
                                   FERRY_FIELD(Cond, val, .exists = cond_has), FERRY_END},
};

static void test_exists_presence_byte(void **state)
{
    (void)state;
    Cond on = {true, 0x55}, off = {false, 0x66}, dst = {0};
    size_t len;
    uint8_t *wire = save_to(&cond_desc, &on, &len);
    static const uint8_t want_on[] = {0x01, 0x01, 0x55, 0, 0, 0, 0x00};
    assert_int_equal(len, sizeof(want_on));
    assert_memory_equal(wire, want_on, len);
    FerryError err;
    assert_int_equal(load_from(&cond_desc, &dst, wire, len, 1, &err), 0);
    assert_int_equal(dst.val, 0x55);
    free(wire);
    wire = save_to(&cond_desc, &off, &len);
    static const uint8_t want_off[] = {0x00, 0x00, 0x00};
    assert_memory_equal(wire, want_off, len);
    free(wire);
    /* A presence byte that contradicts the loaded state is an error, not a desync. */
    static const uint8_t lie[] = {0x00, 0x01, 0x55, 0, 0, 0, 0x00};
    dst = (Cond){0};
    assert_int_equal(load_from(&cond_desc, &dst, lie, sizeof(lie), 1, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "cond.val: the stream says the field is present"));
}

/* ---- subsections ----------------------------------------------------------------------------- */

typedef struct Conn {
    uint8_t state;
    uint8_t extra;
    uint32_t cursor;
} Conn;

static bool conn_extra_needed(const void *o)
{
    return ((const Conn *)o)->extra != 0;
}
static bool conn_cursor_needed(const void *o)
{
    return ((const Conn *)o)->cursor != 0;
}

static const FerryDesc conn_extra_desc = {
    .name = "conn/extra",
    .version = 1,
    .fields = (const FerryField[]){FERRY_FIELD(Conn, extra), FERRY_END},
};
static const FerryDesc conn_cursor_desc = {
    .name = "conn/cursor",
    .version = 1,
    .fields = (const FerryField[]){FERRY_FIELD(Conn, cursor), FERRY_END},
};
/* Source knows both subsections: extra is optional, cursor is mandatory. */
static const FerryDesc conn_src = {
    .name = "conn",
    .version = 1,
    .size = sizeof(Conn),
    .fields = (const FerryField[]){FERRY_FIELD(Conn, state), FERRY_END},
    .subsections =
        (const FerrySubsection[]){
            {&conn_extra_desc, conn_extra_needed, .optional = true},
            {&conn_cursor_desc, conn_cursor_needed, .optional = false},
            {NULL},
        },
};
/* An older destination knows no subsection. */
static const FerryDesc conn_old = {
    .name = "conn",
    .version = 1,
    .size = sizeof(Conn),
    .fields = (const FerryField[]){FERRY_FIELD(Conn, state), FERRY_END},
};

static void collect_warning(void *ctx, const char *msg)
{
    snprintf(ctx, FERRY_ERROR_MSG_MAX, "%s", msg);
}

static void test_subsection_not_needed_not_sent(void **state)
{
    (void)state;
    Conn c = {3, 0, 0};
    size_t len;
    uint8_t *wire = save_to(&conn_src, &c, &len);
    static const uint8_t want[] = {0x03, 0x00};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(wire, want, len);
    Conn d = {0};
    FerryError err;
    assert_int_equal(load_from(&conn_old, &d, wire, len, 1, &err), 0);
    assert_int_equal(d.state, 3);
    free(wire);
}

static void test_subsection_known_loaded(void **state)
{
    (void)state;
    Conn c = {3, 9, 0x1234}, d = {0};
    size_t len;
    uint8_t *wire = save_to(&conn_src, &c, &len);
    static const uint8_t want[] = {
        0x03,                                                          /* state */
        0x02, 10,   'c', 'o', 'n',  'n', '/', 'e', 'x', 't', 'r', 'a', /* optional, name */
        0x01, 0,    0,   0,   0x02, 0,   0,   0,                       /* version 1, length 2 */
        0x09, 0x00,                                                    /* extra = 9, end */
        0x01, 11,   'c', 'o', 'n',  'n', '/', 'c', 'u', 'r', 's', 'o', 'r', /* mandatory */
        0x01, 0,    0,   0,   0x05, 0,   0,   0, /* version 1, length 5 */
        0x34, 0x12, 0,   0,   0x00,              /* cursor, end */
        0x00,                                    /* end of conn's subsections */
    };
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(wire, want, len);
    FerryError err;
    assert_int_equal(load_from(&conn_src, &d, wire, len, 1, &err), 0);
    assert_memory_equal(&c, &d, sizeof(c));
    free(wire);
}

static void test_subsection_optional_unknown_skipped(void **state)
{
    (void)state;
    Conn c = {3, 9, 0}, d = {0};
    size_t len;
    uint8_t *wire = save_to(&conn_src, &c, &len);
    char warning[FERRY_ERROR_MSG_MAX] = "";
    FerryLoadOpts opts = {collect_warning, warning};
    FerryIO *io = ferry_io_mem_reader(wire, len);
    FerryError err;
    assert_int_equal(ferry_state_load(&conn_old, &d, io, 1, &opts, &err), 0);
    assert_int_equal(ferry_io_offset(io), len);
    assert_int_equal(d.state, 3);
    assert_string_equal(warning,
                        "conn: skipped optional subsection 'conn/extra' (2 bytes) unknown to this "
                        "build");
    ferry_io_destroy(io);
    free(wire);
}

static void test_subsection_mandatory_unknown_fails(void **state)
{
    (void)state;
    Conn c = {3, 0, 77}, d = {0};
    size_t len;
    uint8_t *wire = save_to(&conn_src, &c, &len);
    FerryError err;
    assert_int_equal(load_from(&conn_old, &d, wire, len, 1, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "unknown subsection 'conn/cursor' in 'conn' (not optional)"));
    free(wire);
}

static void test_subsection_length_mismatch(void **state)
{
    (void)state;
    Conn c = {3, 0, 77}, d = {0};
    size_t len;
    uint8_t *wire = save_to(&conn_src, &c, &len);
    /* Claim the cursor subsection is 7 bytes long: 2 bytes would be left unread. */
    size_t len_at = 1 + 1 + 1 + 11 + 4;
    assert_int_equal(wire[len_at], 5);
    uint8_t *bigger = calloc(1, len + 2);
    memcpy(bigger, wire, len_at);
    bigger[len_at] = 7;
    memcpy(bigger + len_at + 1, wire + len_at + 1, len - len_at - 1 - 1);
    FerryError err;
    assert_int_equal(load_from(&conn_src, &d, bigger, len + 2, 1, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "conn.conn/cursor: 2 bytes of the subsection left unread"));
    free(bigger);
    free(wire);
}

/* ---- lists: load replaces ------------------------------------------------------------------ */

static int released;
static void count_release(void *elem)
{
    released++;
    free(elem);
}

typedef struct Queue {
    FerryList q;
} Queue;

static const FerryDesc queue_desc = {
    .name = "queue",
    .version = 1,
    .size = sizeof(Queue),
    .fields = (const FerryField[]){FERRY_LIST(Queue, q, Event, link, &event_desc,
                                              .release = count_release, .max = 4),
                                   FERRY_END},
};

static void test_list_load_replaces(void **state)
{
    (void)state;
    Queue src, dst;
    ferry_list_init(&src.q);
    ferry_list_init(&dst.q);
    ferry_list_push_tail(&src.q, &event_new(1, 1)->link);
    for (uint32_t i = 0; i < 3; i++) /* stale destination events */
        ferry_list_push_tail(&dst.q, &event_new(100 + i, 9)->link);
    size_t len;
    uint8_t *wire = save_to(&queue_desc, &src, &len);
    FerryError err;
    released = 0;
    assert_int_equal(load_from(&queue_desc, &dst, wire, len, 1, &err), 0);
    assert_int_equal(released, 3);
    assert_int_equal(dst.q.len, 1);
    assert_int_equal(ferry_container_of(dst.q.head, Event, link)->id, 1);
    ferry_state_release(&queue_desc, &src);
    ferry_state_release(&queue_desc, &dst);
    assert_int_equal(released, 5);
    free(wire);
}

static void test_list_bounded(void **state)
{
    (void)state;
    static const uint8_t hostile[] = {0x01, 0, 0, 0, 0x00, 0x00, 0x00, 0x80, 0x00};
    Queue dst;
    ferry_list_init(&dst.q);
    FerryError err;
    assert_int_equal(load_from(&queue_desc, &dst, hostile, sizeof(hostile), 1, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "queue.q: stream has 2147483648 list elements, at most 4"));
}

typedef struct Big {
    uint32_t n;
    uint64_t *p;
} Big;
static const FerryDesc big_desc = {
    .name = "big",
    .version = 1,
    .size = sizeof(Big),
    .fields = (const FerryField[]){FERRY_FIELD(Big, n), FERRY_ALLOC(Big, p, n, 1024), FERRY_END},
};

static void test_alloc_bounded(void **state)
{
    (void)state;
    /* n claims 2^31 elements: rejected before any allocation. */
    static const uint8_t hostile[] = {0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x80};
    Big b = {0};
    FerryError err;
    assert_int_equal(load_from(&big_desc, &b, hostile, sizeof(hostile), 1, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "big.p: stream has 2147483648 elements, at most 1024"));
    assert_null(b.p);
}

static void test_var_count_mismatch(void **state)
{
    (void)state;
    All a;
    all_fill(&a);
    size_t len;
    uint8_t *wire = save_to(&all_desc, &a, &len);
    /* Change nvar from 2 to 1: the array's own count (2) no longer agrees. */
    size_t at = 0;
    for (size_t i = 0; i + 5 < len; i++)
        if (wire[i] == 0x02 && !memcmp(wire + i + 1, "\x02\x00\x00\x00\x11", 5)) {
            at = i;
            break;
        }
    assert_true(at > 0);
    wire[at] = 1;
    All got;
    memset(&got, 0, sizeof(got));
    ferry_list_init(&got.events);
    FerryError err;
    assert_int_equal(load_from(&all_desc, &got, wire, len, 1, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "all.var: stream has 2 elements but field 'nvar' says 1"));
    all_release(&got);
    all_release(&a);
    free(wire);
}

static void test_bad_bool_and_string(void **state)
{
    (void)state;
    All a;
    all_fill(&a);
    size_t len;
    uint8_t *wire = save_to(&all_desc, &a, &len);
    FerryError err;
    All got;
    /* flag sits at offset 30 */
    wire[30] = 7;
    memset(&got, 0, sizeof(got));
    ferry_list_init(&got.events);
    assert_int_equal(load_from(&all_desc, &got, wire, len, 1, &err), -EBADMSG);
    assert_string_equal(err.msg, "all.flag: invalid bool value 0x07 (offset 0x1f)");
    all_release(&got);
    wire[30] = 1;
    wire[34] = 200; /* name length */
    memset(&got, 0, sizeof(got));
    ferry_list_init(&got.events);
    assert_int_equal(load_from(&all_desc, &got, wire, len, 1, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "all.name: string of 200 bytes does not fit in 8"));
    all_release(&got);
    all_release(&a);
    free(wire);
}

typedef struct Flag {
    uint16_t a;
    bool on;
} Flag;
typedef struct Flags {
    Flag v[3];
} Flags;
static const FerryDesc flag_desc = {
    .name = "flag",
    .version = 1,
    .size = sizeof(Flag),
    .fields = (const FerryField[]){FERRY_FIELD(Flag, a), FERRY_FIELD(Flag, on), FERRY_END},
};
static const FerryDesc flags_desc = {
    .name = "flags",
    .version = 1,
    .size = sizeof(Flags),
    .fields = (const FerryField[]){FERRY_ARRAY(Flags, v, .desc = &flag_desc), FERRY_END},
};

/* Arrays of small structs take the flat fast path; it validates like the generic walk. */
static void test_struct_array_fast_path(void **state)
{
    (void)state;
    Flags f = {{{1, true}, {2, false}, {3, true}}}, d;
    size_t len;
    uint8_t *wire = save_to(&flags_desc, &f, &len);
    static const uint8_t want[] = {3, 0, 0, 0, 1, 0, 0, 0,             /* count 3, version 1 */
                                   1, 0, 1, 0, 2, 0, 0, 0, 3, 0, 1, 0, /* {a, on, end} x3 */
                                   0};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(wire, want, len);
    FerryError err;
    memset(&d, 0, sizeof(d));
    assert_int_equal(load_from(&flags_desc, &d, wire, len, 1, &err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d.v[i].a, f.v[i].a);
        assert_int_equal(d.v[i].on, f.v[i].on);
    }
    wire[8 + 4 + 2] = 9; /* v[1].on */
    assert_int_equal(load_from(&flags_desc, &d, wire, len, 1, &err), -EBADMSG);
    assert_string_equal(err.msg, "flags.v[1].on: invalid bool value 0x09 (offset 0xf)");
    wire[8 + 4 + 2] = 0;
    wire[8 + 4 + 3] = 1; /* v[1] claims a subsection: the generic walk takes over and fails */
    assert_true(load_from(&flags_desc, &d, wire, len, 1, &err) < 0);
    assert_true(strncmp(err.msg, "flags.v[1]", 10) == 0);
    free(wire);
}

/* ---- hooks ------------------------------------------------------------------------------------
 */

typedef struct Hooked {
    uint32_t v;
    char log[64];
    int fail_at; /* 1 pre_save, 2 post_save, 3 pre_load, 4 post_load */
} Hooked;

static int hook_common(void *o, const char *name, int which, uint32_t version, FerryError *err)
{
    Hooked *h = o;
    char tmp[16];
    snprintf(tmp, sizeof(tmp), "%s%u,", name, version);
    strncat(h->log, tmp, sizeof(h->log) - strlen(h->log) - 1);
    if (h->fail_at == which)
        return ferry_error_set(err, -EIO, "%s refused", name);
    return 0;
}
static int h_pre_save(void *o, uint32_t v, FerryError *e)
{
    return hook_common(o, "S", 1, v, e);
}
static int h_post_save(void *o, uint32_t v, FerryError *e)
{
    return hook_common(o, "s", 2, v, e);
}
static int h_pre_load(void *o, uint32_t v, FerryError *e)
{
    return hook_common(o, "L", 3, v, e);
}
static int h_post_load(void *o, uint32_t v, FerryError *e)
{
    return hook_common(o, "l", 4, v, e);
}

static const FerryDesc hook_sub = {
    .name = "hooked/sub",
    .version = 1,
    .fields = (const FerryField[]){FERRY_END},
    .post_load = h_post_load,
};
static const FerryDesc hooked_desc = {
    .name = "hooked",
    .version = 2,
    .min_version = 1,
    .size = sizeof(Hooked),
    .fields = (const FerryField[]){FERRY_FIELD(Hooked, v), FERRY_END},
    .subsections = (const FerrySubsection[]){{&hook_sub, NULL, false}, {NULL}},
    .pre_save = h_pre_save,
    .post_save = h_post_save,
    .pre_load = h_pre_load,
    .post_load = h_post_load,
};

static void test_hooks_order(void **state)
{
    (void)state;
    Hooked h = {.v = 1}, d = {0};
    size_t len;
    uint8_t *wire = save_to(&hooked_desc, &h, &len);
    assert_string_equal(h.log, "S2,s2,");
    FerryError err;
    assert_int_equal(load_from(&hooked_desc, &d, wire, len, 2, &err), 0);
    /* parent post_load runs after its subsections' */
    assert_string_equal(d.log, "L2,l1,l2,");
    free(wire);
}

static void test_hooks_errors(void **state)
{
    (void)state;
    FerryError err;
    Hooked src = {.v = 1};
    size_t len;
    uint8_t *wire = save_to(&hooked_desc, &src, &len);
    char want[160];
    FerryIO *io = ferry_io_mem_writer();
    Hooked h = {.v = 1, .fail_at = 1};
    assert_int_equal(ferry_state_save(&hooked_desc, &h, io, &err), -EIO);
    assert_string_equal(err.msg, "hooked: pre_save failed: S refused (offset 0x0)");
    assert_string_equal(h.log, "S2,"); /* nothing else ran */
    h = (Hooked){.v = 1, .fail_at = 2};
    assert_int_equal(ferry_state_save(&hooked_desc, &h, io, &err), -EIO);
    /* post_save runs once the whole description is written */
    snprintf(want, sizeof(want), "hooked: post_save failed: s refused (offset 0x%zx)", len);
    assert_string_equal(err.msg, want);
    ferry_io_destroy(io);
    Hooked d = {.fail_at = 3};
    assert_int_equal(load_from(&hooked_desc, &d, wire, len, 2, &err), -EIO);
    assert_string_equal(err.msg, "hooked: pre_load failed: L refused (offset 0x0)");
    assert_int_equal(d.v, 0);
    d = (Hooked){.fail_at = 4};
    assert_int_equal(load_from(&hooked_desc, &d, wire, len, 2, &err), -EIO);
    /* the subsection's post_load, before the parent's end-of-subsections byte */
    snprintf(want, sizeof(want), "hooked.hooked/sub: post_load failed: l refused (offset 0x%zx)",
             len - 1);
    assert_string_equal(err.msg, want);
    free(wire);
}

/* ---- description checks -----------------------------------------------------------------------
 */

static void test_desc_check_errors(void **state)
{
    (void)state;
    typedef struct S {
        uint32_t arr[4];
        uint8_t n;
        uint32_t x;
    } S;
    /* count field after its array */
    const FerryDesc bad_order = {
        .name = "bad",
        .version = 1,
        .fields = (const FerryField[]){FERRY_VARRAY(S, arr, n), FERRY_FIELD(S, n), FERRY_END},
    };
    FerryError err;
    assert_int_equal(ferry_desc_check(&bad_order, &err), -EINVAL);
    assert_string_equal(err.msg,
                        "description 'bad' field 'arr': count field 'n' must be an earlier "
                        "unsigned field");
    const FerryDesc bad_since = {
        .name = "bad",
        .version = 1,
        .fields = (const FerryField[]){FERRY_FIELD(S, x, .since = 3), FERRY_END},
    };
    assert_int_equal(ferry_desc_check(&bad_since, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "since 3 is newer than the description's version 1"));
    const FerryDesc dup = {
        .name = "bad",
        .version = 1,
        .fields = (const FerryField[]){FERRY_FIELD(S, x), FERRY_FIELD(S, x), FERRY_END},
    };
    assert_int_equal(ferry_desc_check(&dup, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "field 'x' twice"));
    const FerryDesc minv = {.name = "bad", .version = 1, .min_version = 2};
    assert_int_equal(ferry_desc_check(&minv, &err), -EINVAL);
}

/* ---- IO backends ----------------------------------------------------------------------------- */

static void sum_bytes(void *ctx, const void *data, size_t len)
{
    uint64_t *sum = ctx;
    for (size_t i = 0; i < len; i++)
        *sum = *sum * 31 + ((const uint8_t *)data)[i];
}

static void test_file_io_and_checksum(void **state)
{
    (void)state;
    char path[] = "/tmp/ferry-test-io-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FerryIO *w = ferry_io_fd_writer(fd, true);
    uint64_t wsum = 0, rsum = 0, want = 0;
    ferry_io_set_checksum(w, sum_bytes, &wsum);
    All a;
    all_fill(&a);
    FerryError err;
    for (int i = 0; i < 5000; i++) /* > buffer size, exercises refills */
        assert_int_equal(ferry_state_save(&all_desc, &a, w, &err), 0);
    assert_int_equal(ferry_io_flush(w, &err), 0);
    ferry_io_checksum_sync(w);
    uint64_t total = ferry_io_offset(w);
    assert_int_equal(total, 5000 * sizeof(golden_all));
    ferry_io_destroy(w);
    for (int i = 0; i < 5000; i++)
        sum_bytes(&want, golden_all, sizeof(golden_all));
    assert_true(wsum == want);
    FerryIO *r = ferry_io_file_reader(path, &err);
    assert_non_null(r);
    ferry_io_set_checksum(r, sum_bytes, &rsum);
    for (int i = 0; i < 5000; i++) {
        All got;
        memset(&got, 0, sizeof(got));
        ferry_list_init(&got.events);
        assert_int_equal(ferry_state_load(&all_desc, &got, r, 1, NULL, &err), 0);
        assert_int_equal(got.u32, 0xdeadbeef);
        all_release(&got);
    }
    assert_true(ferry_io_at_eof(r));
    ferry_io_checksum_sync(r);
    assert_true(rsum == want);
    uint8_t b;
    assert_int_equal(ferry_io_read(r, &b, 1, &err), -ENODATA);
    ferry_io_destroy(r);
    all_release(&a);
    unlink(path);
    assert_null(ferry_io_file_reader("/nonexistent/ferry", &err));
    assert_non_null(strstr(err.msg, "/nonexistent/ferry: cannot open for reading"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_desc_check_ok),
        cmocka_unit_test(test_golden_save),
        cmocka_unit_test(test_golden_load_round_trip),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_truncation_names_field),
        cmocka_unit_test(test_version_old_stream_on_new_build),
        cmocka_unit_test(test_version_new_stream_on_old_build),
        cmocka_unit_test(test_version_too_old),
        cmocka_unit_test(test_exists_presence_byte),
        cmocka_unit_test(test_subsection_not_needed_not_sent),
        cmocka_unit_test(test_subsection_known_loaded),
        cmocka_unit_test(test_subsection_optional_unknown_skipped),
        cmocka_unit_test(test_subsection_mandatory_unknown_fails),
        cmocka_unit_test(test_subsection_length_mismatch),
        cmocka_unit_test(test_list_load_replaces),
        cmocka_unit_test(test_list_bounded),
        cmocka_unit_test(test_alloc_bounded),
        cmocka_unit_test(test_var_count_mismatch),
        cmocka_unit_test(test_bad_bool_and_string),
        cmocka_unit_test(test_struct_array_fast_path),
        cmocka_unit_test(test_hooks_order),
        cmocka_unit_test(test_hooks_errors),
        cmocka_unit_test(test_desc_check_errors),
        cmocka_unit_test(test_file_io_and_checksum),
    };
    return cmocka_run_group_tests_name("state-codec", tests, NULL, NULL);
}

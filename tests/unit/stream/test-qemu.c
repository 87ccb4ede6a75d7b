/* Unit tests of the QEMU stream reader on hand-built byte sequences: every record kind, each
 * command, the vmdesc quirks, footer resync, and truncation at every byte. */
/* cmocka.h needs setjmp.h, stdarg.h and stddef.h before it. */
// clang-format off
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry/stream/qemu.h"
// clang-format on

/* ---- byte builder ---------------------------------------------------------------------- */

typedef struct Buf {
    uint8_t d[1 << 16];
    size_t n;
} Buf;

static void u8(Buf *b, uint8_t v)
{
    b->d[b->n++] = v;
}
static void be16(Buf *b, uint16_t v)
{
    u8(b, v >> 8), u8(b, v & 0xff);
}
static void be32(Buf *b, uint32_t v)
{
    be16(b, v >> 16), be16(b, v & 0xffff);
}
static void be64(Buf *b, uint64_t v)
{
    be32(b, v >> 32), be32(b, (uint32_t)v);
}
static void bytes(Buf *b, const void *p, size_t n)
{
    memcpy(b->d + b->n, p, n), b->n += n;
}
static void fill(Buf *b, uint8_t v, size_t n)
{
    memset(b->d + b->n, v, n), b->n += n;
}
static void sstr(Buf *b, const char *s)
{
    u8(b, (uint8_t)strlen(s)), bytes(b, s, strlen(s));
}

static void header(Buf *b)
{
    be32(b, 0x5145564d), be32(b, 3);
}

/* Configuration with 512-byte target pages so RAM vectors stay small. */
static void config(Buf *b, const char *machine)
{
    u8(b, 0x07), be32(b, (uint32_t)strlen(machine)), bytes(b, machine, strlen(machine));
    u8(b, 0x05), sstr(b, "configuration/target-page-bits"), be32(b, 1), be32(b, 9);
}

static void full(Buf *b, uint32_t id, const char *idstr, uint32_t inst, uint32_t ver)
{
    u8(b, 0x04), be32(b, id), sstr(b, idstr), be32(b, inst), be32(b, ver);
}

static void start(Buf *b, uint32_t id, const char *idstr, uint32_t inst, uint32_t ver)
{
    u8(b, 0x01), be32(b, id), sstr(b, idstr), be32(b, inst), be32(b, ver);
}

static void footer(Buf *b, uint32_t id)
{
    u8(b, 0x7e), be32(b, id);
}

static void vmdesc(Buf *b, const char *json)
{
    u8(b, 0x06), be32(b, (uint32_t)strlen(json)), bytes(b, json, strlen(json));
}

/* RAM START with blocks "a" (2 pages) and "b" (1 page) of 512 bytes. */
static void ram_start(Buf *b)
{
    start(b, 2, "ram", 0, 4);
    be64(b, 3 * 512 | 0x04);
    sstr(b, "a"), be64(b, 1024);
    sstr(b, "b"), be64(b, 512);
    be64(b, 0x10);
    footer(b, 2);
}

/* ---- event log ------------------------------------------------------------------------- */

typedef struct Log {
    char s[8192];
    size_t n;
} Log;

static void logf_(Log *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(l->s + l->n, sizeof(l->s) - l->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        l->n += (size_t)k;
}

static int on_config(void *ctx, const FerryQemuConfig *c, FerryError *err)
{
    (void)err;
    logf_(ctx, "config %s bits %u caps %zu uuid %d\n", c->machine, c->target_page_bits, c->n_caps,
          c->has_uuid);
    return 0;
}

static int on_command(void *ctx, const FerryQemuCommand *c, FerryError *err)
{
    (void)err;
    logf_(ctx, "cmd %u len %u\n", c->cmd, c->len);
    return 0;
}

static int on_begin(void *ctx, const FerryQemuSection *s, FerryError *err)
{
    (void)err;
    static const char *kinds[] = {"ram", "htab", "device", "undecoded"};
    logf_(ctx, "section %u %s id %u inst %u v%u %s\n", s->type, s->idstr, s->section_id,
          s->instance_id, s->version_id, kinds[s->kind]);
    return 0;
}

static int on_end(void *ctx, const FerryQemuSection *s, FerryError *err)
{
    (void)err;
    logf_(ctx, "end %u payload 0x%lx+%lu footer %d\n", s->section_id, (unsigned long)s->payload,
          (unsigned long)(s->payload_end - s->payload), s->has_footer);
    return 0;
}

static int on_block(void *ctx, const FerryQemuRamBlock *b, FerryError *err)
{
    (void)err;
    logf_(ctx, "block %s 0x%lx addr 0x%lx\n", b->name, (unsigned long)b->length,
          (unsigned long)b->addr);
    return 0;
}

static int on_page(void *ctx, const FerryQemuPage *p, FerryError *err)
{
    (void)err;
    static const char *kinds[] = {"zero", "normal", "xbzrle", "compressed"};
    logf_(ctx, "page %s 0x%lx %s len %zu first %02x\n", p->block->name, (unsigned long)p->addr,
          kinds[p->kind], p->len, p->len ? p->data[0] : p->fill);
    return 0;
}

static int on_node_begin(void *ctx, const FerryQemuNode *n, FerryError *err)
{
    (void)err;
    logf_(ctx, "%s %s[%ld] {\n", n->kind == FERRY_QEMU_NODE_STRUCT ? "struct" : "sub", n->name,
          (long)n->index);
    return 0;
}

static int on_node_end(void *ctx, const FerryQemuNode *n, FerryError *err)
{
    (void)n, (void)err;
    logf_(ctx, "}\n");
    return 0;
}

static int on_field(void *ctx, const FerryQemuField *f, FerryError *err)
{
    (void)err;
    logf_(ctx, "field %s[%ld] %s:", f->name, (long)f->index, f->type);
    for (size_t i = 0; i < f->size; i++)
        logf_(ctx, " %02x", f->data[i]);
    logf_(ctx, "\n");
    return 0;
}

static const FerryQemuVisitor visitor = {on_config, on_command,    on_begin,    on_end,  on_block,
                                         on_page,   on_node_begin, on_node_end, on_field};

/* Run the reader over b; returns rc, fills log and err. */
static int run(const Buf *b, unsigned flags, Log *log, FerryError *err)
{
    FerryQemuReader *r = ferry_qemu_reader_mem(b->d, b->n, flags, err);
    assert_non_null(r);
    if (log)
        log->n = 0, log->s[0] = '\0';
    int rc = ferry_qemu_reader_run(r, &visitor, log ? (void *)log : (void *)&(Log){0}, err);
    ferry_qemu_reader_destroy(r);
    return rc;
}

static void expect_ok(const Buf *b, unsigned flags, Log *log)
{
    FerryError err;
    int rc = run(b, flags, log, &err);
    if (rc != 0)
        fail_msg("rc %d: %s", rc, err.msg);
}

static void expect_error(const Buf *b, const char *msg)
{
    FerryError err;
    Log log;
    int rc = run(b, 0, &log, &err);
    if (rc == 0 || strcmp(err.msg, msg))
        fail_msg("rc %d, error '%s', expected '%s'", rc, err.msg, msg);
}

/* ---- tests ----------------------------------------------------------------------------- */

/* A stream with every RAM record kind, a described device, and the vmdesc trailer. */
static size_t build_full_stream(Buf *b)
{
    header(b);
    config(b, "pc-q35-7.2");
    ram_start(b);
    u8(b, 0x02), be32(b, 2);                                   /* PART */
    be64(b, 0x000 | 0x08), sstr(b, "a"), fill(b, 0xaa, 512);   /* PAGE */
    be64(b, 0x200 | 0x02 | 0x20), u8(b, 0);                    /* ZERO|CONTINUE */
    be64(b, 0x000 | 0x40), sstr(b, "b"), u8(b, 1), be16(b, 3); /* XBZRLE: zrun 1, nzrun 1 */
    u8(b, 1), u8(b, 1), u8(b, 0x55);
    static const uint8_t z[] = {0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0x23,
                                0x00, 0x00, 0x02, 0x00, 0x00, 0x01};
    be64(b, 0x200 | 0x100), sstr(b, "a"), be32(b, sizeof(z)), bytes(b, z, sizeof(z)); /* COMPRESS */
    be64(b, 0x10);
    footer(b, 2);
    full(b, 3, "dev", 0x80000000u, 2);
    be32(b, 0x01020304);         /* u32 */
    u8(b, 1);                    /* bool */
    be16(b, 0xfffe), be16(b, 7); /* arr[2] int16 */
    u8(b, 9);                    /* st.x */
    u8(b, 0x05), sstr(b, "dev/sub"), be32(b, 1), u8(b, 0x42);
    footer(b, 3);
    size_t eof = b->n;
    u8(b, 0x00);
    vmdesc(b, "{\"page_size\": 512, \"devices\": [{\"name\": \"dev\", \"instance_id\": 2147483648,"
              " \"vmsd_name\": \"dev\", \"version\": 2, \"fields\": ["
              "{\"name\": \"u\", \"type\": \"uint32\", \"size\": 4},"
              "{\"name\": \"flag\", \"type\": \"bool\", \"size\": 1},"
              "{\"name\": \"arr\", \"array_len\": 2, \"type\": \"int16\", \"size\": 2},"
              "{\"name\": \"st\", \"type\": \"struct\", \"struct\": {\"vmsd_name\": \"in\","
              " \"version\": 1, \"fields\": [{\"name\": \"x\", \"type\": \"uint8\", \"size\": 1}]},"
              " \"size\": 1}],"
              " \"subsections\": [{\"vmsd_name\": \"dev/sub\", \"version\": 1, \"fields\": ["
              "{\"name\": \"y\", \"type\": \"uint8\", \"size\": 9, \"size\": 1}]}]}]}");
    return eof;
}

static void test_full_stream(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    build_full_stream(&b);
    Log log;
    expect_ok(&b, 0, &log);
    assert_string_equal(log.s, "config pc-q35-7.2 bits 9 caps 0 uuid 0\n"
                               "section 1 ram id 2 inst 0 v4 ram\n"
                               "block a 0x400 addr 0xffffffffffffffff\n"
                               "block b 0x200 addr 0xffffffffffffffff\n"
                               "end 2 payload 0x50+36 footer 1\n"
                               "section 2 ram id 2 inst 0 v4 ram\n"
                               "page a 0x0 normal len 512 first aa\n"
                               "page a 0x200 zero len 0 first 00\n"
                               "page b 0x0 xbzrle len 3 first 01\n"
                               "page a 0x200 compressed len 13 first 78\n"
                               "end 2 payload 0x7e+582 footer 1\n"
                               "section 4 dev id 3 inst 2147483648 v2 device\n"
                               "field u[-1] uint32: 01 02 03 04\n"
                               "field flag[-1] bool: 01\n"
                               "field arr[0] int16: ff fe\n"
                               "field arr[1] int16: 00 07\n"
                               "struct st[-1] {\n"
                               "field x[-1] uint8: 09\n"
                               "}\n"
                               "sub dev/sub[-1] {\n"
                               "field y[-1] uint8: 42\n"
                               "}\n"
                               "end 3 payload 0x2da+24 footer 1\n");
}

/* Every proper prefix fails with an offset, except the one ending right after EOF (a valid
 * stream without trailer); the reader never reads outside the buffer (ASan build). */
static void test_truncation_every_byte(void **state)
{
    (void)state;
    static Buf b, p;
    b.n = 0;
    size_t eof = build_full_stream(&b);
    for (size_t n = 0; n < b.n; n++) {
        p.n = 0;
        bytes(&p, b.d, n);
        FerryError err;
        int rc = run(&p, 0, NULL, &err);
        if (n == eof + 1) {
            assert_int_equal(rc, 0);
            continue;
        }
        if (rc == 0)
            fail_msg("prefix of %zu bytes accepted", n);
        assert_non_null(strstr(err.msg, "at 0x"));
    }
}

static void test_resync_without_vmdesc(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    build_full_stream(&b);
    Log log;
    expect_ok(&b, FERRY_QEMU_NO_VMDESC, &log);
    assert_non_null(strstr(log.s, "section 4 dev id 3 inst 2147483648 v2 undecoded\n"
                                  "end 3 payload 0x2da+24 footer 1\n"));
}

/* A 7e 00000003 inside the payload that is not followed by a valid item is not a footer. */
static void test_resync_false_footer(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    header(&b);
    full(&b, 3, "dev", 0, 1);
    footer(&b, 3), u8(&b, 0x99), fill(&b, 0, 4); /* fake footer + junk */
    footer(&b, 3);
    u8(&b, 0);
    Log log;
    expect_ok(&b, 0, &log);
    assert_non_null(strstr(log.s, "end 3 payload 0x19+10 footer 1\n"));
}

static void test_footer_mismatch(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    size_t eof = build_full_stream(&b);
    b.d[eof - 1] = 4; /* the device footer's id */
    expect_error(&b, "section 'dev' (id 3) at 0x2f2: reading footer: id 4 does not match 3");
}

static void test_vmdesc_subsection_mismatch(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    size_t eof = build_full_stream(&b);
    b.d[eof - 5 - 1 - 4 - 3] = 'X'; /* "dev/sub" -> "dev/Xub" */
    expect_error(&b, "section 'dev' (id 3) at 0x2e4: reading subsection 'dev/sub': the stream has "
                     "'dev/Xub'");
}

static void test_ram_errors(void **state)
{
    (void)state;
    static Buf b;
    struct {
        uint64_t hdr;
        const char *block;
        const char *msg;
    } cases[] = {
        {0x20 | 0x02, NULL,
         "section 'ram' (id 2) at 0x5a: reading RAM record: CONTINUE flag without a previous "
         "block"},
        {0x02, "zz", "section 'ram' (id 2) at 0x5a: reading RAM record: unknown RAM block 'zz'"},
        {0x400 | 0x02, "a",
         "section 'ram' (id 2) at 0x5a: reading RAM record: page at 0x400 is beyond block 'a' "
         "(length 0x400)"},
        {0x80, NULL,
         "section 'ram' (id 2) at 0x5a: reading RAM record: HOOK flag (RDMA) is invalid outside "
         "an RDMA channel"},
        {0x01, NULL,
         "section 'ram' (id 2) at 0x5a: reading RAM record: unknown combination of flags 0x1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        b.n = 0;
        header(&b);
        u8(&b, 0x07), be32(&b, 2), bytes(&b, "pc", 2);
        u8(&b, 0x05), sstr(&b, "configuration/target-page-bits"), be32(&b, 1), be32(&b, 9);
        u8(&b, 0x02 - 1); /* START */
        be32(&b, 2), sstr(&b, "ram"), be32(&b, 0), be32(&b, 4);
        be64(&b, 1024 | 0x04), sstr(&b, "a"), be64(&b, 1024);
        be64(&b, cases[i].hdr);
        if (cases[i].block)
            sstr(&b, cases[i].block);
        u8(&b, 0), be64(&b, 0x10), footer(&b, 2), u8(&b, 0);
        expect_error(&b, cases[i].msg);
    }
}

static void test_commands(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    header(&b);
    u8(&b, 0x08), be16(&b, 1), be16(&b, 0);              /* OPEN_RETURN_PATH */
    u8(&b, 0x08), be16(&b, 2), be16(&b, 4), be32(&b, 1); /* PING */
    u8(&b, 0x08), be16(&b, 3), be16(&b, 16), be64(&b, 0x1000), be64(&b, 4096); /* ADVISE */
    u8(&b, 0x08), be16(&b, 6), be16(&b, 3 + 1 + 16);                           /* RAM_DISCARD */
    u8(&b, 0), sstr(&b, "a"), u8(&b, 0), be64(&b, 0), be64(&b, 1);
    u8(&b, 0x08), be16(&b, 10), be16(&b, 2), sstr(&b, "a");           /* RECV_BITMAP */
    u8(&b, 0x08), be16(&b, 7), be16(&b, 4), be32(&b, 5 + 15 + 5 + 5); /* PACKAGED */
    u8(&b, 0x08), be16(&b, 4), be16(&b, 0);                           /*   LISTEN */
    full(&b, 3, "d", 0, 1), footer(&b, 3);                            /*   FULL */
    u8(&b, 0x08), be16(&b, 5), be16(&b, 0);                           /*   RUN */
    u8(&b, 0);
    Log log;
    expect_ok(&b, 0, &log);
    assert_string_equal(log.s,
                        "cmd 1 len 0\ncmd 2 len 4\ncmd 3 len 16\ncmd 6 len 20\n"
                        "cmd 10 len 2\ncmd 7 len 4\ncmd 4 len 0\n"
                        "section 4 d id 3 inst 0 v1 undecoded\nend 3 payload 0x68+0 footer 1\n"
                        "cmd 5 len 0\n");

    b.n = 0;
    header(&b), u8(&b, 0x08), be16(&b, 2), be16(&b, 3), fill(&b, 0, 3), u8(&b, 0);
    expect_error(&b, "at 0x8: reading command PING: length 3, expected 4");
    b.n = 0;
    header(&b), u8(&b, 0x08), be16(&b, 11), be16(&b, 0), u8(&b, 0);
    expect_error(&b, "at 0x8: reading command: unknown command 11");
    b.n = 0;
    header(&b), u8(&b, 0x08), be16(&b, 6), be16(&b, 4), u8(&b, 1), sstr(&b, "a"), u8(&b, 0);
    u8(&b, 0);
    expect_error(&b, "at 0x8: reading command POSTCOPY_RAM_DISCARD: malformed (version 0, name, "
                     "NUL, 16-byte ranges)");
    b.n = 0;
    header(&b), u8(&b, 0x08), be16(&b, 7), be16(&b, 4), be32(&b, 100), u8(&b, 0);
    expect_error(&b, "at 0x11: reading PACKAGED data: stream ended 99 bytes early");
}

static void test_config_caps_and_ignore_shared(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    header(&b);
    u8(&b, 0x07), be32(&b, 10), bytes(&b, "pc-q35-7.2", 10);
    u8(&b, 0x05), sstr(&b, "configuration/capabilities"), be32(&b, 1), be32(&b, 1);
    sstr(&b, "x-ignore-shared");
    u8(&b, 0x05), sstr(&b, "configuration/uuid"), be32(&b, 1), fill(&b, 0x11, 16);
    start(&b, 2, "ram", 0, 4);
    be64(&b, 4096 | 0x04), sstr(&b, "pc.ram"), be64(&b, 4096), be64(&b, 0x100000);
    be64(&b, 0x10), footer(&b, 2), u8(&b, 0);
    Log log;
    expect_ok(&b, 0, &log);
    assert_non_null(strstr(log.s, "config pc-q35-7.2 bits 0 caps 1 uuid 1\n"));
    assert_non_null(strstr(log.s, "block pc.ram 0x1000 addr 0x100000\n"));

    b.n = 0;
    header(&b);
    u8(&b, 0x07), be32(&b, 2), bytes(&b, "pc", 2);
    u8(&b, 0x05), sstr(&b, "configuration/bogus"), be32(&b, 1), u8(&b, 0);
    expect_error(&b, "at 0xf: reading configuration: unknown subsection 'configuration/bogus'");
}

static void test_htab(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    header(&b);
    start(&b, 5, "spapr/htab", 0, 1), be32(&b, 18), footer(&b, 5);
    u8(&b, 0x03), be32(&b, 5), be32(&b, 0);
    be32(&b, 3), be16(&b, 1), be16(&b, 2), fill(&b, 0xee, 16);
    be32(&b, 0), be16(&b, 0), be16(&b, 0), footer(&b, 5), u8(&b, 0);
    Log log;
    expect_ok(&b, 0, &log);
    assert_non_null(strstr(log.s, "section 3 spapr/htab id 5 inst 0 v1 htab\n"));

    b.n = 0;
    header(&b);
    start(&b, 5, "spapr/htab", 0, 1), be32(&b, 18), footer(&b, 5);
    u8(&b, 0x03), be32(&b, 5), be32(&b, 0);
    be32(&b, 16383), be16(&b, 2), be16(&b, 0), fill(&b, 0xee, 32);
    be32(&b, 0), be16(&b, 0), be16(&b, 0), footer(&b, 5), u8(&b, 0);
    expect_error(&b, "section 'spapr/htab' (id 5) at 0x32: reading htab chunk: entries 16383+2+0 "
                     "exceed the 16384-entry table");
}

static void test_trailer_after_ram_bytes(void **state)
{
    (void)state;
    /* The last RAM page ends in bytes that look like a trailer start (00 06 ...): the locate
     * must still pick the real one and decode the device. */
    static Buf b;
    b.n = 0;
    header(&b);
    config(&b, "m");
    start(&b, 2, "ram", 0, 4), be64(&b, 512 | 0x04), sstr(&b, "a"), be64(&b, 512);
    be64(&b, 0x08), sstr(&b, "a"), fill(&b, 0, 500), u8(&b, 0), u8(&b, 6), be32(&b, 7),
        fill(&b, '{', 6);
    be64(&b, 0x10), footer(&b, 2);
    full(&b, 3, "d", 0, 1), u8(&b, 0x7e), footer(&b, 3);
    u8(&b, 0);
    vmdesc(&b, "{\"page_size\": 512, \"devices\": [{\"name\": \"d\", \"instance_id\": 0, "
               "\"fields\": [{\"name\": \"x\", \"type\": \"uint8\", \"size\": 1}]}]}");
    Log log;
    expect_ok(&b, 0, &log);
    assert_non_null(strstr(log.s, "field x[-1] uint8: 7e\n"));
}

static void test_xbzrle_apply(void **state)
{
    (void)state;
    uint8_t page[16] = {0};
    static const uint8_t d[] = {2, 3, 'a', 'b', 'c', 1, 1, 'z'};
    FerryError err;
    assert_int_equal(ferry_qemu_xbzrle_apply(page, sizeof(page), d, sizeof(d), &err), 0);
    assert_memory_equal(page, "\0\0abc\0z", 7);
    static const uint8_t bad[] = {20, 1, 'x'}; /* zero run past the page */
    assert_int_equal(ferry_qemu_xbzrle_apply(page, sizeof(page), bad, sizeof(bad), &err), -EINVAL);
}

static void test_header_errors(void **state)
{
    (void)state;
    static Buf b;
    b.n = 0;
    be32(&b, 0x5145564d), be32(&b, 2);
    expect_error(&b, "at 0x4: reading format version: 2 (SaveVM v2 format is obsolete)");
    b.n = 0;
    header(&b), u8(&b, 0x09);
    expect_error(&b, "at 0x8: reading section type: unknown section type 0x09");
    b.n = 0;
    header(&b), u8(&b, 0x02), be32(&b, 9);
    expect_error(&b, "at 0x8: reading section header: PART for section id 9 that no START opened");
    b.n = 0;
    header(&b);
    expect_error(&b, "at 0x8: reading section type: stream ended 1 bytes early");
    assert_true(ferry_qemu_probe((const uint8_t *)"QEVM", 4));
    assert_false(ferry_qemu_probe((const uint8_t *)"FRRY", 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_stream),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_resync_without_vmdesc),
        cmocka_unit_test(test_resync_false_footer),
        cmocka_unit_test(test_footer_mismatch),
        cmocka_unit_test(test_vmdesc_subsection_mismatch),
        cmocka_unit_test(test_ram_errors),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_config_caps_and_ignore_shared),
        cmocka_unit_test(test_htab),
        cmocka_unit_test(test_trailer_after_ram_bytes),
        cmocka_unit_test(test_xbzrle_apply),
        cmocka_unit_test(test_header_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

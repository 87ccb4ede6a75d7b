/* ferry analyze: decode a migration stream. QEMU streams print as QEMU's analyze-migration.py
 * JSON (same keys and value spelling), or a summary; RAM can be extracted to sparse files. */
#include "analyze-ferry.h"
#include "commands.h"
#include "ferry/stream/qemu.h"
#include "ferry/stream/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Per section id, for --summary. */
typedef struct SecStat {
    uint32_t id;
    char idstr[256];
    uint32_t instance_id;
    uint32_t version_id;
    FerryQemuKind kind;
    uint8_t first_type;
    uint32_t headers;
    uint64_t bytes;
    uint64_t offset;
    bool footer;
} SecStat;

typedef struct BlockStat {
    char name[256];
    uint64_t length;
    uint64_t pages[4]; /* by FerryQemuPageKind */
    int fd;            /* --extract-ram */
} BlockStat;

typedef struct Analyze {
    bool summary;
    bool json;           /* default output: neither --summary nor --extract-ram */
    const char *section; /* --section filter */
    const char *extract; /* --extract-ram DIR */
    FILE *out;
    struct Out *jo; /* JSON output */

    /* JSON, streamed: one Level per open object (no tree is built) */
    struct Level {
        uint64_t count; /* entries printed */
        int ind;        /* indentation of the closing brace */
        bool list_open; /* a list of indexed elements is open under `list` */
        char list[256];
    } lv[80];
    int depth;
    bool entry_open; /* the current section is being printed */
    bool filtered;   /* the current section passes --section */
    char *vbuf;      /* formatted field value */
    struct {
        const char *type;
        int cls;
    } tcache[509];
    size_t vcap;

    /* summary */
    SecStat *secs;
    size_t n_secs, cap_secs;
    BlockStat *blocks;
    size_t n_blocks;
    uint64_t cmd_counts[11];

    /* extraction */
    uint8_t *page;
    size_t page_cap;
    int zero_fd; /* pending run of zero pages to punch */
    uint64_t zero_off, zero_len;
} Analyze;

/* ---- Python-compatible JSON output (json.JSONEncoder(indent=4, separators=(',', ': '))) ----- */

/* JSON output buffer: memcpy into 64 KiB, then one fwrite (stdio per call costs more here). */
typedef struct Out {
    FILE *f;
    size_t n;
    char buf[1 << 16];
} Out;

static void out_flush(Out *o)
{
    fwrite(o->buf, 1, o->n, o->f);
    o->n = 0;
}

static inline void out_put(Out *o, const char *s, size_t n)
{
    if (n > sizeof(o->buf) - o->n) {
        out_flush(o);
        if (n > sizeof(o->buf)) {
            fwrite(s, 1, n, o->f);
            return;
        }
    }
    memcpy(o->buf + o->n, s, n);
    o->n += n;
}

static inline void out_c(Out *o, char c)
{
    if (o->n == sizeof(o->buf))
        out_flush(o);
    o->buf[o->n++] = c;
}

static void out_s(Out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

static void py_str(Out *out, const char *s)
{
    /* Fast path: printable ASCII without quotes or backslashes is written as is. */
    size_t plain = 0;
    while (s[plain] >= 0x20 && s[plain] <= 0x7e && s[plain] != '"' && s[plain] != '\\')
        plain++;
    if (!s[plain]) {
        out_c(out, '"');
        out_put(out, s, plain);
        out_c(out, '"');
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    out_c(out, '"');
    while (*p) {
        uint32_t cp = *p;
        size_t n = 1;
        /* Decode UTF-8 so non-ASCII prints as \uXXXX like ensure_ascii; stray bytes as \u00XX. */
        if (cp >= 0xc2 && cp <= 0xf4) {
            size_t need = cp >= 0xf0 ? 4 : cp >= 0xe0 ? 3 : 2;
            uint32_t v = cp & (0x3f >> (need - 1));
            size_t k;
            for (k = 1; k < need && (p[k] & 0xc0) == 0x80; k++)
                v = v << 6 | (p[k] & 0x3f);
            if (k == need) {
                cp = v;
                n = need;
            }
        }
        p += n;
        switch (cp) {
        case '"':
            out_s(out, "\\\"");
            break;
        case '\\':
            out_s(out, "\\\\");
            break;
        case '\n':
            out_s(out, "\\n");
            break;
        case '\r':
            out_s(out, "\\r");
            break;
        case '\t':
            out_s(out, "\\t");
            break;
        case '\b':
            out_s(out, "\\b");
            break;
        case '\f':
            out_s(out, "\\f");
            break;
        default:
            if (cp >= 0x20 && cp <= 0x7e)
                out_c(out, (char)cp);
            else {
                char u[16];
                if (cp > 0xffff)
                    snprintf(u, sizeof(u), "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                             0xdc00 + ((cp - 0x10000) & 0x3ff));
                else
                    snprintf(u, sizeof(u), "\\u%04x", cp);
                out_s(out, u);
            }
        }
    }
    out_c(out, '"');
}

static void indent(Out *out, int n)
{
    static const char spaces[] = "                                                                ";
    while (n > 0) {
        int k = n < (int)sizeof(spaces) - 1 ? n : (int)sizeof(spaces) - 1;
        out_put(out, spaces, (size_t)k);
        n -= k;
    }
}

/* Python's layout: "{" newline, entries at +4 joined by ",\n", newline, "}" at the object's
 * own indentation; an empty object is "{}". "{" is printed lazily since emptiness is only known
 * at the end. Indexed fields with the same name form a list, as the script's lists do. */
static void close_list(Analyze *a)
{
    struct Level *L = &a->lv[a->depth];
    if (L->list_open) {
        out_c(a->jo, '\n');
        indent(a->jo, L->ind + 4);
        out_c(a->jo, ']');
        L->list_open = false;
    }
}

static void open_entry(Analyze *a, const char *key)
{
    struct Level *L = &a->lv[a->depth];
    close_list(a);
    out_s(a->jo, L->count++ ? ",\n" : "{\n");
    indent(a->jo, L->ind + 4);
    py_str(a->jo, key);
    out_put(a->jo, ": ", 2);
}

/* Start a list element under `name`; returns the element's indentation. */
static int list_elem(Analyze *a, const char *name)
{
    struct Level *L = &a->lv[a->depth];
    if (L->list_open && !strcmp(L->list, name)) {
        out_put(a->jo, ",\n", 2);
    } else {
        open_entry(a, name);
        out_put(a->jo, "[\n", 2);
        L->list_open = true;
        snprintf(L->list, sizeof(L->list), "%s", name);
    }
    indent(a->jo, L->ind + 8);
    return L->ind + 8;
}

static int push_object(Analyze *a, int ind, FerryError *err)
{
    if (a->depth + 1 >= (int)(sizeof(a->lv) / sizeof(a->lv[0])))
        return ferry_error_set(err, -EINVAL, "nesting too deep for output");
    a->depth++;
    a->lv[a->depth].count = 0;
    a->lv[a->depth].ind = ind;
    a->lv[a->depth].list_open = false;
    return 0;
}

static void close_object(Analyze *a)
{
    close_list(a);
    struct Level *L = &a->lv[a->depth];
    if (L->count) {
        out_c(a->jo, '\n');
        indent(a->jo, L->ind);
        out_c(a->jo, '}');
    } else {
        out_put(a->jo, "{}", 2);
    }
    a->depth--;
}

/* An entry "key": "string" in the current object. */
static void put_str(Analyze *a, const char *key, const char *value)
{
    open_entry(a, key);
    py_str(a->jo, value);
}

/* Value spelling of the script's VMSDField* classes, chosen by vmdesc type. */
/* 1 signed int, 0 unsigned int, -1 opaque bytes, 2 bool: the script's vmsd_field_readers. */
static int type_class(const char *type)
{
    static const char *const sints[] = {"int8",        "int16",       "int32",
                                        "int32 equal", "int32 le",    "int64",
                                        "int64 equal", "uint8 equal", "uint16 equal"};
    static const char *const uints[] = {"uint8", "uint16", "uint32", "uint32 equal", "uint64"};
    if (!strcmp(type, "bool"))
        return 2;
    for (size_t i = 0; i < sizeof(sints) / sizeof(*sints); i++)
        if (!strcmp(type, sints[i]))
            return 1;
    for (size_t i = 0; i < sizeof(uints) / sizeof(*uints); i++)
        if (!strcmp(type, uints[i]))
            return 0;
    return -1;
}

static int field_value(Analyze *a, const FerryQemuField *f)
{
    /* Type strings live in the vmdesc for the whole walk: cache their class by address. */
    size_t slot = ((uintptr_t)f->type >> 4) % (sizeof(a->tcache) / sizeof(a->tcache[0]));
    if (a->tcache[slot].type != f->type) {
        a->tcache[slot].type = f->type;
        a->tcache[slot].cls = type_class(f->type);
    }
    int sign = a->tcache[slot].cls;
    if (sign == 2)
        return f->size && f->data[0] ? 1 : 2;
    static const char hex[] = "0123456789abcdef";
    size_t need = f->size * 3 + 64;
    if (a->vcap < need) {
        char *nb = realloc(a->vbuf, need);
        if (!nb)
            return -ENOMEM;
        a->vbuf = nb;
        a->vcap = need;
    }
    char *buf = a->vbuf;
    size_t n = 0;
    if (sign >= 0 && f->size) {
        /* '0x%0{2*size}x' is the bytes in hex; signed negatives add " (-n)" (sizes <= 8). */
        buf[n++] = '0';
        buf[n++] = 'x';
        for (size_t i = 0; i < f->size; i++) {
            buf[n++] = hex[f->data[i] >> 4];
            buf[n++] = hex[f->data[i] & 15];
        }
        if (sign == 1 && f->size <= 8 && (f->data[0] & 0x80)) {
            uint64_t u = 0;
            for (size_t i = 0; i < f->size; i++)
                u = u << 8 | f->data[i];
            int64_t s = f->size == 8 ? (int64_t)u : (int64_t)(u - ((uint64_t)1 << (8 * f->size)));
            n += (size_t)snprintf(buf + n, need - n, " (%" PRId64 ")", s);
        }
    } else if (sign < 0) {
        for (size_t i = 0; i < f->size; i++) {
            if (i)
                buf[n++] = ' ';
            buf[n++] = hex[f->data[i] >> 4];
            buf[n++] = hex[f->data[i] & 15];
        }
    }
    buf[n] = '\0';
    return 0;
}

/* ---- summary bookkeeping --------------------------------------------------------------- */

static SecStat *sec_find(Analyze *a, uint32_t id)
{
    for (size_t i = a->n_secs; i-- > 0;)
        if (a->secs[i].id == id)
            return &a->secs[i];
    return NULL;
}

static const char *kind_name(FerryQemuKind k)
{
    switch (k) {
    case FERRY_QEMU_KIND_RAM:
        return "ram";
    case FERRY_QEMU_KIND_HTAB:
        return "htab";
    case FERRY_QEMU_KIND_DEVICE:
        return "device";
    default:
        return "undecoded";
    }
}

static bool passes(const Analyze *a, const char *idstr, uint32_t id)
{
    if (!a->section || !strcmp(a->section, idstr))
        return true;
    char key[300];
    snprintf(key, sizeof(key), "%s (%" PRIu32 ")", idstr, id);
    return !strcmp(a->section, key);
}

/* ---- extraction ------------------------------------------------------------------------ */

/* DIR/<name> with the leading '/' of "/rom@etc/..." dropped and parents created, as the script
 * does; "." and ".." components are refused so a stream cannot write outside DIR. */
static int open_block_file(Analyze *a, const char *name, FerryError *err)
{
    while (*name == '/')
        name++;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", a->extract, name) >= (int)sizeof(path))
        return ferry_error_set(err, -ENAMETOOLONG, "RAM block '%s': path too long", name);
    const char *c = name;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t l = e ? (size_t)(e - c) : strlen(c);
        if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
            return ferry_error_set(err, -EINVAL, "RAM block '%s': unsafe name for a file", name);
        c += l + (e ? 1 : 0);
    }
    if (!*name)
        return ferry_error_set(err, -EINVAL, "RAM block with an empty file name");
    size_t base = strlen(a->extract) + 1;
    for (char *s = path + base; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return ferry_error_set(err, -errno, "mkdir %s: %s", path, strerror(errno));
        *s = '/';
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ferry_error_set(err, -errno, "open %s: %s", path, strerror(errno));
    return fd;
}

static int flush_zero(Analyze *a, FerryError *err)
{
    if (!a->zero_len)
        return 0;
    int fd = a->zero_fd;
    uint64_t off = a->zero_off, len = a->zero_len;
    a->zero_len = 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    static const uint8_t zeros[65536];
    while (len) { /* no hole punching on this file system: write zeros */
        size_t n = len > sizeof(zeros) ? sizeof(zeros) : (size_t)len;
        if (pwrite(fd, zeros, n, (off_t)off) != (ssize_t)n)
            return ferry_error_set(err, -EIO, "writing zeros: %s", strerror(errno));
        off += n;
        len -= n;
    }
    return 0;
}

static int extract_page(Analyze *a, const FerryQemuPage *p, FerryError *err)
{
    BlockStat *b = &a->blocks[p->block->index];
    int rc;
    if (p->kind == FERRY_QEMU_PAGE_ZERO && p->fill == 0) {
        if (a->zero_len && a->zero_fd == b->fd && a->zero_off + a->zero_len == p->addr) {
            a->zero_len += p->page_size;
            return 0;
        }
        if ((rc = flush_zero(a, err)) < 0)
            return rc;
        a->zero_fd = b->fd;
        a->zero_off = p->addr;
        a->zero_len = p->page_size;
        return 0;
    }
    if ((rc = flush_zero(a, err)) < 0)
        return rc;
    if (a->page_cap < p->page_size) {
        free(a->page);
        if (!(a->page = malloc(p->page_size)))
            return ferry_error_set(err, -ENOMEM, "out of memory");
        a->page_cap = p->page_size;
    }
    const uint8_t *src = a->page;
    switch (p->kind) {
    case FERRY_QEMU_PAGE_ZERO:
        memset(a->page, p->fill, p->page_size);
        break;
    case FERRY_QEMU_PAGE_NORMAL:
        src = p->data;
        break;
    case FERRY_QEMU_PAGE_XBZRLE: {
        ssize_t n = pread(b->fd, a->page, p->page_size, (off_t)p->addr);
        if (n < 0)
            return ferry_error_set(err, -errno, "reading back RAM block '%s': %s", b->name,
                                   strerror(errno));
        memset(a->page + n, 0, p->page_size - (size_t)n);
        if ((rc = ferry_qemu_xbzrle_apply(a->page, p->page_size, p->data, p->len, err)) < 0)
            return ferry_error_prefix(err, "RAM block '%s' page 0x%" PRIx64 ": ", b->name, p->addr);
        break;
    }
    case FERRY_QEMU_PAGE_COMPRESSED: {
        if ((rc = ferry_qemu_page_inflate(a->page, p->page_size, p->data, p->len, err)) < 0)
            return ferry_error_prefix(
                err, "RAM block '%s' page 0x%" PRIx64 " (record at 0x%" PRIx64 "): ", b->name,
                p->addr, p->offset);
        break;
    }
    }
    if (pwrite(b->fd, src, p->page_size, (off_t)p->addr) != (ssize_t)p->page_size)
        return ferry_error_set(err, -EIO, "writing RAM block '%s': %s", b->name, strerror(errno));
    return 0;
}

/* ---- visitor --------------------------------------------------------------------------- */

static int on_section_begin(void *ctx, const FerryQemuSection *s, FerryError *err)
{
    Analyze *a = ctx;
    SecStat *st = NULL;
    if (s->type == FERRY_QEMU_START || s->type == FERRY_QEMU_FULL) {
        if (a->n_secs == a->cap_secs) {
            size_t cap = a->cap_secs ? a->cap_secs * 2 : 64;
            SecStat *n = realloc(a->secs, cap * sizeof(*n));
            if (!n)
                return ferry_error_set(err, -ENOMEM, "out of memory");
            a->secs = n;
            a->cap_secs = cap;
        }
        st = &a->secs[a->n_secs++];
        *st = (SecStat){.id = s->section_id,
                        .instance_id = s->instance_id,
                        .version_id = s->version_id,
                        .kind = s->kind,
                        .first_type = s->type,
                        .offset = s->offset};
        snprintf(st->idstr, sizeof(st->idstr), "%s", s->idstr);
        a->filtered = passes(a, s->idstr, s->section_id);
        a->entry_open = a->json && a->filtered;
        if (a->entry_open) {
            char key[300];
            snprintf(key, sizeof(key), "%s (%" PRIu32 ")", s->idstr, s->section_id);
            open_entry(a, key);
            if (s->kind == FERRY_QEMU_KIND_HTAB) {
                out_put(a->jo, "\"\"", 2); /* the script's HTABSection.getDict() */
            } else {
                int rc = push_object(a, 4, err);
                if (rc == 0 && s->kind == FERRY_QEMU_KIND_RAM) {
                    open_entry(a, "section sizes");
                    rc = push_object(a, 8, err);
                }
                if (rc < 0)
                    return rc;
            }
        }
    } else {
        a->entry_open = false;
    }
    return 0;
}

static int on_section_end(void *ctx, const FerryQemuSection *s, FerryError *err)
{
    Analyze *a = ctx;
    (void)err;
    SecStat *st = sec_find(a, s->section_id);
    if (st) {
        st->headers++;
        st->bytes += s->end - s->offset;
        st->footer = s->has_footer;
    }
    if (a->entry_open) {
        if (s->kind == FERRY_QEMU_KIND_UNDECODED) {
            /* No counterpart in the script (it fails): where the bytes are. */
            char b[40];
            open_entry(a, "undecoded");
            if (push_object(a, 8, err) < 0)
                return -EINVAL;
            snprintf(b, sizeof(b), "0x%" PRIx64, s->payload);
            put_str(a, "offset", b);
            snprintf(b, sizeof(b), "0x%" PRIx64, s->payload_end - s->payload);
            put_str(a, "size", b);
            close_object(a);
        }
        if (s->kind == FERRY_QEMU_KIND_RAM)
            close_object(a); /* section sizes */
        if (s->kind != FERRY_QEMU_KIND_HTAB)
            close_object(a);
        a->entry_open = false;
    }
    return 0;
}

static int on_ram_block(void *ctx, const FerryQemuRamBlock *b, FerryError *err)
{
    Analyze *a = ctx;
    if (b->index >= a->n_blocks) {
        BlockStat *n = realloc(a->blocks, (b->index + 1) * sizeof(*n));
        if (!n)
            return ferry_error_set(err, -ENOMEM, "out of memory");
        a->blocks = n;
        for (size_t i = a->n_blocks; i <= b->index; i++)
            a->blocks[i] = (BlockStat){.fd = -1};
        a->n_blocks = b->index + 1;
    }
    BlockStat *bs = &a->blocks[b->index];
    snprintf(bs->name, sizeof(bs->name), "%s", b->name);
    bs->length = b->length;
    if (a->entry_open && a->depth == 2) {
        char v[24];
        snprintf(v, sizeof(v), "0x%016" PRIx64, b->length);
        put_str(a, b->name, v);
    }
    if (a->extract) {
        int rc;
        if (bs->fd < 0 && (bs->fd = open_block_file(a, b->name, err)) < 0)
            return bs->fd;
        if ((rc = flush_zero(a, err)) < 0)
            return rc;
        if (ftruncate(bs->fd, (off_t)b->length) < 0)
            return ferry_error_set(err, -errno, "sizing RAM block '%s': %s", b->name,
                                   strerror(errno));
    }
    return 0;
}

static int on_ram_page(void *ctx, const FerryQemuPage *p, FerryError *err)
{
    Analyze *a = ctx;
    a->blocks[p->block->index].pages[p->kind]++;
    return a->extract ? extract_page(a, p, err) : 0;
}

static int on_command(void *ctx, const FerryQemuCommand *c, FerryError *err)
{
    Analyze *a = ctx;
    (void)err;
    a->cmd_counts[c->cmd]++;
    return 0;
}

static int on_node_begin(void *ctx, const FerryQemuNode *n, FerryError *err)
{
    Analyze *a = ctx;
    if (!a->entry_open)
        return 0;
    int ind;
    if (n->index >= 0) {
        ind = list_elem(a, n->name);
    } else {
        open_entry(a, n->name);
        ind = a->lv[a->depth].ind + 4;
    }
    return push_object(a, ind, err);
}

static int on_node_end(void *ctx, const FerryQemuNode *n, FerryError *err)
{
    Analyze *a = ctx;
    (void)n;
    (void)err;
    if (a->entry_open)
        close_object(a);
    return 0;
}

static int on_field(void *ctx, const FerryQemuField *f, FerryError *err)
{
    Analyze *a = ctx;
    if (!a->entry_open)
        return 0;
    int kind = field_value(a, f);
    if (kind < 0)
        return ferry_error_set(err, kind, "out of memory");
    if (f->index >= 0)
        list_elem(a, f->name);
    else
        open_entry(a, f->name);
    if (kind == 0)
        py_str(a->jo, a->vbuf);
    else
        out_s(a->jo, kind == 1 ? "true" : "false");
    return 0;
}

/* ---- summary --------------------------------------------------------------------------- */

static const char *const cmd_names[] = {"",
                                        "OPEN_RETURN_PATH",
                                        "PING",
                                        "POSTCOPY_ADVISE",
                                        "POSTCOPY_LISTEN",
                                        "POSTCOPY_RUN",
                                        "POSTCOPY_RAM_DISCARD",
                                        "PACKAGED",
                                        "ENABLE_COLO",
                                        "POSTCOPY_RESUME",
                                        "RECV_BITMAP"};

static void human(char *buf, size_t n, uint64_t bytes)
{
    if (bytes >= (1u << 20))
        snprintf(buf, n, "%.1f MiB", (double)bytes / (1u << 20));
    else if (bytes >= 1024)
        snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
    else
        snprintf(buf, n, "%" PRIu64 " B", bytes);
}

static void print_summary(Analyze *a, const FerryQemuInfo *in)
{
    FILE *o = a->out;
    char h[32];
    fprintf(o, "format: QEMU migration stream, version 3, %" PRIu64 " bytes\n", in->size);
    fprintf(o, "machine: %s\n", in->machine ? in->machine : "(no configuration section)");
    fprintf(o, "page size: %" PRIu32 " (%s)\n", in->page_size,
            in->page_size_from_vmdesc ? "vmdesc" : "default");
    fprintf(o, "commands:");
    bool any = false;
    for (int c = 1; c <= 10; c++)
        if (a->cmd_counts[c]) {
            fprintf(o, " %s×%" PRIu64, cmd_names[c], a->cmd_counts[c]);
            any = true;
        }
    fprintf(o, "%s\n", any ? "" : " none");
    size_t shown = 0;
    for (size_t i = 0; i < a->n_secs; i++)
        shown += passes(a, a->secs[i].idstr, a->secs[i].id);
    fprintf(o,
            "sections: %zu (%zu shown), headers %" PRIu64 ", footers %s (%" PRIu64
            " matched), undecoded %" PRIu64 "\n",
            a->n_secs, shown, in->n_sections, in->footers ? "present" : "absent", in->n_footers,
            in->n_undecoded);
    fprintf(o, "  %5s  %-9s  %6s  %10s  %-10s  %s\n", "id", "kind", "parts", "bytes", "offset",
            "name (instance, version)");
    for (size_t i = 0; i < a->n_secs; i++) {
        SecStat *s = &a->secs[i];
        if (!passes(a, s->idstr, s->id))
            continue;
        fprintf(o,
                "  %5" PRIu32 "  %-9s  %6" PRIu32 "  %10" PRIu64 "  0x%-8" PRIx64 "  %s (%" PRIu32
                ", v%" PRIu32 ")\n",
                s->id, kind_name(s->kind), s->headers, s->bytes, s->offset, s->idstr,
                s->instance_id, s->version_id);
    }
    uint64_t tot[4] = {0}, len = 0;
    for (size_t i = 0; i < a->n_blocks; i++) {
        len += a->blocks[i].length;
        for (int k = 0; k < 4; k++)
            tot[k] += a->blocks[i].pages[k];
    }
    human(h, sizeof(h), len);
    fprintf(o, "RAM: %zu blocks, 0x%" PRIx64 " bytes (%s)\n", a->n_blocks, len, h);
    if (a->n_blocks)
        fprintf(o, "  %-28s  %12s  %8s  %8s  %8s  %10s\n", "block", "length", "zero", "normal",
                "xbzrle", "compressed");
    for (size_t i = 0; i < a->n_blocks; i++) {
        BlockStat *b = &a->blocks[i];
        fprintf(o,
                "  %-28s  0x%010" PRIx64 "  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64 "  %10" PRIu64
                "\n",
                b->name, b->length, b->pages[0], b->pages[1], b->pages[2], b->pages[3]);
    }
    uint64_t ps = in->page_size;
    fprintf(o, "RAM pages: %" PRIu64 " records", tot[0] + tot[1] + tot[2] + tot[3]);
    const char *kn[4] = {"zero", "normal", "xbzrle", "compressed"};
    for (int k = 0; k < 4; k++) {
        human(h, sizeof(h), tot[k] * ps);
        fprintf(o, "%s %s %" PRIu64 " (%s)", k ? "," : ":", kn[k], tot[k], h);
    }
    fputc('\n', o);
    if (in->has_vmdesc)
        fprintf(o, "trailer: vmdesc at 0x%" PRIx64 ", %" PRIu32 " bytes, %zu devices, used\n",
                in->vmdesc_offset, in->vmdesc_len, in->vmdesc_devices);
    else if (in->vmdesc_len)
        fprintf(o, "trailer: vmdesc at 0x%" PRIx64 ", %" PRIu32 " bytes, %zu devices, not used\n",
                in->vmdesc_offset, in->vmdesc_len, in->vmdesc_devices);
    else
        fprintf(o, "trailer: absent (device sections framed by footer resync)\n");
    fprintf(o, "EOF at 0x%" PRIx64 "; stream valid\n", in->eof_offset);
}

/* ---- command --------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f, "usage: ferry analyze [--summary] [--section NAME] [--extract-ram DIR] "
           "[--no-vmdesc] FILE|-\n"
           "  Decode a migration stream: Ferry stream v1 or QEMU 7.2 (format version 3), detected\n"
           "  from its first bytes.\n"
           "  default        JSON like QEMU's scripts/analyze-migration.py\n"
           "  --summary      machine, sections with sizes, RAM page kinds, footers, trailer\n"
           "  --section NAME only sections whose idstr (or \"idstr (id)\") is NAME\n"
           "  --extract-ram DIR  write each RAM block's final contents to DIR/<block>\n"
           "  --no-vmdesc    ignore the vmdesc trailer (frame devices by footer resync)\n"
           "exit status: 0 valid, 1 invalid stream or failure, 2 usage\n");
}

/* stdin that is not a regular file is copied to an unlinked temporary file, so the reader can
 * locate the vmdesc trailer first: disk, not memory, grows with the stream. */
static int spool_stdin(FerryError *err)
{
    struct stat st;
    if (fstat(0, &st) == 0 && S_ISREG(st.st_mode) && lseek(0, 0, SEEK_CUR) == 0)
        return 0;
    const char *dir = getenv("TMPDIR");
    int fd = open(dir && *dir ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return ferry_error_set(err, -errno, "spooling stdin: %s", strerror(errno));
    static uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return ferry_error_set(err, -errno, "reading stdin: %s", strerror(errno));
        }
        if (n == 0)
            break;
        if (write(fd, buf, (size_t)n) != n) {
            close(fd);
            return ferry_error_set(err, -EIO, "spooling stdin: %s", strerror(errno));
        }
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

/* Anything that is not a QEMU stream: Ferry's own format, or a clear refusal. */
static int analyze_other(Analyze *a, const char *name, int fd, const uint8_t *magic, size_t n)
{
    if (n < FERRY_STREAM_MAGIC_LEN || memcmp(magic, FERRY_STREAM_MAGIC, FERRY_STREAM_MAGIC_LEN)) {
        /* A stream cut inside its magic is a truncation, not an unknown format. */
        static const uint8_t qemu_magic[4] = {'Q', 'E', 'V', 'M'};
        if (n > 0 && n < FERRY_STREAM_MAGIC_LEN &&
            (!memcmp(magic, FERRY_STREAM_MAGIC, n) ||
             (n < sizeof(qemu_magic) && !memcmp(magic, qemu_magic, n))))
            fprintf(stderr,
                    "ferry analyze: %s: at 0x0: reading the stream magic: stream ended after "
                    "%zu byte%s\n",
                    name, n, n == 1 ? "" : "s");
        else if (n == 0)
            fprintf(stderr, "ferry analyze: %s: empty input\n", name);
        else
            fprintf(stderr, "ferry analyze: %s: neither a QEMU nor a Ferry migration stream\n",
                    name);
        return 1;
    }
    FerryAnalyzeOpts o = {
        .summary = a->summary, .section = a->section, .extract = a->extract, .out = a->out};
    return ferry_analyze_ferry_fd(name, fd, &o);
}

static int analyze_qemu(Analyze *a, const char *name, int fd, unsigned flags)
{
    FerryError err;
    FerryQemuReader *r = ferry_qemu_reader_fd(fd, flags, &err);
    if (!r) {
        fprintf(stderr, "ferry analyze: %s: %s\n", name, err.msg);
        return 1;
    }
    static const FerryQemuVisitor v = {
        .command = on_command,
        .section_begin = on_section_begin,
        .section_end = on_section_end,
        .ram_block = on_ram_block,
        .ram_page = on_ram_page,
        .node_begin = on_node_begin,
        .node_end = on_node_end,
        .field = on_field,
    };
    int rc = ferry_qemu_reader_run(r, &v, a, &err);
    if (rc == 0 && a->extract)
        rc = flush_zero(a, &err);
    if (a->json && (rc == 0 || a->lv[0].count)) {
        while (a->depth > 0)
            close_object(a);
        close_object(a);
        out_c(a->jo, '\n');
        out_flush(a->jo);
    }
    if (rc == 0 && a->summary)
        print_summary(a, ferry_qemu_reader_info(r));
    fflush(a->out);
    if (rc < 0)
        fprintf(stderr, "ferry analyze: %s: %s\n", name, err.msg);
    ferry_qemu_reader_destroy(r);
    return rc < 0 ? 1 : 0;
}

static int run_analyze(int argc, char **argv)
{
    static const struct option opts[] = {
        {"summary", no_argument, NULL, 's'},
        {"section", required_argument, NULL, 'S'},
        {"extract-ram", required_argument, NULL, 'x'},
        {"no-vmdesc", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Analyze a = {.out = stdout, .zero_fd = -1};
    unsigned flags = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            a.summary = true;
            break;
        case 'S':
            a.section = optarg;
            break;
        case 'x':
            a.extract = optarg;
            break;
        case 'n':
            flags |= FERRY_QEMU_NO_VMDESC;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    a.json = !a.summary && !a.extract;
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[optind];
    FerryError err;
    int fd;
    if (!strcmp(name, "-")) {
        if ((fd = spool_stdin(&err)) < 0) {
            fprintf(stderr, "ferry analyze: %s\n", err.msg);
            return 1;
        }
    } else if ((fd = open(name, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "ferry analyze: %s: %s\n", name, strerror(errno));
        return 1;
    }
    if (a.extract && mkdir(a.extract, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "ferry analyze: %s: %s\n", a.extract, strerror(errno));
        if (fd > 0)
            close(fd);
        return 1;
    }
    uint8_t magic[8];
    ssize_t n = pread(fd, magic, sizeof(magic), 0);
    static Out jo;
    jo.f = stdout;
    a.jo = &jo;
    int status;
    if (n < 0) {
        fprintf(stderr, "ferry analyze: %s: %s\n", name, strerror(errno));
        status = 1;
    } else if (n >= 4 && ferry_qemu_probe(magic, (size_t)n))
        status = analyze_qemu(&a, name, fd, flags);
    else
        status = analyze_other(&a, name, fd, magic, (size_t)n);
    for (size_t i = 0; i < a.n_blocks; i++)
        if (a.blocks[i].fd >= 0)
            close(a.blocks[i].fd);
    free(a.blocks);
    free(a.secs);
    free(a.page);
    free(a.vbuf);
    if (fd > 0)
        close(fd);
    fflush(stdout);
    return status;
}

const FerryCommand ferry_cmd_analyze = {"analyze", "decode a migration stream (Ferry or QEMU 7.2)",
                                        run_analyze};

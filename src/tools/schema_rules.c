/* The rule engine of `ferry schema check`: walks a source and a destination schema the way a
 * destination loads a stream, and reports each difference with why it breaks and how to fix it. */
#include "schema_check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct FerrySchemaReport {
    FerrySchemaFinding *v;
    size_t n, cap;
};

typedef enum Level { LEVEL_TOP, LEVEL_STRUCT, LEVEL_SUBSECTION } Level;

typedef struct Ctx {
    FerrySchemaReport *rep;
    FerrySchemaDirection dir;
    const char *src_label, *dst_label;
    bool qemu;
    const FerrySchemaDoc *src, *dst;
    const char *section;
    uint32_t instance;
    /* The path is a stack of borrowed segments, formatted only when a finding is made: the walk
     * visits every field of both schemas and most visits find nothing. */
    struct {
        const char *pre, *name, *post;
    } seg[64];
    size_t nseg;
    int rc; /* first allocation failure */
} Ctx;

/* ---- findings ---- */

/* Messages are written once for both directions: {S} is the source's label, {D} the
 * destination's ("OLD"/"NEW"); {F} says how a desynchronised payload fails in this format. */
static char *expand(const Ctx *c, const char *in)
{
    size_t n = strlen(in) + 1;
    char *out = malloc(n + 64), *w = out;
    size_t cap = n + 64;
    if (!out)
        return NULL;
    for (const char *p = in; *p;) {
        const char *lab = NULL;
        if (p[0] == '{' && (p[1] == 'S' || p[1] == 'D') && p[2] == '}')
            lab = p[1] == 'S' ? c->src_label : c->dst_label;
        else if (p[0] == '{' && p[1] == 'F' && p[2] == '}') /* how the desync shows */
            lab = c->qemu ? "(QEMU: \"Missing section footer\")"
                          : "(the record's length check fails the load)";
        size_t need = lab ? strlen(lab) : 1;
        if ((size_t)(w - out) + need + 1 > cap) {
            size_t off = (size_t)(w - out);
            cap = cap * 2 + need;
            char *g = realloc(out, cap);
            if (!g) {
                free(out);
                return NULL;
            }
            out = g;
            w = out + off;
        }
        if (lab) {
            memcpy(w, lab, need);
            w += need;
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return out;
}

/* Caller frees. */
static char *finding_path(const Ctx *c)
{
    size_t n = 1;
    for (size_t i = 0; i < c->nseg; i++)
        n += strlen(c->seg[i].pre) + strlen(c->seg[i].name) + strlen(c->seg[i].post);
    char *p = malloc(n), *w = p;
    if (!p)
        return NULL;
    for (size_t i = 0; i < c->nseg; i++)
        w = stpcpy(stpcpy(stpcpy(w, c->seg[i].pre), c->seg[i].name), c->seg[i].post);
    *w = '\0';
    return p;
}

__attribute__((format(printf, 6, 7))) static void finding(Ctx *c, FerrySchemaSeverity sev,
                                                          const char *rule, const char *why,
                                                          const char *fix, const char *fmt, ...)
{
    FerrySchemaReport *r = c->rep;
    char *raw = NULL;
    va_list ap;
    if (c->rc)
        return;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        FerrySchemaFinding *v = realloc(r->v, cap * sizeof(*v));
        if (!v)
            goto err_nomem;
        r->v = v;
        r->cap = cap;
    }
    va_start(ap, fmt);
    int len = vasprintf(&raw, fmt, ap);
    va_end(ap);
    if (len < 0)
        goto err_nomem;
    FerrySchemaFinding *f = &r->v[r->n];
    *f = (FerrySchemaFinding){
        .direction = c->dir, .severity = sev, .rule = rule, .instance = c->instance};
    f->section = strdup(c->section ? c->section : "");
    f->path = finding_path(c);
    f->message = expand(c, raw);
    f->why = expand(c, why);
    f->fix = expand(c, fix ? fix : "");
    free(raw);
    if (!f->section || !f->path || !f->message || !f->why || !f->fix) {
        free(f->section);
        free(f->path);
        free(f->message);
        free(f->why);
        free(f->fix);
        goto err_nomem;
    }
    r->n++;
    return;
err_nomem:
    c->rc = -ENOMEM;
}

static size_t path_push(Ctx *c, const char *pre, const char *name, const char *post)
{
    size_t mark = c->nseg;
    if (c->nseg < sizeof(c->seg) / sizeof(c->seg[0])) {
        c->seg[c->nseg].pre = pre;
        c->seg[c->nseg].name = name;
        c->seg[c->nseg].post = post;
        c->nseg++;
    }
    return mark;
}

static void path_pop(Ctx *c, size_t mark)
{
    c->nseg = mark;
}

/* A field only the destination reads (forward: NEW added it; backward: NEW removed it). */
static const char *fix_dst_only(const Ctx *c)
{
    return c->dir == FERRY_SCHEMA_FORWARD
               ? "give the new field since = a bumped version (and bump version), or move it "
                 "into a subsection whose needed() is false for old machine types"
               : "keep the field in NEW's stream for old machine types, or an unused placeholder "
                 "of the same size, so OLD still finds its bytes";
}

/* A field only the source sends (forward: NEW removed it; backward: NEW added it). */
static const char *fix_src_only(const Ctx *c)
{
    return c->dir == FERRY_SCHEMA_FORWARD
               ? "keep the field in NEW, or replace it by an unused placeholder of the same size "
                 "(VMSTATE_UNUSED / an \"unused\" buffer)"
               : "NEW sends a field OLD does not know: give it since = a bumped version, or move "
                 "it into a subsection whose needed() is false for old machine types";
}

/* ---- QEMU's rename tables (vmstate-static-checker.py 7.2): renames QEMU accepted ---- */
static bool in_list(const char *const *l, size_t n, const char *s)
{
    for (size_t i = 0; i < n && l[i]; i++)
        if (!strcmp(l[i], s))
            return true;
    return false;
}

/* QEMU's check_fields_match: equal, or both names in the rename list of `desc` (any pair of the
 * list, as the script does). Ferry names are compared exactly. */
static bool names_match(const Ctx *c, const char *desc, const char *a, const char *b)
{
    static const struct {
        const char *desc;
        const char *names[16];
    } table[] = {
        {"apic", {"timer", "timer_expiry"}},
        {"e1000", {"dev", "parent_obj"}},
        {"ehci", {"dev", "pcidev"}},
        {"I440FX", {"dev", "parent_obj"}},
        {"ich9_ahci", {"card", "parent_obj"}},
        {"ich9-ahci", {"ahci", "ich9_ahci"}},
        {"ioh3420", {"PCIDevice", "PCIEDevice"}},
        {"ioh-3240-express-root-port",
         {"port.br.dev", "parent_obj.parent_obj.parent_obj", "port.br.dev.exp.aer_log",
          "parent_obj.parent_obj.parent_obj.exp.aer_log"}},
        {"cirrus_vga", {"hw_cursor_x", "vga.hw_cursor_x", "hw_cursor_y", "vga.hw_cursor_y"}},
        {"lsiscsi", {"dev", "parent_obj"}},
        {"mch", {"d", "parent_obj"}},
        {"pci_bridge", {"bridge.dev", "parent_obj", "bridge.dev.shpc", "shpc"}},
        {"pcnet", {"pci_dev", "parent_obj"}},
        {"PIIX3", {"pci_irq_levels", "pci_irq_levels_vmstate"}},
        {"piix4_pm",
         {"dev", "parent_obj", "pci0_status", "acpi_pci_hotplug.acpi_pcihp_pci_status[0x0]",
          "pm1a.sts", "ar.pm1.evt.sts", "pm1a.en", "ar.pm1.evt.en", "pm1_cnt.cnt", "ar.pm1.cnt.cnt",
          "tmr.timer", "ar.tmr.timer", "tmr.overflow_time", "ar.tmr.overflow_time", "gpe",
          "ar.gpe"}},
        {"rtl8139", {"dev", "parent_obj"}},
        {"qxl", {"num_surfaces", "ssd.num_surfaces"}},
        {"usb-ccid", {"abProtocolDataStructure", "abProtocolDataStructure.data"}},
        {"usb-host", {"dev", "parent_obj"}},
        {"usb-mouse", {"usb-ptr-queue", "HIDPointerEventQueue"}},
        {"usb-tablet", {"usb-ptr-queue", "HIDPointerEventQueue"}},
        {"vmware_vga", {"card", "parent_obj"}},
        {"vmware_vga_internal", {"depth", "new_depth"}},
        {"xhci", {"pci_dev", "parent_obj"}},
        {"x3130-upstream", {"PCIDevice", "PCIEDevice"}},
        {"xio3130-express-downstream-port",
         {"port.br.dev", "parent_obj.parent_obj.parent_obj", "port.br.dev.exp.aer_log",
          "parent_obj.parent_obj.parent_obj.exp.aer_log"}},
        {"xio3130-downstream", {"PCIDevice", "PCIEDevice"}},
        {"xio3130-express-upstream-port",
         {"br.dev", "parent_obj.parent_obj", "br.dev.exp.aer_log",
          "parent_obj.parent_obj.exp.aer_log"}},
        {"spapr_pci",
         {"dma_liobn[0]", "mig_liobn", "mem_win_addr", "mig_mem_win_addr", "mem_win_size",
          "mig_mem_win_size", "io_win_addr", "mig_io_win_addr", "io_win_size", "mig_io_win_size"}},
    };
    if (!strcmp(a, b))
        return true;
    if (!c->qemu)
        return false;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (!strcmp(table[i].desc, desc))
            return in_list(table[i].names, 16, a) && in_list(table[i].names, 16, b);
    return false;
}

/* QEMU's get_changed_sec_name: QOM type renames that kept the wire format. */
static const char *section_alias(const char *name)
{
    static const char *const pairs[][2] = {{"ICH9 LPC", "ICH9-LPC"}, {"e1000-82540em", "e1000"}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        if (!strcmp(pairs[i][0], name))
            return pairs[i][1];
        if (!strcmp(pairs[i][1], name))
            return pairs[i][0];
    }
    return NULL;
}

/* ---- fields ---- */

static const char *type_name(const FerrySchemaField *f)
{
    static const char *const names[FERRY_TYPE__COUNT] = {
        "u8",  "u16",  "u32",    "u64",    "i8",     "i16", "i32",
        "i64", "bool", "buffer", "string", "struct", "list"};
    return f->typed && f->type < FERRY_TYPE__COUNT ? names[f->type] : "field";
}

static unsigned scalar_wire_size(FerryType t)
{
    switch (t) {
    case FERRY_TYPE_U8:
    case FERRY_TYPE_I8:
    case FERRY_TYPE_BOOL:
        return 1;
    case FERRY_TYPE_U16:
    case FERRY_TYPE_I16:
        return 2;
    case FERRY_TYPE_U32:
    case FERRY_TYPE_I32:
        return 4;
    case FERRY_TYPE_U64:
    case FERRY_TYPE_I64:
        return 8;
    default:
        return 0;
    }
}

static const char *array_name(FerryArrayKind a)
{
    static const char *const names[] = {"a single element", "a fixed array", "a var array",
                                        "an allocated array"};
    return a <= FERRY_ARRAY_ALLOC ? names[a] : "?";
}

static bool is_unused(const Ctx *c, const FerrySchemaField *f)
{
    if (c->qemu)
        return !strcmp(f->name, "unused");
    return !strncmp(f->name, "unused", 6) && f->type == FERRY_TYPE_BUFFER &&
           f->array == FERRY_ARRAY_NONE;
}

/* Field on the wire at stream version v: QEMU lets a field_exists predicate override the
 * version; Ferry writes a presence byte for predicate fields that are within their version. */
static bool on_wire(const Ctx *c, const FerrySchemaField *f, uint32_t v)
{
    return f->since <= v || (c->qemu && f->exists);
}

static const FerrySchemaField *find_field(const FerrySchemaDesc *d, const char *name)
{
    for (size_t i = 0; i < d->nfields; i++)
        if (!strcmp(d->fields[i].name, name))
            return &d->fields[i];
    return NULL;
}

static void compare_desc(Ctx *c, const FerrySchemaDesc *s, const FerrySchemaDesc *d, Level lvl);

static uint64_t array_capacity(const FerrySchemaField *f)
{
    switch (f->array) {
    case FERRY_ARRAY_NONE:
        return 1;
    case FERRY_ARRAY_FIXED:
    case FERRY_ARRAY_VAR:
        return f->count;
    default:
        return f->max;
    }
}

static void compare_array(Ctx *c, const FerrySchemaField *s, const FerrySchemaField *d)
{
    if (!s->typed || !d->typed) {
        if (s->count_known && d->count_known && s->count != d->count)
            finding(c, FERRY_SCHEMA_ERROR, "field-array",
                    "{D} expects a different number of elements: every later field is misread",
                    "keep the array length; add the extra elements as a new versioned field or "
                    "in a subsection",
                    "array length %llu in {S}, %llu in {D}", (unsigned long long)s->count,
                    (unsigned long long)d->count);
        return;
    }
    if (s->type == FERRY_TYPE_LIST && d->type == FERRY_TYPE_LIST) {
        if (d->max < s->max)
            finding(c, FERRY_SCHEMA_WARNING, "field-capacity",
                    "{D} rejects a list longer than its bound that {S} may send",
                    "keep {D}'s bound at least as large as {S}'s",
                    "list bound %llu in {S}, %llu in {D}", (unsigned long long)s->max,
                    (unsigned long long)d->max);
        return;
    }
    if (s->array == d->array) {
        switch (s->array) {
        case FERRY_ARRAY_FIXED:
            if (s->count != d->count)
                finding(c, FERRY_SCHEMA_ERROR, "field-array",
                        "the count on the wire never matches {D}'s fixed length: the load fails",
                        "keep the length; use a var array (count on the wire) if it must grow",
                        "fixed array length %llu in {S}, %llu in {D}", (unsigned long long)s->count,
                        (unsigned long long)d->count);
            break;
        case FERRY_ARRAY_VAR:
        case FERRY_ARRAY_ALLOC: {
            uint64_t sc = array_capacity(s), dc = array_capacity(d);
            if (dc < sc)
                finding(c, FERRY_SCHEMA_WARNING, "field-capacity",
                        "loads fail when {S} sends more elements than {D} can hold",
                        "keep {D}'s capacity at least as large as {S}'s",
                        "%s capacity %llu in {S}, %llu in {D}", array_name(s->array),
                        (unsigned long long)sc, (unsigned long long)dc);
            else if (dc > sc)
                finding(c, FERRY_SCHEMA_INFO, "field-capacity",
                        "{D} holds every count {S} can send", NULL,
                        "%s capacity %llu in {S}, %llu in {D}", array_name(s->array),
                        (unsigned long long)sc, (unsigned long long)dc);
            break;
        }
        default:
            break;
        }
        return;
    }
    if (s->array == FERRY_ARRAY_NONE || d->array == FERRY_ARRAY_NONE) {
        finding(c, FERRY_SCHEMA_ERROR, "field-array",
                "an array carries its count on the wire, a single element does not: the bytes "
                "are misread",
                "keep the field's shape; add the array as a new field (versioned or in a "
                "subsection)",
                "{S} sends %s, {D} reads %s", array_name(s->array), array_name(d->array));
        return;
    }
    uint64_t sc = array_capacity(s), dc = array_capacity(d);
    if (d->array == FERRY_ARRAY_FIXED) {
        if (d->count > sc)
            finding(c, FERRY_SCHEMA_ERROR, "field-array",
                    "{S} never sends as many elements as {D}'s fixed length: the load fails",
                    "keep the array kind and length",
                    "{S} sends %s of at most %llu, {D} reads a fixed array of %llu",
                    array_name(s->array), (unsigned long long)sc, (unsigned long long)d->count);
        else
            finding(c, FERRY_SCHEMA_WARNING, "field-array",
                    "the load fails unless {S} sends exactly the fixed length",
                    "keep the array kind, or make {D}'s array variable",
                    "{S} sends %s of at most %llu, {D} reads a fixed array of %llu",
                    array_name(s->array), (unsigned long long)sc, (unsigned long long)d->count);
    } else if (dc >= sc) {
        finding(c, FERRY_SCHEMA_INFO, "field-array",
                "the count is on the wire and {D} holds every count {S} sends", NULL,
                "{S} sends %s (%llu), {D} reads %s (%llu)", array_name(s->array),
                (unsigned long long)sc, array_name(d->array), (unsigned long long)dc);
    } else {
        finding(c, FERRY_SCHEMA_WARNING, "field-capacity",
                "loads fail when {S} sends more elements than {D} can hold",
                "keep {D}'s capacity at least as large as {S}'s",
                "{S} sends %s (%llu), {D} reads %s (%llu)", array_name(s->array),
                (unsigned long long)sc, array_name(d->array), (unsigned long long)dc);
    }
}

static bool wire_same(const Ctx *c, const FerrySchemaField *s, const FerrySchemaField *d)
{
    if (!!s->desc != !!d->desc || s->size != d->size || s->exists != d->exists)
        return false;
    if (s->count_known && d->count_known && s->count != d->count)
        return false;
    if (c->qemu || !s->typed || !d->typed)
        return true;
    return s->type == d->type && s->array == d->array &&
           (s->desc ? ferry_schema_desc_shape(s->desc) == ferry_schema_desc_shape(d->desc) : true);
}

/* A matched pair (same name, or accepted rename). c->path names the field. */
static void compare_field(Ctx *c, const FerrySchemaField *s, const FerrySchemaField *d, uint32_t vs)
{
    if (s->since != d->since && !(c->qemu && s->exists && d->exists))
        finding(c, FERRY_SCHEMA_WARNING, "field-version",
                "both carry it in this stream, but streams of the versions in between are read "
                "differently by the two builds",
                "never change the version a released field appeared in",
                "field appears in version %u in {S} but %u in {D} (stream version %u)", s->since,
                d->since, vs);
    if (s->exists != d->exists) {
        if (c->qemu)
            finding(c, FERRY_SCHEMA_WARNING, "field-predicate",
                    "presence depends on a field_exists predicate on one side only; both sides "
                    "must agree for every stream or the stream desynchronises",
                    "make the predicate true exactly for the streams that carry the field",
                    "existence predicate only in %s", s->exists ? "{S}" : "{D}");
        else
            finding(c, FERRY_SCHEMA_ERROR, "field-predicate",
                    "a field with an existence test carries a presence byte: the two builds "
                    "disagree on the bytes",
                    "keep the field's existence test; put new conditional state in a subsection",
                    "existence test (presence byte) only in %s", s->exists ? "{S}" : "{D}");
    }
    if (s->desc && d->desc) {
        if (s->typed && d->typed && s->type != d->type) {
            finding(c, FERRY_SCHEMA_ERROR, "field-type",
                    "a list and a struct have different wire formats", "keep the field's type",
                    "type %s in {S}, %s in {D}", type_name(s), type_name(d));
            return;
        }
        compare_array(c, s, d);
        compare_desc(c, s->desc, d->desc, LEVEL_STRUCT);
        return;
    }
    if (s->desc || d->desc) {
        finding(c, FERRY_SCHEMA_ERROR, "field-nesting",
                "the nested layout differs: the bytes of one side are not the bytes the other "
                "reads",
                "keep the field's nesting (QEMU: move fields into a substruct only when the "
                "wire bytes stay the same)",
                s->desc ? "{S} sends a nested description \"%s\", {D} reads a plain %llu-byte "
                          "field (missing description)"
                        : "{S} sends a plain field, {D} expects nested description \"%s\" "
                          "(size %llu)",
                s->desc ? s->desc->name : d->desc->name,
                (unsigned long long)(s->desc ? d->size : d->size));
        return;
    }
    if (!s->typed || !d->typed) {
        if (s->size != d->size)
            finding(c, FERRY_SCHEMA_ERROR, "field-size",
                    "{D} reads a different number of bytes: every later field is misread",
                    "keep the width; put wider state in a new versioned field or a subsection",
                    "size mismatch: %llu in {S}, %llu in {D}", (unsigned long long)s->size,
                    (unsigned long long)d->size);
        compare_array(c, s, d);
        return;
    }
    if (s->type != d->type) {
        unsigned sw = scalar_wire_size(s->type), dw = scalar_wire_size(d->type);
        if (sw && sw == dw)
            finding(c, FERRY_SCHEMA_WARNING, "field-type",
                    "same bytes on the wire, different meaning (sign, or bool's 0/1 range)",
                    "keep the type, or convert explicitly in a post_load hook",
                    "type %s in {S}, %s in {D}", type_name(s), type_name(d));
        else
            finding(c, FERRY_SCHEMA_ERROR, "field-type",
                    "{D} reads a different number or kind of bytes: the load fails or every "
                    "later field is misread",
                    "keep the type; add the new representation as a new field (versioned or in "
                    "a subsection)",
                    "type %s in {S}, %s in {D}", type_name(s), type_name(d));
        return;
    }
    if (s->type == FERRY_TYPE_BUFFER && s->size != d->size)
        finding(c, FERRY_SCHEMA_ERROR, "field-size",
                "{D} reads a different number of bytes: every later field is misread",
                "keep the buffer size; put extra bytes in a new versioned field or a subsection",
                "buffer size %llu in {S}, %llu in {D}", (unsigned long long)s->size,
                (unsigned long long)d->size);
    else if (s->type == FERRY_TYPE_STRING && d->size < s->size)
        finding(c, FERRY_SCHEMA_WARNING, "field-capacity",
                "a string longer than {D}'s capacity fails the load",
                "keep {D}'s capacity at least as large as {S}'s",
                "string capacity %llu in {S}, %llu in {D}", (unsigned long long)s->size,
                (unsigned long long)d->size);
    else if (s->type == FERRY_TYPE_STRING && d->size > s->size)
        finding(c, FERRY_SCHEMA_INFO, "field-capacity", "{D} holds every string {S} sends", NULL,
                "string capacity %llu in {S}, %llu in {D}", (unsigned long long)s->size,
                (unsigned long long)d->size);
    else if (scalar_wire_size(s->type) == 0 && s->type != FERRY_TYPE_STRING && s->size != d->size)
        finding(c, FERRY_SCHEMA_ERROR, "field-size", "{D} reads a different number of bytes",
                "keep the size", "size %llu in {S}, %llu in {D}", (unsigned long long)s->size,
                (unsigned long long)d->size);
    compare_array(c, s, d);
}

/* ---- the ordered field walk (QEMU's check_fields, on the fields each side has on the wire) */

#define WALK_DEPTH 16

typedef struct Cursor {
    const FerrySchemaDesc *desc;
    const FerrySchemaField **v; /* `inl` or malloc'd */
    size_t n, i;
    uint32_t version;
    const FerrySchemaField *inl[24];
} Cursor;

typedef struct Side {
    Cursor st[WALK_DEPTH];
    int depth;
} Side;

static int side_open(Ctx *c, Side *sd, const FerrySchemaDesc *d, uint32_t v)
{
    Cursor *cur = &sd->st[sd->depth];
    cur->desc = d;
    cur->version = v;
    cur->i = cur->n = 0;
    cur->v = d->nfields <= 24 ? cur->inl : malloc(d->nfields * sizeof(*cur->v));
    if (!cur->v)
        return c->rc = -ENOMEM;
    for (size_t i = 0; i < d->nfields; i++)
        if (on_wire(c, &d->fields[i], v))
            cur->v[cur->n++] = &d->fields[i];
    return 0;
}

static const FerrySchemaField *side_next(Side *sd)
{
    for (;;) {
        Cursor *t = &sd->st[sd->depth];
        if (t->i < t->n)
            return t->v[t->i++];
        if (sd->depth == 0)
            return NULL;
        if (t->v != t->inl)
            free(t->v);
        t->v = NULL;
        sd->depth--;
    }
}

static void side_close(Side *sd)
{
    for (int i = 0; i <= sd->depth; i++)
        if (sd->st[i].v != sd->st[i].inl)
            free(sd->st[i].v);
}

static bool side_has_ahead(const Side *sd, const char *name)
{
    const Cursor *t = &sd->st[sd->depth];
    for (size_t i = t->i; i < t->n; i++)
        if (!strcmp(t->v[i]->name, name))
            return true;
    return false;
}

static bool descend(Ctx *c, Side *sd, const FerrySchemaDesc *d)
{
    if (sd->depth + 1 >= WALK_DEPTH)
        return false;
    sd->depth++;
    if (side_open(c, sd, d, d->version) < 0) {
        sd->depth--;
        return false;
    }
    return true;
}

/* The field named `name` exists in `d` but not on the wire at version v. */
static const FerrySchemaField *gated_out(const Ctx *c, const FerrySchemaDesc *d, const char *name,
                                         uint32_t v)
{
    const FerrySchemaField *f = find_field(d, name);
    return f && !on_wire(c, f, v) ? f : NULL;
}

static void report_trailing(Ctx *c, const FerrySchemaField *df, const Cursor *scur)
{
    size_t mark = path_push(c, ".", df->name, "");
    const FerrySchemaField *g = gated_out(c, scur->desc, df->name, scur->version);
    if (g)
        finding(c, FERRY_SCHEMA_ERROR, "field-version-gap", "{D} reads bytes {S} does not send {F}",
                "give the field the same since version in both builds",
                "{D} reads it from version-%u streams, {S} sends it only from version %u",
                scur->version, g->since);
    else if (c->qemu && df->exists)
        finding(c, FERRY_SCHEMA_WARNING, "field-appended-predicate",
                "{S} never sends it; only safe if {D}'s field_exists predicate is false for "
                "every stream {S} writes",
                "gate it on the stream version, or move it into a subsection with needed()",
                "{D} reads %s (size %llu, behind a predicate) after the last field {S} sends",
                df->name, (unsigned long long)df->size);
    else
        finding(c, FERRY_SCHEMA_ERROR, "field-appended",
                "{S} never sends it: {D} reads the next bytes of the stream as this field "
                "{F}",
                fix_dst_only(c), "{D} reads %s (size %llu) after the last field {S} sends",
                df->name, (unsigned long long)df->size);
    path_pop(c, mark);
}

static void report_removed(Ctx *c, const FerrySchemaField *sf, const Cursor *dcur,
                           const char *detail)
{
    size_t mark = path_push(c, ".", sf->name, "");
    const FerrySchemaField *g = gated_out(c, dcur->desc, sf->name, dcur->version);
    if (g)
        finding(c, FERRY_SCHEMA_ERROR, "field-version-gap",
                "{D} skips bytes {S} sent: every later field is misread",
                "give the field the same since version in both builds",
                "{S} sends it in version-%u streams, {D} reads it only from version %u",
                dcur->version, g->since);
    else
        finding(c, FERRY_SCHEMA_ERROR, "field-removed",
                "{D} does not read its bytes: every later field is misread {F}", fix_src_only(c),
                "{S} sends %s (size %llu), %s", sf->name, (unsigned long long)sf->size, detail);
    path_pop(c, mark);
}

static void walk_fields(Ctx *c, const FerrySchemaDesc *s, const FerrySchemaDesc *d, uint32_t vs,
                        uint32_t vd)
{
    Side S = {.depth = 0}, D = {.depth = 0};
    if (side_open(c, &S, s, vs) < 0)
        return;
    if (side_open(c, &D, d, vd) < 0) {
        side_close(&S);
        return;
    }
    const FerrySchemaField *sf = NULL, *df = NULL;
    bool need_s = true, need_d = true;
    for (;;) {
        if (need_s)
            sf = side_next(&S);
        if (!sf) {
            if (!need_d && df)
                report_trailing(c, df, &S.st[S.depth]);
            while ((df = side_next(&D)))
                report_trailing(c, df, &S.st[S.depth]);
            break;
        }
        if (need_d)
            df = side_next(&D);
        if (!df) {
            do
                report_removed(c, sf, &D.st[D.depth], "{D} has no further fields");
            while ((sf = side_next(&S)));
            break;
        }
        need_s = need_d = true;
        if (names_match(c, s->name, sf->name, df->name)) {
            size_t mark = path_push(c, ".", sf->name, "");
            compare_field(c, sf, df, vs);
            path_pop(c, mark);
            continue;
        }
        /* QEMU: fields moved into a substruct keep the wire format (checker heuristic). */
        if (c->qemu && df->desc && df->desc->nfields &&
            names_match(c, df->desc->name, df->desc->fields[0].name, sf->name) &&
            descend(c, &D, df->desc)) {
            size_t mark = path_push(c, ".", df->name, "");
            finding(c, FERRY_SCHEMA_INFO, "field-substruct",
                    "a struct adds no bytes on QEMU's wire; the fields are compared inside it",
                    NULL, "{S}'s fields from %s on are inside struct %s in {D}", sf->name,
                    df->name);
            path_pop(c, mark);
            need_s = false;
            continue;
        }
        if (c->qemu && sf->desc && sf->desc->nfields &&
            names_match(c, sf->desc->name, sf->desc->fields[0].name, df->name) &&
            descend(c, &S, sf->desc)) {
            size_t mark = path_push(c, ".", sf->name, "");
            finding(c, FERRY_SCHEMA_INFO, "field-substruct",
                    "a struct adds no bytes on QEMU's wire; the fields are compared inside it",
                    NULL, "{S}'s struct %s holds fields that are top-level in {D} from %s on",
                    sf->name, df->name);
            path_pop(c, mark);
            need_d = false;
            continue;
        }
        if (is_unused(c, sf) || is_unused(c, df)) {
            if (sf->size == df->size) {
                size_t mark = path_push(c, ".", sf->name, "");
                if (is_unused(c, df) && !is_unused(c, sf))
                    finding(c, FERRY_SCHEMA_INFO, "field-unused",
                            "{D} skips the bytes: the wire is unchanged, the state is dropped",
                            NULL, "%s (size %llu) is an unused placeholder in {D}", sf->name,
                            (unsigned long long)sf->size);
                else if (is_unused(c, sf) && !is_unused(c, df))
                    finding(c, FERRY_SCHEMA_WARNING, "field-unused-filled",
                            "{S} sends zeros there: {D} loads them as state",
                            "gate the new field by version (since) or send it in a subsection",
                            "{D} reads %s from bytes {S} sends as unused padding (size %llu)",
                            df->name, (unsigned long long)df->size);
                path_pop(c, mark);
                continue;
            }
            bool d_unused = is_unused(c, df);
            Side *other = d_unused ? &S : &D;
            const FerrySchemaField *ph = d_unused ? df : sf, *f = d_unused ? sf : df;
            long long remaining = (long long)ph->size - (long long)f->size;
            char names[256];
            int nl = snprintf(names, sizeof(names), "%s", f->name);
            while (remaining > 0 && (f = side_next(other))) {
                remaining -= (long long)f->size;
                if (nl > 0 && (size_t)nl < sizeof(names))
                    nl += snprintf(names + nl, sizeof(names) - (size_t)nl, ", %s", f->name);
            }
            size_t mark = path_push(c, ".", ph->name, "");
            if (remaining == 0) {
                if (d_unused)
                    finding(c, FERRY_SCHEMA_INFO, "field-unused",
                            "{D} skips the bytes: the wire is unchanged, the state is dropped",
                            NULL, "an unused placeholder of size %llu in {D} covers {S}'s %s",
                            (unsigned long long)ph->size, names);
                else
                    finding(c, FERRY_SCHEMA_WARNING, "field-unused-filled",
                            "{S} sends zeros there: {D} loads them as state",
                            "gate the new fields by version (since) or send them in a subsection",
                            "{D} reads %s from the %llu bytes {S} sends as unused padding", names,
                            (unsigned long long)ph->size);
                path_pop(c, mark);
                continue;
            }
            finding(c, FERRY_SCHEMA_ERROR, "field-unused-size",
                    "the placeholder and the fields it stands for differ in size: every later "
                    "field is misread",
                    "make the unused placeholder exactly as large as the fields it replaces",
                    "unused size mismatch near \"%s\": %llu placeholder bytes vs %s",
                    f ? f->name : names, (unsigned long long)ph->size, names);
            path_pop(c, mark);
            break;
        }
        /* A real mismatch: tell a removal, an insertion, a rename and a reorder apart. */
        const Cursor *scur = &S.st[S.depth], *dcur = &D.st[D.depth];
        bool s_gated = gated_out(c, dcur->desc, sf->name, dcur->version) != NULL;
        bool d_gated = gated_out(c, scur->desc, df->name, scur->version) != NULL;
        bool s_ahead = side_has_ahead(&D, sf->name), d_ahead = side_has_ahead(&S, df->name);
        if (!s_gated && !d_gated && !s_ahead && !d_ahead) {
            size_t mark = path_push(c, ".", sf->name, "");
            if (wire_same(c, sf, df)) {
                finding(c, FERRY_SCHEMA_WARNING, "field-renamed",
                        "names are not on the wire; only harmful if the meaning changed",
                        c->qemu ? "if it is the same state, nothing (QEMU's checker needs the pair "
                                  "in its changed_names table)"
                                : "if it is the same state, nothing",
                        "{S}'s %s is %s in {D} (same size and shape)", sf->name, df->name);
                compare_field(c, sf, df, vs);
            } else {
                finding(c, FERRY_SCHEMA_ERROR, "field-replaced",
                        "different bytes at the same place: every later field is misread",
                        "keep the old field (or a placeholder of its size) and add the new one "
                        "versioned or in a subsection",
                        "{S} sends %s (size %llu) where {D} reads %s (size %llu)", sf->name,
                        (unsigned long long)sf->size, df->name, (unsigned long long)df->size);
            }
            path_pop(c, mark);
            continue;
        }
        if (s_gated || (!s_ahead && !d_gated)) {
            char detail[200];
            snprintf(detail, sizeof(detail),
                     "{D} has no such field here (expected \"%s\", got \"%s\")", sf->name,
                     df->name);
            report_removed(c, sf, dcur, detail);
            need_d = false;
            continue;
        }
        bool d_ahead_in_s = d_ahead && !d_gated;
        if (!d_ahead_in_s) {
            size_t mark = path_push(c, ".", df->name, "");
            const FerrySchemaField *g = gated_out(c, scur->desc, df->name, scur->version);
            if (g)
                finding(c, FERRY_SCHEMA_ERROR, "field-version-gap",
                        "{D} reads bytes {S} did not send: every later field is misread",
                        "give the field the same since version in both builds",
                        "{D} reads %s in version-%u streams, {S} sends it only from version %u",
                        df->name, scur->version, g->since);
            else
                finding(c, FERRY_SCHEMA_ERROR, "field-inserted",
                        "{D} reads bytes {S} never sent: every later field is misread "
                        "{F}",
                        fix_dst_only(c),
                        "{D} reads %s (size %llu) before %s; {S} does not send it (expected "
                        "\"%s\", got \"%s\")",
                        df->name, (unsigned long long)df->size, sf->name, sf->name, df->name);
            path_pop(c, mark);
            need_s = false;
            continue;
        }
        size_t mark = path_push(c, ".", sf->name, "");
        finding(c, FERRY_SCHEMA_ERROR, "field-order",
                "the same fields in another order: the bytes land in the wrong fields",
                "keep the field order; the wire is positional",
                "expected field \"%s\", got \"%s\" (fields reordered); skipping the rest of %s",
                sf->name, df->name, s->name);
        path_pop(c, mark);
        break;
    }
    side_close(&S);
    side_close(&D);
}

/* ---- descriptions and subsections ---- */

static void compare_subsections(Ctx *c, const FerrySchemaDesc *s, const FerrySchemaDesc *d)
{
    for (size_t i = 0; i < s->nsubsections; i++) {
        const FerrySchemaSubsection *ss = &s->subsections[i], *ds = NULL;
        for (size_t j = 0; j < d->nsubsections && !ds; j++)
            if (!strcmp(d->subsections[j].desc->name, ss->desc->name))
                ds = &d->subsections[j];
        size_t mark = path_push(c, "{", ss->desc->name, "}");
        if (!ds) {
            if (c->qemu || !ss->optional)
                finding(c, FERRY_SCHEMA_ERROR, "subsection-missing",
                        c->qemu ? "{S} sends it whenever its needed() is true and {D} then fails "
                                  "the load (ENOENT, \"error while loading state\")"
                                : "a mandatory subsection unknown to {D} fails the load",
                        c->dir == FERRY_SCHEMA_FORWARD
                            ? "keep the subsection in NEW (load it even if NEW ignores it)"
                            : (c->qemu ? "make its needed() false for old machine types "
                                         "(compat property), so NEW does not send it to OLD"
                                       : "mark it optional, or make its needed() false for old "
                                         "machine types"),
                        "subsection \"%s\" not found in {D}", ss->desc->name);
            else
                finding(c, FERRY_SCHEMA_WARNING, "subsection-missing-optional",
                        "optional: {D} skips it with a warning, and its state is lost",
                        c->dir == FERRY_SCHEMA_FORWARD
                            ? "keep the subsection in NEW if its state matters"
                            : "nothing if losing it on OLD is acceptable",
                        "optional subsection \"%s\" not known to {D}", ss->desc->name);
            path_pop(c, mark);
            continue;
        }
        if (c->qemu) {
            size_t pl = strlen(d->name);
            if (strlen(ss->desc->name) < pl + 1 || strncmp(ss->desc->name, d->name, pl))
                finding(c, FERRY_SCHEMA_ERROR, "subsection-prefix",
                        "QEMU consumes a subsection only if its name starts with the parent's "
                        "vmsd name: the stream stops there {F}",
                        "name the subsection \"<parent vmsd name>/<something>\"",
                        "subsection \"%s\" is not prefixed by its parent's name \"%s\"",
                        ss->desc->name, d->name);
            if (ss->desc->version > 255)
                finding(c, FERRY_SCHEMA_WARNING, "subsection-version",
                        "QEMU stores a subsection's version in a u8 on load",
                        "keep subsection versions below 256",
                        "subsection version %u does not fit in a byte (arrives as %u)",
                        ss->desc->version, ss->desc->version & 0xff);
        } else if (ss->optional != ds->optional) {
            finding(c, FERRY_SCHEMA_INFO, "subsection-optional",
                    "the flag only matters to a destination that does not know the subsection",
                    NULL, "subsection is %s in {S}, %s in {D}",
                    ss->optional ? "optional" : "mandatory",
                    ds->optional ? "optional" : "mandatory");
        }
        compare_desc(c, ss->desc, ds->desc, LEVEL_SUBSECTION);
        path_pop(c, mark);
    }
    for (size_t j = 0; j < d->nsubsections; j++) {
        const FerrySchemaSubsection *ds = &d->subsections[j];
        bool found = false;
        for (size_t i = 0; i < s->nsubsections && !found; i++)
            found = !strcmp(s->subsections[i].desc->name, ds->desc->name);
        if (found)
            continue;
        size_t mark = path_push(c, "{", ds->desc->name, "}");
        finding(c, FERRY_SCHEMA_INFO, "subsection-added",
                "{S} never sends it; {D} keeps the values it had before the load",
                c->dir == FERRY_SCHEMA_FORWARD
                    ? (c->qemu || !ds->optional
                           ? "for NEW -> OLD, its needed() must be false for old machine types "
                             "(check with --both)"
                           : "")
                    : "",
                "subsection \"%s\" only in {D}%s", ds->desc->name,
                !c->qemu && ds->optional ? " (optional)" : "");
        path_pop(c, mark);
    }
}

static void compare_desc(Ctx *c, const FerrySchemaDesc *s, const FerrySchemaDesc *d, Level lvl)
{
    bool nested_local = c->qemu && lvl == LEVEL_STRUCT;
    uint32_t vs = s->version, vd = nested_local ? d->version : s->version;
    const char *what = lvl == LEVEL_TOP ? "section" : lvl == LEVEL_STRUCT ? "struct" : "subsection";

    if (s->version > d->version)
        finding(c, FERRY_SCHEMA_ERROR, "version-too-new",
                nested_local ? "QEMU loads a nested struct at the destination's own version (no "
                               "version on the wire): newer fields are misread"
                             : "{D} refuses it (\"unsupported version\")",
                c->dir == FERRY_SCHEMA_FORWARD
                    ? "NEW must load every version OLD writes: keep NEW's version >= OLD's"
                    : "to migrate back, put new state in a subsection whose needed() is false "
                      "for old machine types instead of bumping the version",
                "version error: %s \"%s\" is version %u in {S}, {D} loads at most %u", what,
                s->name, s->version, d->version);
    if (d->has_min_version && s->version < d->min_version)
        finding(c, FERRY_SCHEMA_ERROR, "version-too-old",
                "{D} refuses streams older than its min_version (\"is too old\")",
                c->dir == FERRY_SCHEMA_FORWARD
                    ? "lower NEW's min_version (keep loading the old layout with since fields)"
                    : "OLD cannot load NEW's version: NEW must not drop below OLD's min_version",
                "minimum version error: %s \"%s\" is version %u in {S}, {D} needs at least %u",
                what, s->name, s->version, d->min_version);
    else if (c->dir == FERRY_SCHEMA_FORWARD && d->min_version > s->min_version)
        finding(c, FERRY_SCHEMA_INFO, "min-version-raised",
                "NEW still loads OLD's version, but no longer older streams", NULL,
                "%s \"%s\": min_version raised from %u to %u", what, s->name, s->min_version,
                d->min_version);
    if (c->dir == FERRY_SCHEMA_FORWARD && d->version > s->version && !nested_local)
        finding(c, FERRY_SCHEMA_INFO, "version-bumped",
                "NEW loads OLD's version; OLD cannot load NEW's (backward migration fails)",
                "if NEW -> OLD must work, send new state in a subsection instead of bumping",
                "%s \"%s\": version %u in OLD, %u in NEW", what, s->name, s->version, d->version);

    if (strcmp(s->name, d->name)) {
        if (c->qemu) {
            if (!names_match(c, c->section, s->name, d->name)) {
                finding(c, FERRY_SCHEMA_ERROR, "desc-renamed",
                        "QEMU names sections and subsections after the vmsd: the stream no "
                        "longer matches",
                        "keep the vmsd name", "description \"%s\" missing, got \"%s\" instead",
                        s->name, d->name);
                return;
            }
        } else if (lvl != LEVEL_SUBSECTION) {
            finding(c, FERRY_SCHEMA_INFO, "desc-renamed",
                    "Ferry streams name sections and subsections, not nested descriptions", NULL,
                    "description \"%s\" is \"%s\" in {D}", s->name, d->name);
        }
    }

    bool do_fields = true, do_subs = true;
    if (c->qemu) {
        if (s->has_min_version && !d->has_min_version)
            finding(c, FERRY_SCHEMA_ERROR, "desc-entry-missing", "the dump is incomplete",
                    "regenerate the dump", "entry \"minimum_version_id\" missing in {D}'s \"%s\"",
                    d->name);
        if (s->has_fields && !d->has_fields) {
            finding(c, FERRY_SCHEMA_ERROR, "desc-entry-missing",
                    "{S} sends fields that {D} does not read: the stream desynchronises",
                    fix_src_only(c), "entry \"Fields\" missing: {D}'s \"%s\" has no fields",
                    d->name);
            do_fields = false;
        }
        if (s->has_subsections && !d->has_subsections) {
            char names[256] = "";
            size_t nl = 0;
            for (size_t i = 0; i < s->nsubsections && nl < sizeof(names); i++)
                nl += (size_t)snprintf(names + nl, sizeof(names) - nl, "%s\"%s\"", i ? ", " : "",
                                       s->subsections[i].desc->name);
            finding(
                c, FERRY_SCHEMA_ERROR, "desc-entry-missing",
                "{S} sends its subsections whenever needed() is true; {D} fails the load "
                "(ENOENT)",
                c->dir == FERRY_SCHEMA_FORWARD ? "keep the subsections in NEW"
                                               : "make their needed() false for old machine types",
                "entry \"Subsections\" missing: {D}'s \"%s\" has none, {S} has %s", d->name, names);
            do_subs = false;
        }
    }
    if (do_fields) {
        walk_fields(c, s, d, vs, vd);
        /* Fields only {D} has, added behind a version the stream does not reach: fine. */
        for (size_t i = 0; i < d->nfields; i++) {
            const FerrySchemaField *f = &d->fields[i];
            if (on_wire(c, f, vd) || find_field(s, f->name))
                continue;
            size_t mark = path_push(c, ".", f->name, "");
            finding(c, FERRY_SCHEMA_INFO, "field-added-versioned",
                    "{D} does not read it from {S}'s stream and keeps its reset value", NULL,
                    "%s appears in version %u of {D}; {S}'s stream is version %u", f->name,
                    f->since, vd);
            path_pop(c, mark);
        }
    }
    if (do_subs)
        compare_subsections(c, s, d);
}

/* ---- sections ---- */

static const char *tail(const char *name)
{
    const char *t = strrchr(name, '/');
    return t ? t + 1 : NULL;
}

static void report_missing(Ctx *c, const FerrySchemaSection *ss)
{
    const FerrySchemaDoc *dst = c->dst;
    const FerrySchemaSection *moved = NULL, *inst = NULL, *shape[3];
    size_t nshape = 0;
    uint64_t sshape = ss->desc ? ferry_schema_desc_shape(ss->desc) : 0;
    for (size_t k = 0; k < ferry_schema_doc_count(dst); k++) {
        const FerrySchemaSection *ds = ferry_schema_doc_section(dst, k);
        if (ferry_schema_doc_find(c->src, ds->name, ds->instance) >= 0)
            continue; /* not new in the destination */
        if (!c->qemu && !strcmp(ds->name, ss->name) && !inst)
            inst = ds;
        const char *ts = tail(ss->name), *td = tail(ds->name);
        if (ts && td && !strcmp(ts, td) && ds->instance == ss->instance && !moved)
            moved = ds;
        if (ss->desc && ds->desc && nshape < 3 && sshape == ferry_schema_desc_shape(ds->desc))
            shape[nshape++] = ds;
    }
    const char *fix_keep = c->dir == FERRY_SCHEMA_FORWARD
                               ? "keep the section in NEW under the same name and instance"
                               : "NEW must keep sending what OLD knows: keep the section name";
    if (inst) {
        finding(c, FERRY_SCHEMA_ERROR, "section-instance",
                "sections are found by name and instance id: {D} rejects the stream (\"Unknown "
                "section or instance\")",
                "keep instance ids stable (do not derive them from creation order)",
                "section \"%s\" instance %u is instance %u in {D}", ss->name, ss->instance,
                inst->instance);
    } else if (moved) {
        bool same = ss->desc && moved->desc && sshape == ferry_schema_desc_shape(moved->desc);
        finding(c, FERRY_SCHEMA_ERROR, "section-moved",
                "the section name contains the device's place in the tree, so {D} does not find "
                "it (\"Unknown savevm section\")",
                "name the section by a stable id independent of the tree position (DESIGN §4, "
                "S15), or keep the device at its old address",
                "section \"%s\" does not exist in {D}; {D} has \"%s\"%s: the same device moved "
                "in the device tree?",
                ss->name, moved->name, same ? " with the same layout" : "");
    } else if (nshape) {
        char cand[300];
        size_t nl = 0;
        for (size_t i = 0; i < nshape && nl < sizeof(cand); i++)
            nl += (size_t)snprintf(cand + nl, sizeof(cand) - nl, "%s\"%s\"", i ? ", " : "",
                                   shape[i]->name);
        finding(c, FERRY_SCHEMA_ERROR, "section-missing",
                "{S} sends it and {D} rejects the stream (\"Unknown savevm section\")",
                c->dir == FERRY_SCHEMA_FORWARD
                    ? "keep the old section name (renames break migration), or alias it"
                    : "keep the section name in both builds",
                "section \"%s\" does not exist in {D}; renamed? {D}-only section%s with the same "
                "layout: %s",
                ss->name, nshape > 1 ? "s" : "", cand);
    } else {
        finding(c, FERRY_SCHEMA_ERROR, "section-missing",
                "{S} sends it and {D} rejects the stream (\"Unknown savevm section\")", fix_keep,
                "section \"%s\" does not exist in {D}", ss->name);
    }
}

static void compare_section(Ctx *c, const FerrySchemaSection *ss, const FerrySchemaSection *ds)
{
    if (c->qemu) {
        /* Top-level numbers equal the vmsd's in real dumps; report them only when they add
         * something (QEMU's checker also skips the top-level minimum test by a bug). */
        bool desc_same_v = ss->desc && ds->desc && ss->desc->version == ss->version &&
                           ds->desc->version == ds->version;
        bool desc_same_min = ss->desc && ds->desc && ss->desc->version == ss->version &&
                             ds->desc->has_min_version && ds->desc->min_version == ds->min_version;
        if (ss->has_version && ds->has_version && ss->version > ds->version && !desc_same_v)
            finding(c, FERRY_SCHEMA_ERROR, "version-too-new",
                    "{D} refuses the section (\"savevm: unsupported version\")",
                    c->dir == FERRY_SCHEMA_FORWARD
                        ? "NEW must load every version OLD writes: keep NEW's version >= OLD's"
                        : "to migrate back, put new state in a subsection instead of bumping "
                          "the version",
                    "version error: section version %u in {S}, {D} loads at most %u", ss->version,
                    ds->version);
        if (ss->has_version && ds->has_min_version && ss->version < ds->min_version &&
            !desc_same_min)
            finding(c, FERRY_SCHEMA_ERROR, "version-too-old",
                    "{D} refuses streams older than its minimum version (QEMU's checker skips "
                    "this top-level test)",
                    c->dir == FERRY_SCHEMA_FORWARD ? "lower NEW's minimum_version_id"
                                                   : "NEW must not drop below OLD's minimum",
                    "minimum version error: section version %u in {S}, {D} needs at least %u",
                    ss->version, ds->min_version);
        static const char *const keys[] = {"Name", "version_id", "minimum_version_id"};
        bool s_has[] = {ss->has_name, ss->has_version, ss->has_min_version};
        bool d_has[] = {ds->has_name, ds->has_version, ds->has_min_version};
        for (int i = 0; i < 3; i++)
            if (s_has[i] && !d_has[i])
                finding(c, FERRY_SCHEMA_ERROR, "section-entry-missing", "the dump is incomplete",
                        "regenerate the dump", "entry \"%s\" missing in {D}", keys[i]);
        if (ss->desc && !ds->desc)
            finding(c, FERRY_SCHEMA_ERROR, "section-entry-missing",
                    "{D} has no device state for it and rejects the section",
                    c->dir == FERRY_SCHEMA_FORWARD ? "keep the device's vmsd in NEW"
                                                   : "keep the device stateless for old machine "
                                                     "types",
                    "entry \"Description\" missing: {D} has no state description for it");
    }
    if (ss->desc && ds->desc) {
        size_t mark = path_push(c, "", ss->desc->name, "");
        compare_desc(c, ss->desc, ds->desc, LEVEL_TOP);
        path_pop(c, mark);
    }
}

int ferry_schema_compare(const FerrySchemaDoc *old, const FerrySchemaDoc *new_,
                         FerrySchemaDirection dir, FerrySchemaReport *rep, FerryError *err)
{
    if (ferry_schema_doc_format(old) != ferry_schema_doc_format(new_))
        return ferry_error_set(
            err, -EINVAL, "%s is a %s file but %s is a %s file: compare like with like",
            ferry_schema_doc_name(old),
            ferry_schema_doc_format(old) == FERRY_SCHEMA_FORMAT_QEMU ? "QEMU -dump-vmstate"
                                                                     : "Ferry schema",
            ferry_schema_doc_name(new_),
            ferry_schema_doc_format(new_) == FERRY_SCHEMA_FORMAT_QEMU ? "QEMU -dump-vmstate"
                                                                      : "Ferry schema");
    Ctx c = {.rep = rep, .dir = dir};
    c.qemu = ferry_schema_doc_format(old) == FERRY_SCHEMA_FORMAT_QEMU;
    if (dir == FERRY_SCHEMA_FORWARD) {
        c.src = old;
        c.dst = new_;
        c.src_label = "OLD";
        c.dst_label = "NEW";
    } else {
        c.src = new_;
        c.dst = old;
        c.src_label = "NEW";
        c.dst_label = "OLD";
    }
    const char *ms = ferry_schema_doc_machine(c.src), *md = ferry_schema_doc_machine(c.dst);
    if (ms && md && strcmp(ms, md))
        finding(&c, FERRY_SCHEMA_WARNING, "machine-mismatch",
                "section layouts depend on the machine type (compat properties): compare dumps "
                "of the same machine type",
                "dump both builds with the same -M / machine type",
                "checking different machine types: \"%s\" in {S}, \"%s\" in {D}", ms, md);

    size_t nd = ferry_schema_doc_count(c.dst);
    bool *used = calloc(nd ? nd : 1, sizeof(*used));
    if (!used)
        return ferry_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < ferry_schema_doc_count(c.src) && !c.rc; i++) {
        const FerrySchemaSection *ss = ferry_schema_doc_section(c.src, i);
        c.section = ss->name;
        c.instance = ss->instance;
        long j = ferry_schema_doc_find(c.dst, ss->name, ss->instance);
        if (j < 0 && c.qemu) {
            const char *alias = section_alias(ss->name);
            if (alias && (j = ferry_schema_doc_find(c.dst, alias, ss->instance)) >= 0)
                finding(&c, FERRY_SCHEMA_INFO, "section-alias",
                        "a QOM type rename QEMU's checker accepts: the vmsd name on the wire is "
                        "unchanged",
                        NULL, "section \"%s\" is \"%s\" in {D}", ss->name, alias);
        }
        if (j < 0) {
            report_missing(&c, ss);
            continue;
        }
        used[j] = true;
        compare_section(&c, ss, ferry_schema_doc_section(c.dst, (size_t)j));
    }
    for (size_t j = 0; j < nd && !c.rc; j++) {
        const FerrySchemaSection *ds = ferry_schema_doc_section(c.dst, (size_t)j);
        if (used[j])
            continue;
        c.section = ds->name;
        c.instance = ds->instance;
        finding(&c, FERRY_SCHEMA_INFO, "section-added",
                "{S} never sends it; {D} keeps the device's reset state", NULL,
                "section \"%s\" only in {D}", ds->name);
    }
    free(used);
    if (c.rc)
        return ferry_error_set(err, c.rc, "out of memory");
    return 0;
}

/* ---- report ---- */

FerrySchemaReport *ferry_schema_report_new(void)
{
    return calloc(1, sizeof(FerrySchemaReport));
}

void ferry_schema_report_free(FerrySchemaReport *rep)
{
    if (!rep)
        return;
    for (size_t i = 0; i < rep->n; i++) {
        FerrySchemaFinding *f = &rep->v[i];
        free(f->section);
        free(f->path);
        free(f->message);
        free(f->why);
        free(f->fix);
    }
    free(rep->v);
    free(rep);
}

size_t ferry_schema_report_count(const FerrySchemaReport *rep)
{
    return rep->n;
}

const FerrySchemaFinding *ferry_schema_report_finding(const FerrySchemaReport *rep, size_t i)
{
    return i < rep->n ? &rep->v[i] : NULL;
}

size_t ferry_schema_report_tally(const FerrySchemaReport *rep, FerrySchemaDirection dir,
                                 FerrySchemaSeverity sev)
{
    size_t n = 0;
    for (size_t i = 0; i < rep->n; i++)
        n += rep->v[i].direction == dir && rep->v[i].severity == sev;
    return n;
}

const char *ferry_schema_severity_name(FerrySchemaSeverity sev)
{
    return sev == FERRY_SCHEMA_ERROR ? "error" : sev == FERRY_SCHEMA_WARNING ? "warning" : "info";
}

const char *ferry_schema_direction_name(FerrySchemaDirection dir)
{
    return dir == FERRY_SCHEMA_FORWARD ? "forward" : "backward";
}

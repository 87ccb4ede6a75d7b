/* ferry schema check: one in-memory model of device-state schemas (QEMU -dump-vmstate JSON or
 * Ferry schema JSON) and one rule engine that reports what breaks migration between two of them.
 * Tool-internal API (linked into the ferry binary, its unit tests and its fuzz harness). */
#ifndef FERRY_TOOLS_SCHEMA_CHECK_H
#define FERRY_TOOLS_SCHEMA_CHECK_H

#include "ferry/error.h"
#include "ferry/state/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- JSON (schema_json.c) -------------------------------------------------------------------
 * A DOM for Ferry schemas over jsmn's tokens (libferry's src/stream/json-tokens.c, which QEMU
 * dumps are loaded from directly): strings are decoded in place in the input buffer, nodes live
 * in one array, nesting depth is bounded. */
typedef enum FerryJsonType {
    FERRY_JSON_NULL,
    FERRY_JSON_FALSE,
    FERRY_JSON_TRUE,
    FERRY_JSON_INT,
    FERRY_JSON_REAL,
    FERRY_JSON_STRING,
    FERRY_JSON_ARRAY,
    FERRY_JSON_OBJECT,
} FerryJsonType;

typedef struct FerryJson FerryJson;
struct FerryJson {
    const char *key; /* member name inside an object, else NULL */
    union {
        const char *str;  /* STRING: NUL-terminated, no embedded NUL */
        FerryJson *items; /* ARRAY items / OBJECT members, `len` of them */
        int64_t i;
        double r;
    } u;
    uint32_t len; /* STRING bytes, ARRAY items, OBJECT members */
    uint8_t type; /* FerryJsonType */
};

typedef struct FerryJsonDoc FerryJsonDoc;

/* Input buffers carry this many zero bytes after their text (a NUL for the format sniffing). */
#define FERRY_JSON_PADDING 16

/* Parse `len` bytes; takes ownership of `buf` (malloc'd, len + FERRY_JSON_PADDING bytes,
 * modified in place). Caller frees the result with ferry_json_free. Errors give line and column. */
FerryJsonDoc *ferry_json_parse(char *buf, size_t len, FerryError *err);
void ferry_json_free(FerryJsonDoc *doc);
/* Borrowed root value. */
const FerryJson *ferry_json_root(const FerryJsonDoc *doc);
/* Borrowed member of an object or NULL (first match). */
const FerryJson *ferry_json_get(const FerryJson *obj, const char *key);

/* ---- Model (schema_model.c) ----------------------------------------------------------------- */
typedef enum FerrySchemaFormat {
    FERRY_SCHEMA_FORMAT_QEMU,  /* qemu -dump-vmstate (reference §2) */
    FERRY_SCHEMA_FORMAT_FERRY, /* ferry schema dump (docs/schema-format.md) */
} FerrySchemaFormat;

typedef struct FerrySchemaDesc FerrySchemaDesc;

typedef struct FerrySchemaField {
    const char *name;
    bool typed; /* Ferry: type and array are known; QEMU dumps only give a size */
    FerryType type;
    FerryArrayKind array;
    bool count_known;            /* Ferry, or QEMU >= 8.1 "num" */
    uint64_t size;               /* one element in memory; buffer/string capacity */
    uint64_t count;              /* FIXED length or VAR capacity */
    uint64_t max;                /* ALLOC / LIST load bound */
    const char *count_field;     /* NULL if none */
    uint32_t since;              /* QEMU field version_id */
    bool exists;                 /* has an existence predicate */
    const FerrySchemaDesc *desc; /* nested (struct, list element), else NULL */
} FerrySchemaField;

typedef struct FerrySchemaSubsection {
    bool optional; /* Ferry: an unknown optional subsection is skipped; QEMU: always false */
    const FerrySchemaDesc *desc;
} FerrySchemaSubsection;

struct FerrySchemaDesc {
    const char *name;
    uint32_t version;
    uint32_t min_version;
    bool has_min_version; /* QEMU: key present (the checker reports a missing one) */
    bool has_fields;      /* QEMU: "Fields" key present */
    bool has_subsections; /* QEMU: "Subsections" key present */
    const FerrySchemaField *fields;
    size_t nfields;
    const FerrySchemaSubsection *subsections;
    size_t nsubsections;
};

typedef struct FerrySchemaSection {
    const char *name; /* QEMU: the QOM type (dump key); Ferry: the section name */
    uint32_t instance;
    /* QEMU top-level entry keys ("Name", "version_id", "minimum_version_id") */
    bool has_name, has_version, has_min_version;
    uint32_t version, min_version;
    const FerrySchemaDesc *desc; /* NULL when a QEMU entry has no Description */
} FerrySchemaSection;

typedef struct FerrySchemaDoc FerrySchemaDoc;

/* Load a file, auto-detecting the format. Caller frees. Errors name the file and the JSON path
 * ("new.json: $.sections[2].description.fields[0].type: unknown type \"u128\""). */
FerrySchemaDoc *ferry_schema_doc_load_file(const char *path, FerryError *err);
/* A file's bytes, with FERRY_JSON_PADDING readable zero bytes after them: a read-only mapping
 * or a heap copy. Release with ferry_schema_input_release (unless a load took it). */
typedef struct FerrySchemaInput {
    char *buf;
    size_t len;
    size_t map_len; /* non-zero: buf is a mapping */
} FerrySchemaInput;
int ferry_schema_input_open(const char *path, FerrySchemaInput *in, FerryError *err);
void ferry_schema_input_release(FerrySchemaInput *in);
/* Load from an input; takes ownership of it (released on success and on failure). */
FerrySchemaDoc *ferry_schema_doc_load_input(const char *name, FerrySchemaInput *in,
                                            FerryError *err);
/* Same from memory; takes ownership of `buf` (malloc'd, len + FERRY_JSON_PADDING bytes). `name` is
 * used in messages (borrowed, copied). */
FerrySchemaDoc *ferry_schema_doc_load_buffer(const char *name, char *buf, size_t len,
                                             FerryError *err);
void ferry_schema_doc_free(FerrySchemaDoc *doc);
/* Hash of a description's wire layout (field names, types, sizes, versions, subsection names;
 * not its own name): equal shapes suggest a renamed or moved section. */
uint64_t ferry_schema_desc_shape(const FerrySchemaDesc *d);

FerrySchemaFormat ferry_schema_doc_format(const FerrySchemaDoc *doc);
const char *ferry_schema_doc_name(const FerrySchemaDoc *doc);    /* borrowed */
const char *ferry_schema_doc_machine(const FerrySchemaDoc *doc); /* borrowed, may be NULL */
size_t ferry_schema_doc_count(const FerrySchemaDoc *doc);
/* Borrowed; sections in input order. */
const FerrySchemaSection *ferry_schema_doc_section(const FerrySchemaDoc *doc, size_t i);
/* Index of (name, instance) or -1. */
long ferry_schema_doc_find(const FerrySchemaDoc *doc, const char *name, uint32_t instance);

/* ---- Rule engine (schema_rules.c) ----------------------------------------------------------- */
typedef enum FerrySchemaSeverity {
    FERRY_SCHEMA_INFO,
    FERRY_SCHEMA_WARNING,
    FERRY_SCHEMA_ERROR,
} FerrySchemaSeverity;

typedef enum FerrySchemaDirection {
    FERRY_SCHEMA_FORWARD,  /* OLD is the source, NEW the destination */
    FERRY_SCHEMA_BACKWARD, /* NEW is the source, OLD the destination */
} FerrySchemaDirection;

typedef struct FerrySchemaFinding {
    FerrySchemaDirection direction;
    FerrySchemaSeverity severity;
    const char *rule; /* stable id, e.g. "field-appended" (docs/compatibility.md) */
    char *section;    /* section name ("" for document-level findings) */
    uint32_t instance;
    char *path;    /* description.field{subsection}.field ... ("" at section level) */
    char *message; /* what differs */
    char *why;     /* why it breaks (or why it does not) */
    char *fix;     /* how to fix it ("" when nothing to do) */
} FerrySchemaFinding;

typedef struct FerrySchemaReport FerrySchemaReport;

/* Caller frees with ferry_schema_report_free. */
FerrySchemaReport *ferry_schema_report_new(void);
void ferry_schema_report_free(FerrySchemaReport *rep);
size_t ferry_schema_report_count(const FerrySchemaReport *rep);
/* Borrowed. */
const FerrySchemaFinding *ferry_schema_report_finding(const FerrySchemaReport *rep, size_t i);
size_t ferry_schema_report_tally(const FerrySchemaReport *rep, FerrySchemaDirection dir,
                                 FerrySchemaSeverity sev);

/* Append to `rep` every difference that matters when a build described by `old` and one
 * described by `new` migrate in direction `dir`. Both documents must have the same format
 * (-EINVAL otherwise). Returns 0 or a negative errno (-ENOMEM). */
int ferry_schema_compare(const FerrySchemaDoc *old, const FerrySchemaDoc *new_,
                         FerrySchemaDirection dir, FerrySchemaReport *rep, FerryError *err);

const char *ferry_schema_severity_name(FerrySchemaSeverity sev);
const char *ferry_schema_direction_name(FerrySchemaDirection dir);

/* ---- Subcommands (schema.c dispatches `ferry schema <sub>`) --------------------------------- */
int ferry_schema_check_main(int argc, char **argv); /* argv[0] == "check" */

#endif

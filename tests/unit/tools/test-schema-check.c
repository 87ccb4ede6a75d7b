/* Unit tests of the schema checker: the in-place JSON parser, the model loaders (errors name the
 * JSON path) and the rule engine on small documents, in both directions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
// clang-format off: cmocka needs the headers above first
#include <cmocka.h>
// clang-format on

#include "ferry/state/schema.h"
#include "schema_check.h"

static char *dup_buf(const char *s)
{
    size_t n = strlen(s);
    char *b = malloc(n + FERRY_JSON_PADDING);
    assert_non_null(b);
    memcpy(b, s, n);
    return b;
}

static FerryJsonDoc *parse(const char *s, FerryError *err)
{
    return ferry_json_parse(dup_buf(s), strlen(s), err);
}

static FerrySchemaDoc *load(const char *name, const char *s, FerryError *err)
{
    return ferry_schema_doc_load_buffer(name, dup_buf(s), strlen(s), err);
}

static void test_json_values(void **state)
{
    (void)state;
    FerryError err = {0};
    FerryJsonDoc *d =
        parse(" {\"a\": [1, -2, 3.5, true, false, null, \"x\\u00e9\\n\\ud83d\\ude00\"],"
              " \"b\": {}, \"c\": []} ",
              &err);
    assert_non_null(d);
    const FerryJson *a = ferry_json_get(ferry_json_root(d), "a");
    assert_non_null(a);
    assert_int_equal(a->type, FERRY_JSON_ARRAY);
    assert_int_equal(a->len, 7);
    assert_int_equal(a->u.items[0].u.i, 1);
    assert_int_equal(a->u.items[1].u.i, -2);
    assert_int_equal(a->u.items[2].type, FERRY_JSON_REAL);
    assert_true(a->u.items[2].u.r == 3.5);
    assert_int_equal(a->u.items[3].type, FERRY_JSON_TRUE);
    assert_int_equal(a->u.items[5].type, FERRY_JSON_NULL);
    assert_string_equal(a->u.items[6].u.str, "x\xc3\xa9\n\xf0\x9f\x98\x80");
    assert_int_equal(ferry_json_get(ferry_json_root(d), "b")->len, 0);
    assert_null(ferry_json_get(ferry_json_root(d), "zz"));
    ferry_json_free(d);
}

/* Dense input has more tokens than the first guess (one per 16 bytes): the token array grows
 * while jsmn resumes, from the heap to a huge-page mapping, and no value is lost on the way. */
static void test_json_token_growth(void **state)
{
    (void)state;
    enum { N = 100000 }; /* a 12.5k-token first guess: heap, then mappings */
    char *text = malloc(2 * N + 2 + FERRY_JSON_PADDING);
    assert_non_null(text);
    size_t len = 0;
    text[len++] = '[';
    for (int i = 0; i < N; i++) {
        text[len++] = (char)('0' + i % 10);
        text[len++] = ',';
    }
    text[len - 1] = ']';
    FerryError err = {0};
    FerryJsonDoc *d = ferry_json_parse(text, len, &err); /* takes text */
    assert_non_null(d);
    const FerryJson *a = ferry_json_root(d);
    assert_int_equal(a->len, N);
    for (int i = 0; i < N; i += 997)
        assert_int_equal(a->u.items[i].u.i, i % 10);
    assert_int_equal(a->u.items[N - 1].u.i, (N - 1) % 10);
    ferry_json_free(d);
}

static void expect_parse_error(const char *text, const char *msg)
{
    FerryError err = {0};
    FerryJsonDoc *d = parse(text, &err);
    assert_null(d);
    if (!strstr(err.msg, msg))
        fail_msg("input %s: error \"%s\" lacks \"%s\"", text, err.msg, msg);
}

static void test_json_errors(void **state)
{
    (void)state;
    expect_parse_error("", "unexpected end of input");
    expect_parse_error("{\"a\":1,}", "line 1, column 8: expected a string");
    expect_parse_error("{\n  \"a\" 1}", "line 2, column 7: expected ':'");
    expect_parse_error("[1 2]", "expected ',' or ']'");
    expect_parse_error("\"abc", "unterminated string");
    expect_parse_error("\"a\\u0000\"", "NUL");
    expect_parse_error("\"\\ud800\"", "surrogate");
    expect_parse_error("01", "leading zero");
    expect_parse_error("{} x", "after the JSON value");
    expect_parse_error("tru", "unexpected character");
    /* jsmn tokenises these without complaint; the walk over its tokens must not. */
    expect_parse_error("[1,]", "column 4: expected a value");
    expect_parse_error("[1:2]", "expected ',' or ']'");
    expect_parse_error("{\"a\":1 \"b\":2}", "column 8: expected ',' or '}'");
    expect_parse_error("{\"a\"}", "expected ':'");
    expect_parse_error("{\"a\" \"b\"}", "expected ':'");
    expect_parse_error("{1:2}", "expected a string (object key)");
    expect_parse_error("{\"a\":{}:1}", "expected ',' or '}'");
    expect_parse_error("[1}", "expected ',' or ']'");
    expect_parse_error("[\"a\x01\"]", "control character");
    expect_parse_error("[1x]", "invalid number");
    expect_parse_error("[-]", "invalid number");
    expect_parse_error("[1.]", "invalid number");
    expect_parse_error("[nul]", "unexpected character");
    expect_parse_error("[\"\\x\"]", "invalid escape");
    expect_parse_error("[\"\\udc00\"]", "surrogate");
    expect_parse_error("[1] [2]", "after the JSON value");
    expect_parse_error("[[1]", "unexpected end of input");
    char deep[400];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    expect_parse_error(deep, "nesting too deep");
}

#define FERRY_DOC(SECTIONS)                                                                        \
    "{\"format\": \"ferry-schema\", \"format_version\": 1, \"machine\": \"ferry-1.0\", "           \
    "\"sections\": [" SECTIONS "]}"
#define SERIAL(VER, FIELDS, SUBS)                                                                  \
    "{\"section\": \"serial\", \"instance\": 0, \"description\": {\"name\": \"serial\", "          \
    "\"version\": " #VER ", \"min_version\": 1, \"fields\": [" FIELDS "], \"subsections\": [" SUBS \
    "]}}"
#define U8(NAME) "{\"name\": \"" NAME "\", \"type\": \"u8\", \"size\": 1}"
#define U8_SINCE(NAME, S)                                                                          \
    "{\"name\": \"" NAME "\", \"type\": \"u8\", \"size\": 1, \"since\": " #S "}"

static void test_load_errors_name_path(void **state)
{
    (void)state;
    FerryError err = {0};
    assert_null(
        load("x.json", FERRY_DOC(SERIAL(1, "{\"name\": \"a\", \"type\": \"u7\"}", "")), &err));
    assert_string_equal(err.msg,
                        "x.json: $.sections[0].description.fields[0].type: unknown type \"u7\"");
    assert_null(load("y.json",
                     "{\"kvmclock\": {\"Description\": {\"name\": \"k\", "
                     "\"version_id\": 1, \"Fields\": [{\"field\": \"c\", "
                     "\"version_id\": \"0\", \"size\": 8}]}}}",
                     &err));
    assert_string_equal(err.msg, "y.json: $.kvmclock.Description.Fields[0].version_id: expected "
                                 "an integer, got a string");
    assert_null(load("z.json",
                     "{\"format\": \"ferry-schema\", \"format_version\": 2, "
                     "\"sections\": []}",
                     &err));
    assert_non_null(strstr(err.msg, "z.json: $.format_version: unsupported format_version 2"));
    assert_null(
        load("d.json", FERRY_DOC(SERIAL(1, U8("a"), "") ", " SERIAL(1, U8("a"), "")), &err));
    assert_non_null(strstr(err.msg, "duplicate section \"serial\" instance 0"));
}

typedef struct Want {
    FerrySchemaDirection dir;
    FerrySchemaSeverity sev;
    const char *rule;
    const char *path;
} Want;

/* Compares OLD and NEW in both directions; the findings must be exactly `want`. */
static void check(const char *old_text, const char *new_text, const Want *want, size_t nwant)
{
    FerryError err = {0};
    FerrySchemaDoc *o = load("old", old_text, &err), *n;
    if (!o)
        fail_msg("old: %s", err.msg);
    n = load("new", new_text, &err);
    if (!n)
        fail_msg("new: %s", err.msg);
    FerrySchemaReport *r = ferry_schema_report_new();
    assert_int_equal(ferry_schema_compare(o, n, FERRY_SCHEMA_FORWARD, r, &err), 0);
    assert_int_equal(ferry_schema_compare(o, n, FERRY_SCHEMA_BACKWARD, r, &err), 0);
    for (size_t i = 0; i < ferry_schema_report_count(r); i++) {
        const FerrySchemaFinding *f = ferry_schema_report_finding(r, i);
        if (i >= nwant || f->direction != want[i].dir || f->severity != want[i].sev ||
            strcmp(f->rule, want[i].rule) || strcmp(f->path, want[i].path))
            fail_msg("finding %zu unexpected: %s %s %s %s: %s", i,
                     ferry_schema_direction_name(f->direction),
                     ferry_schema_severity_name(f->severity), f->rule, f->path, f->message);
    }
    assert_int_equal(ferry_schema_report_count(r), nwant);
    ferry_schema_report_free(r);
    ferry_schema_doc_free(o);
    ferry_schema_doc_free(n);
}

static void test_identical_is_clean(void **state)
{
    (void)state;
    const char *d = FERRY_DOC(SERIAL(1, U8("a") "," U8("b"), ""));
    check(d, d, NULL, 0);
}

/* Bug class 1: a field appended without a version bump. QEMU's checker never reports it. */
static void test_appended_field(void **state)
{
    (void)state;
    const Want w[] = {
        {FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_ERROR, "field-appended", "serial.c"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_ERROR, "field-removed", "serial.c"},
    };
    check(FERRY_DOC(SERIAL(1, U8("a") "," U8("b"), "")),
          FERRY_DOC(SERIAL(1, U8("a") "," U8("b") "," U8("c"), "")), w, 2);
}

/* The same field behind a version bump: forward is fine, backward is refused. */
static void test_versioned_field(void **state)
{
    (void)state;
    const Want w[] = {
        {FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_INFO, "version-bumped", "serial"},
        {FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_INFO, "field-added-versioned", "serial.c"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_ERROR, "version-too-new", "serial"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_ERROR, "field-removed", "serial.c"},
    };
    check(FERRY_DOC(SERIAL(1, U8("a"), "")), FERRY_DOC(SERIAL(2, U8("a") "," U8_SINCE("c", 2), "")),
          w, 4);
}

#define SUB(OPT)                                                                                   \
    "{\"optional\": " #OPT ", \"description\": {\"name\": \"serial/fifo\", \"version\": 1, "       \
    "\"min_version\": 1, \"fields\": [" U8("f") "], \"subsections\": []}}"

/* S14: an optional subsection unknown to the destination is a warning, a mandatory one an error. */
static void test_subsection_optional_matters(void **state)
{
    (void)state;
    const Want opt[] = {
        {FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_INFO, "subsection-added", "serial{serial/fifo}"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_WARNING, "subsection-missing-optional",
         "serial{serial/fifo}"},
    };
    check(FERRY_DOC(SERIAL(1, U8("a"), "")), FERRY_DOC(SERIAL(1, U8("a"), SUB(true))), opt, 2);
    const Want mand[] = {
        {FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_INFO, "subsection-added", "serial{serial/fifo}"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_ERROR, "subsection-missing", "serial{serial/fifo}"},
    };
    check(FERRY_DOC(SERIAL(1, U8("a"), "")), FERRY_DOC(SERIAL(1, U8("a"), SUB(false))), mand, 2);
}

#define QFIELD(NAME, V, SIZE)                                                                      \
    "{\"field\": \"" NAME "\", \"version_id\": " #V ", \"field_exists\": false, \"size\": " #SIZE  \
    "}"
#define QDOC(INNER_V, INNER_FIELDS)                                                                \
    "{\"vmschkmachine\": {\"Name\": \"pc\"}, \"dev\": {\"Name\": \"dev\", \"version_id\": 1, "     \
    "\"minimum_version_id\": 1, \"Description\": {\"name\": \"dev\", \"version_id\": 1, "          \
    "\"minimum_version_id\": 1, \"Fields\": [{\"field\": \"pci\", \"version_id\": 0, "             \
    "\"field_exists\": false, \"size\": 64, \"Description\": {\"name\": \"PCIDevice\", "           \
    "\"version_id\": " #INNER_V ", \"minimum_version_id\": 1, \"Fields\": [" INNER_FIELDS          \
    "]}}, " QFIELD("x", 0, 4) "]}}}"

/* QEMU loads a nested struct at the destination's own version: a field added behind a nested
 * version bump is read from an old source that never sent it. The checker misses this. */
static void test_qemu_nested_struct_local_version(void **state)
{
    (void)state;
    const Want w[] = {
        {FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_ERROR, "field-appended", "dev.pci.irq"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_ERROR, "version-too-new", "dev.pci"},
        {FERRY_SCHEMA_BACKWARD, FERRY_SCHEMA_ERROR, "field-removed", "dev.pci.irq"},
    };
    check(QDOC(1, QFIELD("config", 0, 16)),
          QDOC(2, QFIELD("config", 0, 16) "," QFIELD("irq", 2, 4)), w, 3);
}

static void test_formats_must_match(void **state)
{
    (void)state;
    FerryError err = {0};
    FerrySchemaDoc *o = load("old", FERRY_DOC(SERIAL(1, U8("a"), "")), &err);
    FerrySchemaDoc *n = load("new", QDOC(1, QFIELD("config", 0, 16)), &err);
    assert_non_null(o);
    assert_non_null(n);
    FerrySchemaReport *r = ferry_schema_report_new();
    assert_int_equal(ferry_schema_compare(o, n, FERRY_SCHEMA_FORWARD, r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "compare like with like"));
    ferry_schema_report_free(r);
    ferry_schema_doc_free(o);
    ferry_schema_doc_free(n);
}

/* The real exporter (libferry's ferry_schema_dumps) feeds the checker: a serial device appends a
 * register without a version bump between two builds' tables. */
typedef struct Serial {
    uint8_t lsr, ier;
    uint16_t div;
    uint8_t scr;
} Serial;
static const FerryField serial_v1_fields[] = {FERRY_FIELD(Serial, lsr), FERRY_FIELD(Serial, ier),
                                              FERRY_FIELD(Serial, div), FERRY_END};
static const FerryField serial_v1_appended[] = {FERRY_FIELD(Serial, lsr), FERRY_FIELD(Serial, ier),
                                                FERRY_FIELD(Serial, div), FERRY_FIELD(Serial, scr),
                                                FERRY_END};
static const FerryField serial_v2_fields[] = {FERRY_FIELD(Serial, lsr), FERRY_FIELD(Serial, ier),
                                              FERRY_FIELD(Serial, div),
                                              FERRY_FIELD(Serial, scr, .since = 2), FERRY_END};
static const FerryDesc serial_old = {.name = "serial",
                                     .version = 1,
                                     .min_version = 1,
                                     .size = sizeof(Serial),
                                     .fields = serial_v1_fields};
static const FerryDesc serial_bad = {.name = "serial",
                                     .version = 1,
                                     .min_version = 1,
                                     .size = sizeof(Serial),
                                     .fields = serial_v1_appended};
static const FerryDesc serial_good = {.name = "serial",
                                      .version = 2,
                                      .min_version = 1,
                                      .size = sizeof(Serial),
                                      .fields = serial_v2_fields};

static FerrySchemaDoc *export_doc(const char *name, const FerryDesc *d)
{
    FerryError err = {0};
    FerryRegistry *reg = ferry_registry_new();
    assert_non_null(reg);
    assert_int_equal(ferry_registry_add(reg, "serial", 0, d, NULL, &err), 0);
    char *text = ferry_schema_dumps(reg, "ferry-1.0");
    assert_non_null(text);
    FerrySchemaDoc *doc = load(name, text, &err);
    if (!doc)
        fail_msg("%s", err.msg);
    free(text);
    ferry_registry_free(reg);
    return doc;
}

static size_t count_rule(const FerrySchemaReport *r, FerrySchemaDirection dir,
                         FerrySchemaSeverity sev, const char *rule)
{
    size_t n = 0;
    for (size_t i = 0; i < ferry_schema_report_count(r); i++) {
        const FerrySchemaFinding *f = ferry_schema_report_finding(r, i);
        n += f->direction == dir && f->severity == sev && !strcmp(f->rule, rule);
    }
    return n;
}

static void test_real_exporter(void **state)
{
    (void)state;
    FerryError err = {0};
    FerrySchemaDoc *old = export_doc("old", &serial_old), *bad = export_doc("bad", &serial_bad),
                   *good = export_doc("good", &serial_good);
    FerrySchemaReport *r = ferry_schema_report_new();
    assert_int_equal(ferry_schema_compare(old, bad, FERRY_SCHEMA_FORWARD, r, &err), 0);
    assert_int_equal(count_rule(r, FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_ERROR, "field-appended"), 1);
    ferry_schema_report_free(r);
    r = ferry_schema_report_new();
    assert_int_equal(ferry_schema_compare(old, good, FERRY_SCHEMA_FORWARD, r, &err), 0);
    assert_int_equal(ferry_schema_report_tally(r, FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_ERROR), 0);
    assert_int_equal(
        count_rule(r, FERRY_SCHEMA_FORWARD, FERRY_SCHEMA_INFO, "field-added-versioned"), 1);
    ferry_schema_report_free(r);
    ferry_schema_doc_free(old);
    ferry_schema_doc_free(bad);
    ferry_schema_doc_free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_json_token_growth),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_load_errors_name_path),
        cmocka_unit_test(test_identical_is_clean),
        cmocka_unit_test(test_appended_field),
        cmocka_unit_test(test_versioned_field),
        cmocka_unit_test(test_subsection_optional_matters),
        cmocka_unit_test(test_qemu_nested_struct_local_version),
        cmocka_unit_test(test_formats_must_match),
        cmocka_unit_test(test_real_exporter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

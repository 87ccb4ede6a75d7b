/* Unit tests of registries, schema export/import and decoding a payload by schema alone. */
#include "ferry/state/schema.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct Ev {
    uint16_t kind;
    FerryLink link;
} Ev;

typedef struct Drc {
    uint32_t index;
    uint8_t state;
    bool ready;
    char id[16];
    uint8_t n;
    uint32_t props[4];
    FerryList events;
    uint64_t big;
} Drc;

static const FerryDesc ev_desc = {
    .name = "ev",
    .version = 1,
    .size = sizeof(Ev),
    .fields = (const FerryField[]){FERRY_FIELD(Ev, kind), FERRY_END},
};
static bool big_needed(const void *o)
{
    return ((const Drc *)o)->big != 0;
}
static const FerryDesc drc_big = {
    .name = "drc/big",
    .version = 1,
    .fields = (const FerryField[]){FERRY_FIELD(Drc, big), FERRY_END},
};
static const FerryDesc drc_desc = {
    .name = "drc",
    .version = 2,
    .min_version = 1,
    .size = sizeof(Drc),
    .fields =
        (const FerryField[]){
            FERRY_FIELD(Drc, index),
            FERRY_FIELD(Drc, state),
            FERRY_FIELD(Drc, ready, .since = 2),
            FERRY_STRING(Drc, id),
            FERRY_FIELD(Drc, n),
            FERRY_VARRAY(Drc, props, n),
            FERRY_LIST(Drc, events, Ev, link, &ev_desc),
            FERRY_END,
        },
    .subsections = (const FerrySubsection[]){{&drc_big, big_needed, .optional = true}, {NULL}},
};

static void test_registry_order_and_duplicates(void **state)
{
    (void)state;
    FerryRegistry *r = ferry_registry_new();
    FerryError err;
    Drc a, b;
    assert_int_equal(ferry_registry_add(r, "drc-mem", 1, &drc_desc, &b, &err), 0);
    assert_int_equal(ferry_registry_add(r, "drc-cpu", 3, &drc_desc, &a, &err), 0);
    assert_int_equal(ferry_registry_add(r, "drc-cpu", 0, &drc_desc, NULL, &err), 0);
    assert_int_equal(ferry_registry_add(r, "drc-cpu", 3, &drc_desc, NULL, &err), -EEXIST);
    assert_string_equal(err.msg, "section 'drc-cpu' instance 3 is registered twice");
    assert_int_equal(ferry_registry_count(r), 3);
    const char *name;
    uint32_t inst;
    void *op;
    ferry_registry_entry(r, 0, &name, &inst, &op);
    assert_string_equal(name, "drc-cpu");
    assert_int_equal(inst, 0);
    ferry_registry_entry(r, 1, &name, &inst, &op);
    assert_int_equal(inst, 3);
    assert_ptr_equal(op, &a);
    assert_ptr_equal(ferry_registry_find(r, "drc-mem", 1, &op), &drc_desc);
    assert_ptr_equal(op, &b);
    assert_int_equal(ferry_registry_remove(r, "drc-mem", 1), 0);
    assert_null(ferry_registry_find(r, "drc-mem", 1, NULL));
    assert_int_equal(ferry_registry_remove(r, "drc-mem", 1), -ENOENT);
    ferry_registry_free(r);
}

static void test_registry_rejects_bad_desc(void **state)
{
    (void)state;
    static const FerryDesc bad = {.name = "x", .version = 1, .min_version = 3};
    FerryRegistry *r = ferry_registry_new();
    FerryError err;
    assert_int_equal(ferry_registry_add(r, "x", 0, &bad, NULL, &err), -EINVAL);
    assert_string_equal(err.msg, "section 'x': description 'x': min_version 3 > version 1");
    ferry_registry_free(r);
}

static void test_export_stable_and_import_round_trip(void **state)
{
    (void)state;
    FerryRegistry *r = ferry_registry_new();
    FerryError err;
    assert_int_equal(ferry_registry_add(r, "drc-cpu", 0, &drc_desc, NULL, &err), 0);
    char *a = ferry_schema_dumps(r, "ferry-2.0");
    char *b = ferry_schema_dumps(r, "ferry-2.0");
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "\"format\": \"ferry-schema\""));
    assert_non_null(strstr(a, "\"count_field\": \"n\""));
    json_error_t jerr;
    json_t *j = json_loads(a, 0, &jerr);
    assert_non_null(j);
    FerrySchema *s = ferry_schema_import(j, &err);
    if (!s)
        fail_msg("import: %s", err.msg);
    assert_string_equal(ferry_schema_machine(s), "ferry-2.0");
    /* Exporting the imported registry gives the same document. */
    char *c = ferry_schema_dumps(ferry_schema_registry(s), "ferry-2.0");
    assert_string_equal(a, c);
    free(a);
    free(b);
    free(c);
    ferry_schema_free(s);
    json_decref(j);
    ferry_registry_free(r);
}

static void test_import_errors_name_path(void **state)
{
    (void)state;
    FerryError err;
    json_t *j = json_loads("{\"format\":\"ferry-schema\",\"format_version\":1,\"sections\":[{"
                           "\"section\":\"a\",\"instance\":0,\"description\":{\"name\":\"a\","
                           "\"version\":1,\"min_version\":0,\"subsections\":[],\"fields\":[{"
                           "\"name\":\"f\",\"type\":\"u128\",\"size\":16,\"array\":\"none\","
                           "\"count\":0,\"max\":0,\"since\":0}]}}]}",
                           0, NULL);
    assert_non_null(j);
    assert_null(ferry_schema_import(j, &err));
    assert_string_equal(err.msg, "sections[0].fields[0].f: unknown type 'u128'");
    json_decref(j);
    j = json_loads("{\"format\":\"other\"}", 0, NULL);
    assert_null(ferry_schema_import(j, &err));
    json_decref(j);
}

static void test_decode_by_imported_schema(void **state)
{
    (void)state;
    Drc d = {.index = 7, .state = 2, .ready = true, .n = 2, .props = {10, 20}, .big = 1ull << 63};
    strcpy(d.id, "cpu1");
    ferry_list_init(&d.events);
    Ev e = {.kind = 4};
    ferry_list_push_tail(&d.events, &e.link);
    FerryIO *w = ferry_io_mem_writer();
    FerryError err;
    assert_int_equal(ferry_state_save(&drc_desc, &d, w, &err), 0);
    size_t len;
    const uint8_t *wire = ferry_io_mem_data(w, &len);

    FerryRegistry *r = ferry_registry_new();
    assert_int_equal(ferry_registry_add(r, "drc-cpu", 0, &drc_desc, NULL, &err), 0);
    json_t *sj = ferry_schema_export(r, NULL);
    FerrySchema *s = ferry_schema_import(sj, &err);
    assert_non_null(s);
    const FerryDesc *id = ferry_registry_find(ferry_schema_registry(s), "drc-cpu", 0, NULL);
    FerryIO *rd = ferry_io_mem_reader(wire, len);
    json_t *out = ferry_state_decode_json(id, rd, 2, NULL, &err);
    if (!out)
        fail_msg("decode: %s", err.msg);
    assert_int_equal(ferry_io_offset(rd), len);
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"index\":7,\"state\":2,\"ready\":true,\"id\":\"cpu1\",\"n\":2,"
                              "\"props\":[10,20],\"events\":[{\"kind\":4}],\"subsections\":{"
                              "\"drc/big\":{\"big\":\"0x8000000000000000\"}}}");
    free(text);
    json_decref(out);
    ferry_io_destroy(rd);
    /* Truncated: the decoder reports the same path and offset as the loader. */
    rd = ferry_io_mem_reader(wire, 5);
    assert_null(ferry_state_decode_json(id, rd, 2, NULL, &err));
    assert_string_equal(err.msg, "drc.ready: stream ended 1 bytes early at offset 0x5");
    ferry_io_destroy(rd);
    ferry_schema_free(s);
    json_decref(sj);
    ferry_registry_free(r);
    ferry_io_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_order_and_duplicates),
        cmocka_unit_test(test_registry_rejects_bad_desc),
        cmocka_unit_test(test_export_stable_and_import_round_trip),
        cmocka_unit_test(test_import_errors_name_path),
        cmocka_unit_test(test_decode_by_imported_schema),
    };
    return cmocka_run_group_tests_name("state-schema", tests, NULL, NULL);
}

/* libFuzzer harness for `ferry schema check` input: the JSON parser, both model loaders and the
 * rule engine. An input holding "\n----\n" is split into OLD and NEW; otherwise it is compared
 * with itself. Built by tests/fuzz/meson.build's loop, so it compiles the engine's sources. */
#include "../../src/tools/schema_json.c"
#include "../../src/tools/schema_model.c"
#include "../../src/tools/schema_rules.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static FerrySchemaDoc *load_part(const char *name, const uint8_t *data, size_t size)
{
    char *buf = malloc(size + FERRY_JSON_PADDING);
    if (!buf)
        return NULL;
    memcpy(buf, data, size);
    FerryError err = {0};
    return ferry_schema_doc_load_buffer(name, buf, size, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char sep[] = "\n----\n";
    const uint8_t *cut = memmem(data, size, sep, sizeof(sep) - 1);
    size_t old_len = cut ? (size_t)(cut - data) : size;
    FerrySchemaDoc *old = load_part("old", data, old_len), *new_ = NULL;
    if (!old)
        return 0;
    if (cut)
        new_ = load_part("new", cut + sizeof(sep) - 1, size - old_len - (sizeof(sep) - 1));
    const FerrySchemaDoc *other = cut ? new_ : old;
    if (other) {
        FerrySchemaReport *rep = ferry_schema_report_new();
        FerryError err = {0};
        if (rep) {
            ferry_schema_compare(old, other, FERRY_SCHEMA_FORWARD, rep, &err);
            ferry_schema_compare(old, other, FERRY_SCHEMA_BACKWARD, rep, &err);
        }
        ferry_schema_report_free(rep);
    }
    ferry_schema_doc_free(new_);
    ferry_schema_doc_free(old);
    return 0;
}

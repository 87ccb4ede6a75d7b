/* libFuzzer harness for the device-state loader and the JSON decoder: any byte string must load
 * or fail with an error, never crash, leak or over-allocate. Input: u8 version, then a payload. */
#include "ferry/state/schema.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct Item {
    uint16_t a;
    char tag[8];
    FerryLink link;
} Item;

typedef struct Target {
    uint8_t n;
    uint32_t var[8];
    uint16_t nalloc;
    uint64_t *alloc;
    bool flag;
    char name[16];
    FerryList items;
    uint32_t late;
    uint8_t sub;
} Target;

static bool has_flag(const void *o, uint32_t v)
{
    (void)v;
    return ((const Target *)o)->flag;
}

static const FerryDesc item_desc = {
    .name = "item",
    .version = 2,
    .min_version = 1,
    .size = sizeof(Item),
    .fields =
        (const FerryField[]){FERRY_FIELD(Item, a), FERRY_STRING(Item, tag, .since = 2), FERRY_END},
};
static const FerryDesc sub_desc = {
    .name = "target/sub",
    .version = 1,
    .fields = (const FerryField[]){FERRY_FIELD(Target, sub), FERRY_END},
};
static const FerryDesc target_desc = {
    .name = "target",
    .version = 2,
    .min_version = 1,
    .size = sizeof(Target),
    .fields =
        (const FerryField[]){
            FERRY_FIELD(Target, n),
            FERRY_VARRAY(Target, var, n),
            FERRY_FIELD(Target, nalloc),
            FERRY_ALLOC(Target, alloc, nalloc, 64),
            FERRY_FIELD(Target, flag),
            FERRY_STRING(Target, name, .exists = has_flag),
            FERRY_LIST(Target, items, Item, link, &item_desc, .max = 32),
            FERRY_FIELD(Target, late, .since = 2),
            FERRY_END,
        },
    .subsections = (const FerrySubsection[]){{&sub_desc, NULL, false}, {NULL}},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t version = data[0] % 4;
    FerryError err;
    Target t;
    memset(&t, 0, sizeof(t));
    ferry_list_init(&t.items);
    FerryIO *io = ferry_io_mem_reader(data + 1, size - 1);
    if (ferry_state_load(&target_desc, &t, io, version, NULL, &err) == 0) {
        /* What loaded must save again. */
        FerryIO *w = ferry_io_mem_writer();
        if (ferry_state_save(&target_desc, &t, w, &err))
            abort();
        ferry_io_destroy(w);
    }
    ferry_state_release(&target_desc, &t);
    ferry_io_destroy(io);
    io = ferry_io_mem_reader(data + 1, size - 1);
    json_t *j = ferry_state_decode_json(&target_desc, io, version, NULL, &err);
    json_decref(j);
    ferry_io_destroy(io);
    return 0;
}

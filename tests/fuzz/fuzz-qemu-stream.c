/* libFuzzer harness for the QEMU migration stream reader (src/stream/qemu.c): any input must
 * be accepted or rejected with an error naming an offset, never crash, leak or hang. */
#include "ferry/stream/qemu.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static int on_page(void *ctx, const FerryQemuPage *p, FerryError *err)
{
    (void)err;
    /* Touch the borrowed bytes so ASan checks their bounds; apply XBZRLE like --extract-ram. */
    uint8_t page[4096];
    if (p->len && p->data[p->len - 1] == 0xff)
        ++*(int *)ctx;
    if (p->kind == FERRY_QEMU_PAGE_XBZRLE && p->page_size <= sizeof(page)) {
        memset(page, 0, p->page_size);
        FerryError e;
        ferry_qemu_xbzrle_apply(page, p->page_size, p->data, p->len, &e);
    }
    return 0;
}

static int on_field(void *ctx, const FerryQemuField *f, FerryError *err)
{
    (void)err;
    if (f->size && f->data[f->size - 1] == 0xff)
        ++*(int *)ctx;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const FerryQemuVisitor v = {.ram_page = on_page, .field = on_field};
    for (unsigned flags = 0; flags <= FERRY_QEMU_NO_VMDESC; flags += FERRY_QEMU_NO_VMDESC) {
        FerryError err;
        int seen = 0;
        FerryQemuReader *r = ferry_qemu_reader_mem(data, size, flags, &err);
        if (!r)
            return 0;
        if (ferry_qemu_reader_run(r, &v, &seen, &err) < 0 && !strstr(err.msg, "at 0x"))
            __builtin_trap(); /* every error names an offset */
        ferry_qemu_reader_destroy(r);
    }
    return 0;
}

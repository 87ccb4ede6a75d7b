/* libFuzzer harness for the destination's RAM record parser (ram-pages runs: zero, raw, delta
 * ops): outside input that writes into guest memory. Never crash, write out of bounds, or hang.
 * The blocks are heap buffers, so ASan catches any write past them. */
#include "../../src/migration/migration-int.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *mem0, *mem1;
    if (!mem0) {
        mem0 = aligned_alloc(4096, 64 * 4096);
        mem1 = aligned_alloc(4096, 8 * 4096);
    }
    FerryRamBlock blocks[2] = {{.slot = 0, .gpa = 0, .size = 64 * 4096, .host = mem0},
                               {.slot = 1, .gpa = 1 << 30, .size = 8 * 4096, .host = mem1}};
    FerryError err;
    FerryIO *io = ferry_io_mem_reader(data, size);
    mig_ram_stream_apply(blocks, 2, io, &err);
    ferry_io_destroy(io);
    return 0;
}

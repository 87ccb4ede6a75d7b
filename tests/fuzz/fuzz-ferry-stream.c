/* libFuzzer harness for the Ferry stream reader: header, record framing, checksums, embedded
 * schema import and decoding device records by that schema. Never crash, leak or hang. */
#include "ferry/stream/stream.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FerryError err;
    FerryIO *io = ferry_io_mem_reader(data, size);
    FerryStreamReader *r = ferry_stream_reader_new(io, &err);
    FerrySchema *schema = NULL;
    for (int i = 0; r && i < 1000; i++) {
        FerryRecord rec;
        if (ferry_stream_next(r, &rec, &err))
            break;
        if (rec.kind == FERRY_REC_END) {
            ferry_stream_end_payload(r, &err);
            break;
        }
        int rc = 0;
        if (rec.kind == FERRY_REC_SCHEMA && !schema) {
            json_t *j = ferry_stream_schema_json(r, &err);
            if (!j)
                break;
            schema = ferry_schema_import(j, &err);
            json_decref(j);
        } else if (rec.kind == FERRY_REC_DEVICE && schema) {
            const FerryDesc *d =
                ferry_registry_find(ferry_schema_registry(schema), rec.name, rec.instance, NULL);
            if (d) {
                json_t *j = ferry_stream_payload_json(r, d, NULL, &err);
                rc = j ? 0 : -1;
                json_decref(j);
            } else {
                rc = ferry_stream_skip_payload(r, &err);
            }
        } else {
            rc = ferry_stream_skip_payload(r, &err);
        }
        if (rc)
            break;
    }
    ferry_schema_free(schema);
    ferry_stream_reader_free(r);
    ferry_io_destroy(io);
    return 0;
}

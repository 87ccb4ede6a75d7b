/* Ferry stream format v1 (docs/stream-format.md): a header, then framed and checksummed records
 * (device state, RAM, vCPU state, embedded schema, end). Writers and readers sit on a FerryIO.
 * THIS HEADER IS THE AGREED API; the implementation lands with the stream-format work. */
#ifndef FERRY_STREAM_STREAM_H
#define FERRY_STREAM_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/error.h"
#include "ferry/state/io.h"
#include "ferry/state/schema.h"
#include "ferry/state/state.h"

#define FERRY_STREAM_FORMAT_VERSION 1

typedef struct FerryStreamWriter FerryStreamWriter;
typedef struct FerryStreamReader FerryStreamReader;

/* Writes the header. `io` is borrowed. Caller frees with ferry_stream_writer_free. */
FerryStreamWriter *ferry_stream_writer_new(FerryIO *io, const char *machine_type,
                                           FerryError *err);
void ferry_stream_writer_free(FerryStreamWriter *w);
/* One device-state record: `d` saved from `opaque` under (section, instance). */
int ferry_stream_write_state(FerryStreamWriter *w, const char *section, uint32_t instance,
                             const FerryDesc *d, void *opaque, FerryError *err);
/* Every entry of `reg` (which must carry opaques), in registry order. */
int ferry_stream_write_registry(FerryStreamWriter *w, const FerryRegistry *reg, FerryError *err);
/* The schema of `reg`, so readers decode by field name without this binary. */
int ferry_stream_write_schema(FerryStreamWriter *w, const FerryRegistry *reg, FerryError *err);
/* End-of-stream record; flushes the IO. */
int ferry_stream_write_end(FerryStreamWriter *w, FerryError *err);

/* Reads and checks the header. `io` is borrowed. Caller frees. */
FerryStreamReader *ferry_stream_reader_new(FerryIO *io, FerryError *err);
void ferry_stream_reader_free(FerryStreamReader *r);
const char *ferry_stream_machine_type(const FerryStreamReader *r);
/* Load every device-state record up to the end record into the matching entries of `reg`.
 * A record for a section the registry lacks is an error naming it; a checksum mismatch names
 * the section and offset. Warnings (skipped optional subsections) go to opts->warn. */
int ferry_stream_read_registry(FerryStreamReader *r, FerryRegistry *reg,
                               const FerryLoadOpts *opts, FerryError *err);

#endif

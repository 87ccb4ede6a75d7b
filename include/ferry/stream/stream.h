/* Ferry stream format v1 (docs/stream-format.md): a header, then framed, checksummed records
 * (device state, embedded schema, RAM, end). Writers and readers sit on a FerryIO.
 * Every record is verified (XXH3-64) before its contents are applied. */
#ifndef FERRY_STREAM_STREAM_H
#define FERRY_STREAM_STREAM_H

#include "ferry/error.h"
#include "ferry/state/io.h"
#include "ferry/state/schema.h"
#include "ferry/state/state.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define FERRY_STREAM_FORMAT_VERSION 1
#define FERRY_STREAM_MAGIC          "FERRY\r\n\x1a"
#define FERRY_STREAM_MAGIC_LEN      8
/* Largest device-state or schema payload a reader buffers (hostile lengths fail before
 * allocation). RAM records are streamed, not buffered. */
#define FERRY_STREAM_MAX_STATE (64u << 20)

typedef enum FerryRecordKind {
    FERRY_REC_DEVICE = 0x01,     /* device state: a codec payload (name = section) */
    FERRY_REC_SCHEMA = 0x02,     /* schema JSON of the device records that follow */
    FERRY_REC_RAM_BLOCKS = 0x10, /* RAM block list */
    FERRY_REC_RAM_PAGES = 0x11,  /* runs of pages of one block (instance = block index) */
    FERRY_REC_RAM_PASS = 0x12,   /* end of one pass over RAM */
    FERRY_REC_HANDSHAKE = 0x20,  /* JSON: machine, inventory, RAM blocks, channels, session */
    FERRY_REC_CHANNEL = 0x21,    /* u32 channel index, u32 channels, 16-byte session id */
    FERRY_REC_END = 0x7f,        /* end of stream */
} FerryRecordKind;

/* Record flag: a reader that does not know the kind may skip it (with a warning). */
#define FERRY_REC_OPTIONAL 0x01

typedef struct FerryRecord {
    uint8_t kind;
    uint8_t flags;
    char name[256];
    uint32_t instance;
    uint32_t version;
    uint64_t length; /* payload bytes */
    uint64_t offset; /* stream offset of the record's first byte */
} FerryRecord;

const char *ferry_record_kind_name(uint8_t kind);

typedef struct FerryStreamWriter FerryStreamWriter;
typedef struct FerryStreamReader FerryStreamReader;

/* Writes the header. `io` is borrowed. Caller frees with ferry_stream_writer_free. */
FerryStreamWriter *ferry_stream_writer_new(FerryIO *io, const char *machine_type, FerryError *err);
void ferry_stream_writer_free(FerryStreamWriter *w);
/* A record whose payload is the concatenation of `iov` (RAM pages go straight from guest memory
 * to the IO). */
int ferry_stream_write_record(FerryStreamWriter *w, uint8_t kind, uint8_t flags, const char *name,
                              uint32_t instance, uint32_t version, const struct iovec *iov,
                              int iovcnt, FerryError *err);
/* One device-state record: `d` saved from `opaque` under (section, instance). */
int ferry_stream_write_state(FerryStreamWriter *w, const char *section, uint32_t instance,
                             const FerryDesc *d, void *opaque, FerryError *err);
/* Every entry of `reg` (which must carry opaques), in registry order. */
int ferry_stream_write_registry(FerryStreamWriter *w, const FerryRegistry *reg, FerryError *err);
/* The schema of `reg` as an optional record, so readers decode by field name without this
 * binary. */
int ferry_stream_write_schema(FerryStreamWriter *w, const FerryRegistry *reg, FerryError *err);
/* End-of-stream record; flushes the IO. */
int ferry_stream_write_end(FerryStreamWriter *w, FerryError *err);

/* Reads and checks the header. `io` is borrowed. Caller frees. */
FerryStreamReader *ferry_stream_reader_new(FerryIO *io, FerryError *err);
void ferry_stream_reader_free(FerryStreamReader *r);
const char *ferry_stream_machine_type(const FerryStreamReader *r);
const char *ferry_stream_producer(const FerryStreamReader *r);

/* Read the next record header into `rec`. The payload must then be consumed with
 * ferry_stream_read_payload (RAM), ferry_stream_load_state / ferry_stream_payload_json
 * (device), or ferry_stream_skip_payload, which each verify the checksum at the end. */
int ferry_stream_next(FerryStreamReader *r, FerryRecord *rec, FerryError *err);
/* Read `len` bytes of the current payload (may be called repeatedly). */
int ferry_stream_read_payload(FerryStreamReader *r, void *buf, size_t len, FerryError *err);
/* Verify the checksum after the last payload byte was read (RAM readers call this). */
int ferry_stream_end_payload(FerryStreamReader *r, FerryError *err);
/* Skip the rest of the current payload and verify the checksum. */
int ferry_stream_skip_payload(FerryStreamReader *r, FerryError *err);
/* Verify the whole device payload, then load it into `opaque`. */
int ferry_stream_load_state(FerryStreamReader *r, const FerryDesc *d, void *opaque,
                            const FerryLoadOpts *opts, FerryError *err);
/* Verify the whole device payload, then decode it by `d` into JSON (new reference). */
json_t *ferry_stream_payload_json(FerryStreamReader *r, const FerryDesc *d,
                                  const FerryLoadOpts *opts, FerryError *err);
/* Verify and parse a SCHEMA record's payload (new reference). */
json_t *ferry_stream_schema_json(FerryStreamReader *r, FerryError *err);

/* Load every device-state record up to the end record into the matching entries of `reg`.
 * A record for a section the registry lacks is an error naming it; a checksum mismatch names
 * the section and offset; optional unknown records are skipped with a warning. RAM records are
 * an error here (this reads device-state streams). */
int ferry_stream_read_registry(FerryStreamReader *r, FerryRegistry *reg, const FerryLoadOpts *opts,
                               FerryError *err);

#endif

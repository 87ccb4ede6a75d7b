/* Byte streams the codec reads and writes: memory buffers, file descriptors and files.
 * A FerryIO is one direction (reader or writer), buffered, tracks its byte offset for error
 * messages, and can feed every byte that passes through it to a checksum hook. */
#ifndef FERRY_STATE_IO_H
#define FERRY_STATE_IO_H

#include "ferry/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FerryIO FerryIO;

/* Called with consecutive ranges of the bytes read or written, in stream order. Ranges are
 * delivered lazily (on buffer refill/flush) and completely by ferry_io_checksum_sync(). */
typedef void (*FerryChecksumFn)(void *ctx, const void *data, size_t len);

/* Writer into a growable memory buffer. Caller destroys. */
FerryIO *ferry_io_mem_writer(void);
/* Reader over `len` bytes at `data`; the bytes are borrowed and must outlive the reader. */
FerryIO *ferry_io_mem_reader(const void *data, size_t len);
/* Reader or writer on a file descriptor. With `own_fd` the fd is closed by destroy. */
FerryIO *ferry_io_fd_reader(int fd, bool own_fd);
FerryIO *ferry_io_fd_writer(int fd, bool own_fd);
/* Open `path` for reading or (create/truncate) writing. NULL + err on failure. */
FerryIO *ferry_io_file_reader(const char *path, FerryError *err);
FerryIO *ferry_io_file_writer(const char *path, FerryError *err);
/* Flushes a writer (errors are lost: call ferry_io_flush first to see them) and frees. */
void ferry_io_destroy(FerryIO *io);

bool ferry_io_is_writer(const FerryIO *io);
/* Bytes consumed (reader) or produced (writer) so far, counted from the start of the IO. */
uint64_t ferry_io_offset(const FerryIO *io);

/* Write all `len` bytes. */
int ferry_io_write(FerryIO *io, const void *data, size_t len, FerryError *err);
/* Write out buffered bytes (fd writers). */
int ferry_io_flush(FerryIO *io, FerryError *err);
/* Read exactly `len` bytes; a short stream fails with -ENODATA and
 * "stream ended N bytes early at offset 0x...". */
int ferry_io_read(FerryIO *io, void *data, size_t len, FerryError *err);
/* Skip exactly `len` bytes (they still pass through the checksum hook). */
int ferry_io_skip(FerryIO *io, uint64_t len, FerryError *err);
/* Look at up to `len` upcoming bytes without consuming them; returns how many are available
 * (less than len only at end of stream), or a negative errno. */
int ferry_io_peek(FerryIO *io, const uint8_t **data, size_t len, FerryError *err);
/* True when a reader has no more bytes. */
bool ferry_io_at_eof(FerryIO *io);

/* Readers only: refuse to read past absolute offset `end` (a frame's end) until restored.
 * Returns the previous limit so nested frames can restore it. UINT64_MAX means none. */
uint64_t ferry_io_set_limit(FerryIO *io, uint64_t end);

/* Install (or with fn == NULL remove) the checksum hook. Pending bytes are delivered to the
 * old hook first. */
void ferry_io_set_checksum(FerryIO *io, FerryChecksumFn fn, void *ctx);
/* Deliver every byte consumed/produced so far to the hook. */
void ferry_io_checksum_sync(FerryIO *io);

/* Memory writers: the bytes written so far (borrowed; valid until the next write/destroy). */
const uint8_t *ferry_io_mem_data(const FerryIO *io, size_t *len);
/* Memory writers: forget the contents, keep the allocation (reuse for the next record). */
void ferry_io_mem_reset(FerryIO *io);

/* Little-endian integer helpers used by the codec and the stream layer. */
int ferry_io_write_u8(FerryIO *io, uint8_t v, FerryError *err);
int ferry_io_write_u32(FerryIO *io, uint32_t v, FerryError *err);
int ferry_io_write_u64(FerryIO *io, uint64_t v, FerryError *err);
int ferry_io_read_u8(FerryIO *io, uint8_t *v, FerryError *err);
int ferry_io_read_u32(FerryIO *io, uint32_t *v, FerryError *err);
int ferry_io_read_u64(FerryIO *io, uint64_t *v, FerryError *err);

#endif

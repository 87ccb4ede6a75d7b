/* Reader for QEMU migration streams, format version 3 as written by QEMU 7.2.
 * It walks a stream once, in constant memory, and reports what it finds to a visitor. */
#ifndef FERRY_STREAM_QEMU_H
#define FERRY_STREAM_QEMU_H

#include "ferry/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FERRY_QEMU_MAGIC   0x5145564dU /* "QEVM" */
#define FERRY_QEMU_VERSION 3U

/* Upper bounds applied to lengths read from a stream before anything is allocated. */
#define FERRY_QEMU_MAX_VMDESC       (64u << 20) /* vmdesc JSON trailer */
#define FERRY_QEMU_MAX_FIELD        (64u << 20) /* one device field element */
#define FERRY_QEMU_MAX_RAM_BLOCKS   4096u       /* entries of the MEM_SIZE block list */
#define FERRY_QEMU_MAX_PAGE_SIZE    (1u << 20)  /* target page size */
#define FERRY_QEMU_MAX_MACHINE_NAME 1024u       /* configuration section machine name */

/* Section type bytes (qemu-reference.md §1.2). */
enum {
    FERRY_QEMU_EOF = 0x00,
    FERRY_QEMU_START = 0x01,
    FERRY_QEMU_PART = 0x02,
    FERRY_QEMU_END = 0x03,
    FERRY_QEMU_FULL = 0x04,
    FERRY_QEMU_SUBSECTION = 0x05,
    FERRY_QEMU_VMDESC = 0x06,
    FERRY_QEMU_CONFIGURATION = 0x07,
    FERRY_QEMU_COMMAND = 0x08,
    FERRY_QEMU_FOOTER = 0x7e,
};

/* How the payload of a section was framed. */
typedef enum FerryQemuKind {
    FERRY_QEMU_KIND_RAM,       /* "ram": decoded record by record */
    FERRY_QEMU_KIND_HTAB,      /* "spapr/htab": decoded chunk by chunk */
    FERRY_QEMU_KIND_DEVICE,    /* decoded field by field from the vmdesc */
    FERRY_QEMU_KIND_UNDECODED, /* framed by footer resync only: a byte range */
} FerryQemuKind;

/* One section header (START/PART/END/FULL). Strings are borrowed for the callback's duration. */
typedef struct FerryQemuSection {
    uint8_t type; /* FERRY_QEMU_START .. FERRY_QEMU_FULL */
    uint32_t section_id;
    const char *idstr;    /* PART/END: the idstr of the matching START */
    uint32_t instance_id; /* unsigned: spapr_iommu uses 0x80000000 */
    uint32_t version_id;
    FerryQemuKind kind;
    uint64_t offset;      /* of the type byte */
    uint64_t payload;     /* first payload byte */
    uint64_t payload_end; /* section_end only: first byte after the payload (footer or next) */
    uint64_t end;         /* section_end only: first byte after the footer */
    bool has_footer;      /* section_end only */
} FerryQemuSection;

typedef struct FerryQemuConfig {
    const char *machine;       /* MachineClass name, e.g. "pc-q35-7.2" */
    uint32_t target_page_bits; /* 0 when the subsection is absent */
    size_t n_caps;
    const char *const *caps; /* validated capabilities, e.g. "x-ignore-shared" */
    bool has_uuid;
    uint8_t uuid[16];
    uint64_t offset;
} FerryQemuConfig;

typedef struct FerryQemuCommand {
    uint16_t cmd; /* 1 OPEN_RETURN_PATH .. 10 RECV_BITMAP */
    uint16_t len;
    const uint8_t *data; /* len bytes (PACKAGED: only the be32 size; the package is parsed) */
    uint64_t offset;
} FerryQemuCommand;

typedef struct FerryQemuRamBlock {
    const char *name;
    uint32_t index;     /* position in the MEM_SIZE list */
    uint64_t length;    /* used_length */
    uint64_t page_size; /* postcopy hugepage size, 0 when not sent */
    uint64_t addr;      /* x-ignore-shared guest address, UINT64_MAX when not sent */
} FerryQemuRamBlock;

typedef enum FerryQemuPageKind {
    FERRY_QEMU_PAGE_ZERO,       /* RAM_SAVE_FLAG_ZERO: filled with `fill` */
    FERRY_QEMU_PAGE_NORMAL,     /* RAM_SAVE_FLAG_PAGE: data is the page */
    FERRY_QEMU_PAGE_XBZRLE,     /* data is the XBZRLE delta against the previous contents */
    FERRY_QEMU_PAGE_COMPRESSED, /* RAM_SAVE_FLAG_COMPRESS_PAGE: data is a zlib stream */
} FerryQemuPageKind;

typedef struct FerryQemuPage {
    const FerryQemuRamBlock *block;
    uint64_t addr; /* offset in the block */
    FerryQemuPageKind kind;
    uint8_t fill;
    const uint8_t *data; /* borrowed for the callback only */
    size_t len;
    size_t page_size;
    uint64_t offset; /* stream offset of the record */
} FerryQemuPage;

/* A described device field element. */
typedef struct FerryQemuField {
    const char *name; /* vmdesc field name */
    const char *type; /* vmdesc type ("uint32", "pci config", ...) */
    int64_t index;    /* element index, -1 for a scalar */
    const uint8_t *data;
    size_t size;
    uint64_t offset;
} FerryQemuField;

typedef enum FerryQemuNodeKind {
    FERRY_QEMU_NODE_STRUCT,
    FERRY_QEMU_NODE_SUBSECTION
} FerryQemuNodeKind;

/* A nested struct field element or a subsection; closed by node_end. */
typedef struct FerryQemuNode {
    FerryQemuNodeKind kind;
    const char *name; /* field name, or the subsection name read from the stream */
    int64_t index;    /* struct element index, -1 for a scalar or a subsection */
    uint32_t version; /* subsection version */
    uint64_t offset;
} FerryQemuNode;

/* Every callback is optional; a negative return stops the walk and is returned by run (the
 * callback fills err). Pointers passed in are borrowed for the duration of the call. */
typedef struct FerryQemuVisitor {
    int (*config)(void *ctx, const FerryQemuConfig *c, FerryError *err);
    int (*command)(void *ctx, const FerryQemuCommand *c, FerryError *err);
    int (*section_begin)(void *ctx, const FerryQemuSection *s, FerryError *err);
    int (*section_end)(void *ctx, const FerryQemuSection *s, FerryError *err);
    int (*ram_block)(void *ctx, const FerryQemuRamBlock *b, FerryError *err);
    int (*ram_page)(void *ctx, const FerryQemuPage *p, FerryError *err);
    int (*node_begin)(void *ctx, const FerryQemuNode *n, FerryError *err);
    int (*node_end)(void *ctx, const FerryQemuNode *n, FerryError *err);
    int (*field)(void *ctx, const FerryQemuField *f, FerryError *err);
} FerryQemuVisitor;

/* Facts gathered by a walk, valid after ferry_qemu_reader_run (borrowed from the reader). */
typedef struct FerryQemuInfo {
    const char *machine; /* NULL without a configuration section */
    uint32_t page_size;
    bool page_size_from_vmdesc;
    bool has_vmdesc;        /* trailer located, parsed and used to decode devices */
    uint64_t vmdesc_offset; /* of the 0x06 byte */
    uint32_t vmdesc_len;
    size_t vmdesc_devices;
    bool footers;         /* sections carry footers */
    uint64_t n_sections;  /* section headers read (START/PART/END/FULL) */
    uint64_t n_footers;   /* footers matched */
    uint64_t n_undecoded; /* sections framed by footer resync */
    uint64_t n_commands;
    uint64_t eof_offset; /* of the 0x00 EOF byte */
    uint64_t size;       /* bytes consumed in total */
} FerryQemuInfo;

typedef struct FerryQemuReader FerryQemuReader;

enum {
    /* Ignore the vmdesc trailer: frame device sections by footer resync (tests the fallback). */
    FERRY_QEMU_NO_VMDESC = 1u << 0,
};

/* True when `data` (at least 8 bytes) starts a QEMU stream ("QEVM", any version). */
bool ferry_qemu_probe(const uint8_t *data, size_t len);

/* Reader on a file descriptor positioned at the stream start (borrowed, not closed).
 * A seekable fd lets the reader locate the vmdesc trailer first (pread at the end) and decode
 * devices; on a pipe devices are framed by footer resync and the trailer is only checked.
 * Caller destroys. */
FerryQemuReader *ferry_qemu_reader_fd(int fd, unsigned flags, FerryError *err);
/* Reader over `len` bytes at `data` (borrowed; must outlive the reader). Caller destroys. */
FerryQemuReader *ferry_qemu_reader_mem(const uint8_t *data, size_t len, unsigned flags,
                                       FerryError *err);
void ferry_qemu_reader_destroy(FerryQemuReader *r);

/* Walk the whole stream once. Returns 0 when the stream is valid to its last byte. Errors name
 * the offset, what was being read and the section:
 * "section 'kvmclock' (id 8) at 0xb9eb8: reading footer: id 6 does not match 8". */
int ferry_qemu_reader_run(FerryQemuReader *r, const FerryQemuVisitor *v, void *ctx,
                          FerryError *err);
const FerryQemuInfo *ferry_qemu_reader_info(const FerryQemuReader *r);

/* Apply an XBZRLE delta (QEMU xbzrle_decode_buffer) to `page` of `page_size` bytes in place.
 * Returns 0, or -EINVAL with err naming the byte of the delta that is malformed. */
int ferry_qemu_xbzrle_apply(uint8_t *page, size_t page_size, const uint8_t *delta, size_t len,
                            FerryError *err);

/* Inflate a RAM_SAVE_FLAG_COMPRESS_PAGE record (zlib) into `page`; the result must be exactly
 * `page_size` bytes. Returns 0 or -EINVAL. */
int ferry_qemu_page_inflate(uint8_t *page, size_t page_size, const uint8_t *data, size_t len,
                            FerryError *err);

#endif
